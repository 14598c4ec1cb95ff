"""TF Serving's JSON <-> tensor rules (``tensorflow_serving/util/json_tensor.cc``), in Python.

Creates nothing; pure functions used by the REST layer:

- `predict_inputs_from_json` turns a predict body in row (``instances``) or
  columnar (``inputs``) form into numpy arrays typed by the signature, with TF Serving's checks,
  order and messages; ``{"b64": ...}`` values feed DT_STRING inputs;
- `predict_response_json` writes ``predictions`` / ``outputs`` (a single output is unwrapped,
  tensors named ``*_bytes`` come back base64-encoded, floats print the way TF Serving prints them);
- parsing bodies lives in `devtools.server.json_parse`, classify/regress in `json_examples`.

Hot path: numeric tensors first go through ``numpy.array`` (C speed). Only when that is not
provably equivalent (ragged lists, mixed types, booleans, strings, objects) does the exact
element-by-element walk run, which also produces TF Serving's error messages.
"""

from __future__ import annotations

import base64
import enum
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tensorflow.core.framework import types_pb2 as dt

from devtools.server.errors import InvalidArgument, Unimplemented
from devtools.server.json_parse import debug_string, decode_b64, format_error, is_b64, type_error
from devtools.server.tensors import dtype_name, numpy_dtype


class RequestFormat(enum.Enum):
    ROW = "row"  # {"instances": [...]} -> {"predictions": [...]}
    COLUMNAR = "columnar"  # {"inputs": ...} -> {"outputs": ...}


_INT32 = (-(2**31), 2**31 - 1)
_RANGES = {  # rapidjson IsInt / IsInt64 / IsUint / IsUint64, by target dtype
    dt.DT_INT32: _INT32,
    dt.DT_INT16: _INT32,
    dt.DT_INT8: _INT32,
    dt.DT_UINT8: _INT32,
    dt.DT_INT64: (-(2**63), 2**63 - 1),
    dt.DT_UINT32: (0, 2**32 - 1),
    dt.DT_UINT64: (0, 2**64 - 1),
}
_FLOATS = (dt.DT_FLOAT, dt.DT_DOUBLE)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _scalar(value: Any, dtype: int) -> Any:
    """AddValueToTensor: one JSON leaf as a Python value of the target type."""
    if dtype in _FLOATS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise type_error(value, dtype)
        return value
    if dtype in _RANGES:
        low, high = _RANGES[dtype]
        if not _is_int(value) or not low <= value <= high:
            raise type_error(value, dtype)
        return value
    if dtype == dt.DT_STRING:
        if not isinstance(value, str):
            raise type_error(value, dtype)
        return value.encode("utf-8", "surrogatepass")
    if dtype == dt.DT_BOOL:
        if not isinstance(value, bool):
            raise type_error(value, dtype)
        return value
    raise Unimplemented(
        f"Conversion of JSON Value: {debug_string(value)} to type: {dtype_name(dtype)}"
    )


# numpy arrays have at most 64 dimensions (TF tensors 254): deeper JSON cannot become a tensor
# here, so it is refused as bad input before any walk or allocation.
MAX_DIMS = 64


def _too_deep(rank: int) -> InvalidArgument:
    return InvalidArgument(
        f"JSON value nests lists {rank} levels deep; tensors here have at most {MAX_DIMS} "
        "dimensions"
    )


def _dense_shape(value: Any) -> list[int]:
    """GetDenseTensorShape: the shape implied by the first element at every level."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if len(shape) > MAX_DIMS:
            raise _too_deep(len(shape) + _depth(value[0]) if value else len(shape))
        if not value:
            break
        value = value[0]
    return shape


def _depth(value: Any) -> int:
    depth = 0
    while isinstance(value, list) and value:
        depth, value = depth + 1, value[0]
    return depth + isinstance(value, list)


def _fill(value: Any, level: int, shape: list[int], dtype: int, out: list[Any]) -> None:
    """FillTensorProto: check the nesting against `shape` and append the leaves to `out`."""
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise InvalidArgument(
                f"JSON Value: {debug_string(value)} found at incorrect level: {level + 1} "
                f"in the JSON DOM. Expected at level: {rank}"
            )
        if isinstance(value, dict):
            if dtype != dt.DT_STRING:
                raise type_error(value, dtype)
            out.append(decode_b64(value))
        else:
            out.append(_scalar(value, dtype))
        return
    if level >= rank:
        raise InvalidArgument(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise InvalidArgument(
            f"Encountered list at unexpected size: {len(value)} at level: {level} "
            f"expected size: {shape[level]}"
        )
    for item in value:
        _fill(item, level + 1, shape, dtype, out)


def _to_array(values: list[Any], shape: Sequence[int], dtype: int) -> np.ndarray:
    if len(shape) > MAX_DIMS:  # the batch dimension of 'instances' adds one
        raise _too_deep(len(shape))
    np_dtype = numpy_dtype(dtype)
    if np_dtype is object:
        array = np.empty(len(values), dtype=object)
        array[:] = values
    elif dtype in _RANGES and np.dtype(np_dtype).itemsize < 8:
        # TF narrows int_val with a C cast; numpy refuses out-of-range Python ints, so go wide
        # first and let astype wrap the same way.
        array = np.array(values, dtype=np.int64).astype(np_dtype)
    else:
        array = np.array(values, dtype=np_dtype)
    return array.reshape(tuple(shape))


def _fast_array(value: Any, dtype: int, no_bools: bool) -> np.ndarray | None:
    """numpy's C conversion when it provably matches the exact walk; None to fall back."""
    if (
        not no_bools
        or not isinstance(value, list)
        or (dtype not in _FLOATS and dtype not in _RANGES)
    ):
        return None
    try:
        array = np.array(value)
    except (ValueError, TypeError, OverflowError):  # ragged, or not numbers
        return None
    kind = array.dtype.kind
    if kind == "f":
        if dtype not in _FLOATS and array.size:
            return None
    elif kind == "i":
        if dtype in _RANGES and array.size:
            low, high = _RANGES[dtype]
            if array.min() < low or array.max() > high:
                return None
    else:
        return None
    return array.astype(numpy_dtype(dtype), copy=False)


def _tensor(value: Any, dtype: int, no_bools: bool) -> np.ndarray:
    fast = _fast_array(value, dtype, no_bools)
    if fast is not None:
        return fast
    shape = _dense_shape(value)
    values: list[Any] = []
    _fill(value, 0, shape, dtype, values)
    return _to_array(values, shape, dtype)


def _is_element_object(value: Any) -> bool:
    return isinstance(value, dict) and not is_b64(value)


def _shape_string(shape: Sequence[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


class _RowAccumulator:
    """AddInstanceItem: per input, the leaves of every instance plus the first instance's shape."""

    def __init__(self, dtypes: Mapping[str, int]) -> None:
        self.dtypes = dtypes
        self.values: dict[str, list[Any]] = {}
        self.shapes: dict[str, list[int]] = {}
        self.sizes: dict[str, int] = {}

    def add(self, item: Any, name: str) -> None:
        if name not in self.dtypes:
            raise InvalidArgument(f"JSON object: does not have named input: {name}")
        shape = _dense_shape(item)
        leaves: list[Any] = []
        _fill(item, 0, shape, self.dtypes[name], leaves)
        if name not in self.sizes:
            self.sizes[name], self.shapes[name] = len(leaves), shape
            self.values[name] = []
        elif self.sizes[name] != len(leaves):
            raise InvalidArgument(
                f"Expecting tensor size: {self.sizes[name]} but got: {len(leaves)}"
            )
        elif self.shapes[name] != shape:
            raise InvalidArgument(
                f"Expecting shape {_shape_string(self.shapes[name])} "
                f"but got: {_shape_string(shape)}"
            )
        self.values[name].extend(leaves)

    def tensors(self, count: int) -> dict[str, np.ndarray]:
        return {
            name: _to_array(values, [count, *self.shapes[name]], self.dtypes[name])
            for name, values in self.values.items()
        }


def _rows_fast(
    instances: list[Any], dtypes: Mapping[str, int], no_bools: bool
) -> dict[str, np.ndarray] | None:
    if not no_bools:
        return None
    if _is_element_object(instances[0]):
        names = set(dtypes)
        if not all(_is_element_object(e) and e.keys() == names for e in instances):
            return None
        out = {}
        for name, dtype in dtypes.items():
            array = _fast_array([e[name] for e in instances], dtype, no_bools)
            if array is None:
                return None
            out[name] = array
        return out
    if len(dtypes) != 1:
        return None
    ((name, dtype),) = dtypes.items()
    array = _fast_array(instances, dtype, no_bools)
    return None if array is None else {name: array}


def _rows(instances: list[Any], dtypes: Mapping[str, int], no_bools: bool) -> dict[str, np.ndarray]:
    """FillTensorMapFromInstancesList."""
    if not isinstance(instances[0], dict) and len(dtypes) > 1:
        raise InvalidArgument(
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            "required as per tensorinfo_map"
        )
    fast = _rows_fast(instances, dtypes, no_bools)
    if fast is not None:
        return fast
    objects = _is_element_object(instances[0])
    names = sorted(dtypes)
    acc = _RowAccumulator(dtypes)
    for i, elem in enumerate(instances):
        if objects:
            if not _is_element_object(elem):
                raise InvalidArgument(f"Expecting object but got list at item {i} of input list")
            for name, item in elem.items():
                try:
                    acc.add(item, name)
                except InvalidArgument as exc:
                    raise InvalidArgument(
                        f"Failed to process element: {i} key: {name} of 'instances' list. "
                        f"Error: INVALID_ARGUMENT: {exc.message}"
                    ) from None
            if set(elem) != set(names):
                raise InvalidArgument(
                    f"Failed to process element: {i} of 'instances' list. JSON object: "
                    f"{debug_string(elem)} keys must be equal to: {','.join(names)}"
                )
        else:
            if _is_element_object(elem):
                raise InvalidArgument(
                    f"Expecting value/list but got object at item {i} of input list"
                )
            try:
                acc.add(elem, names[0])
            except InvalidArgument as exc:
                raise InvalidArgument(
                    f"Failed to process element: {i} of 'instances' list. "
                    f"Error: INVALID_ARGUMENT: {exc.message}"
                ) from None
    return acc.tensors(len(instances))


def _columns(value: Any, dtypes: Mapping[str, int], no_bools: bool) -> dict[str, np.ndarray]:
    """FillTensorMapFromInputsMap."""
    if not isinstance(value, dict) or is_b64(value):
        if len(dtypes) > 1:
            raise InvalidArgument(
                "inputs is a plain value/list, but expecting an object as multiple input "
                "tensors required as per tensorinfo_map"
            )
        ((name, dtype),) = dtypes.items()
        return {name: _tensor(value, dtype, no_bools)}
    out = {}
    for name, dtype in dtypes.items():
        if name not in value:
            raise InvalidArgument(f"Missing named input: {name} in 'inputs' object.")
        out[name] = _tensor(value[name], dtype, no_bools)
    return out


def predict_inputs_from_json(
    doc: Mapping[str, Any], input_dtypes: Mapping[str, int], signature_name: str, body: bytes
) -> tuple[dict[str, np.ndarray], RequestFormat]:
    """FillPredictRequestFromJson after the signature lookup: the input tensors and the format.

    `input_dtypes` maps the signature's input aliases to their DataType; `body` is the raw request
    (a cheap byte scan decides whether booleans could hide among numbers, see `_fast_array`).
    """
    if not input_dtypes:
        raise InvalidArgument(
            f"Failed to get input map for signature: {signature_name or 'DEFAULT'}"
        )
    no_bools = b"true" not in body and b"false" not in body
    if "instances" in doc:
        if "inputs" in doc:
            raise format_error(
                doc,
                "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to "
                "exist ",
            )
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise format_error(doc, "Expecting 'instances' to be an list/array")
        if not instances:
            raise format_error(doc, "No values in 'instances' array")
        return _rows(instances, input_dtypes, no_bools), RequestFormat.ROW
    if "inputs" in doc:
        return _columns(doc["inputs"], input_dtypes, no_bools), RequestFormat.COLUMNAR
    raise InvalidArgument("Missing 'inputs' or 'instances' key")


# --- tensors -> JSON -----------------------------------------------------------------------------


def float_tokens(flat: np.ndarray) -> list[str]:
    """WriteDecimal: "%g", or full precision when that does not round-trip; whole numbers get .0."""
    values = flat.tolist()
    tokens = [f"{v:g}" for v in values]
    back = np.array([float(t) for t in tokens], dtype=flat.dtype)
    wide = ".9g" if flat.dtype == np.float32 else ".17g"
    for i in np.flatnonzero(back != flat).tolist():
        tokens[i] = format(values[i], wide)
    for i, token in enumerate(tokens):
        if "." not in token and "e" not in token:
            if token in ("nan", "-nan"):
                tokens[i] = "NaN"
            elif token in ("inf", "-inf"):
                tokens[i] = token.replace("inf", "Infinity")
            else:
                tokens[i] = token + ".0"
    return tokens


def _tokens(name: str, array: np.ndarray) -> list[str]:
    flat = array.ravel()
    kind = flat.dtype.kind
    if kind == "f" and flat.dtype in (np.float32, np.float64):
        return float_tokens(flat)
    if kind in "iu":
        return [str(v) for v in flat.tolist()]
    if kind == "b":
        return ["true" if v else "false" for v in flat.tolist()]
    if kind in "OSU":
        raw = [v.encode() if isinstance(v, str) else bytes(v) for v in flat.tolist()]
        if name.endswith("_bytes"):  # IsNamedTensorBytes
            return ['{"b64": "' + base64.b64encode(v).decode("ascii") + '"}' for v in raw]
        return [json.dumps(v.decode("utf-8", "replace"), ensure_ascii=False) for v in raw]
    raise InvalidArgument(f"Failed to write JSON value for tensor type: {flat.dtype}")


def _nest(tokens: list[str], shape: Sequence[int]) -> str:
    if not shape:
        return tokens[0]
    if len(shape) == 1:
        return "[" + ", ".join(tokens) + "]"
    step = math.prod(shape[1:])
    inner = shape[1:]
    return (
        "["
        + ", ".join(_nest(tokens[i * step : (i + 1) * step], inner) for i in range(shape[0]))
        + "]"
    )


# Values are turned into text this many at a time: a per-value Python string costs ~60 bytes and
# a per-value float ~32, so formatting a whole 8-million-value output at once peaked at 17x the
# size of the JSON it produced. Chunks keep those temporaries to a few MB whatever the output.
_CHUNK = 1 << 16


def _row_strings(name: str, array: np.ndarray) -> list[str]:
    """The JSON text of each ``array[i]`` (one string per row), formatted a chunk at a time."""
    if array.ndim == 0 or array.shape[0] == 0:
        return []
    inner = array.shape[1:]
    step = math.prod(inner)
    if step > _CHUNK:  # one row alone is large: stream it through `_json_text`
        return [_json_text(name, row) for row in array]
    rows_per_chunk = max(1, _CHUNK // max(step, 1))
    out: list[str] = []
    for start in range(0, array.shape[0], rows_per_chunk):
        block = array[start : start + rows_per_chunk]
        tokens = _tokens(name, block)
        out.extend(_nest(tokens[i * step : (i + 1) * step], inner) for i in range(len(block)))
    return out


def _json_text(name: str, array: np.ndarray) -> str:
    """`array` as nested JSON lists, formatted `_CHUNK` values at a time."""
    if array.ndim == 0:
        return _tokens(name, array)[0]
    if array.size <= _CHUNK:
        return _nest(_tokens(name, array), array.shape)
    if array.ndim == 1:
        pieces = (
            ", ".join(_tokens(name, array[i : i + _CHUNK])) for i in range(0, len(array), _CHUNK)
        )
        return "[" + ", ".join(pieces) + "]"
    step = math.prod(array.shape[1:])
    rows_per_chunk = max(1, _CHUNK // max(step, 1))
    pieces = (
        ", ".join(_row_strings(name, array[i : i + rows_per_chunk]))
        for i in range(0, array.shape[0], rows_per_chunk)
    )
    return "[" + ", ".join(pieces) + "]"


def predict_response_json(outputs: Mapping[str, np.ndarray], fmt: RequestFormat) -> bytes:
    """MakeJsonFromTensors: ``{"predictions": ...}`` for row requests, ``{"outputs": ...}`` else."""
    if not outputs:
        raise InvalidArgument("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    if fmt is RequestFormat.COLUMNAR:
        if len(names) == 1:
            return ('{"outputs": ' + _json_text(names[0], outputs[names[0]]) + "}").encode()
        fields = ", ".join(json.dumps(n) + ": " + _json_text(n, outputs[n]) for n in names)
        return ('{"outputs": {' + fields + "}}").encode()
    batch = -1
    for name in names:
        shape = outputs[name].shape
        if not shape:
            raise InvalidArgument(f"Tensor name: {name} has no shape information ")
        if batch >= 0 and shape[0] != batch:
            raise InvalidArgument(
                f"Tensor name: {name} has inconsistent batch size: {shape[0]} expecting: {batch}"
            )
        batch = shape[0]
    if len(names) == 1:  # the list of rows is the tensor itself
        return ('{"predictions": ' + _json_text(names[0], outputs[names[0]]) + "}").encode()
    pieces = []
    for start in range(0, batch, _CHUNK):  # a chunk of rows at a time, every output alongside
        rows = {n: _row_strings(n, outputs[n][start : start + _CHUNK]) for n in names}
        pieces.append(
            ", ".join(
                "{" + ", ".join(json.dumps(n) + ": " + rows[n][i] for n in names) + "}"
                for i in range(len(rows[names[0]]))
            )
        )
    return ('{"predictions": [' + ", ".join(pieces) + "]}").encode()
