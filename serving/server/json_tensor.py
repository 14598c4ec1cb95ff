"""TF Serving's JSON <-> tensor rules (``tensorflow_serving/util/json_tensor.cc``), in Python.

Creates nothing; pure functions used by the REST layer:

- `parse_json` reads a request body like TF Serving's rapidjson setup (NaN/Infinity allowed,
  anything after the top-level value ignored) and reports errors in rapidjson's words;
- `signature_name_of`, `predict_inputs_from_json` turn a predict body in row (``instances``) or
  columnar (``inputs``) form into numpy arrays typed by the signature, with TF Serving's checks,
  order and messages; ``{"b64": ...}`` values feed DT_STRING inputs;
- `predict_response_json` writes ``predictions`` / ``outputs`` (a single output is unwrapped,
  tensors named ``*_bytes`` come back base64-encoded, floats print the way TF Serving prints them);
- `examples_from_json`, `classification_json`, `regression_json` do the same for classify/regress.

Hot path: numeric tensors first go through ``numpy.array`` (C speed). Only when that is not
provably equivalent (ragged lists, mixed types, booleans, strings, objects) does the exact
element-by-element walk run, which also produces TF Serving's error messages.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow.core.framework import types_pb2 as dt

from serving.server.errors import InvalidArgument, Unimplemented
from serving.server.tensors import dtype_name, numpy_dtype


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

# --- parsing ---------------------------------------------------------------------------------

# Python's json messages -> rapidjson's GetParseError_En, which TF Serving puts in its errors.
_PARSE_ERRORS = {
    "Expecting value": "Invalid value.",
    "Expecting property name enclosed in double quotes": "Missing a name for object member.",
    "Expecting ':' delimiter": "Missing a colon after a name of object member.",
    "Unterminated string starting at": "Missing a closing quotation mark in string.",
    "Invalid \\escape": "Invalid escape character in string.",
    "Invalid \\uXXXX escape": "Incorrect hex digit after \\u escape in string.",
    "Invalid control character at": "Invalid encoding in string.",
}


class _TooBig(ValueError):
    pass


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # rapidjson refuses 1e400 rather than reading it as infinity
        raise _TooBig(text)
    return value


_DECODER = json.JSONDecoder(parse_float=_parse_float)


def _comma_error(text: str, pos: int) -> str:
    """rapidjson names the container a missing comma belongs to; find the innermost open one."""
    stack: list[str] = []
    in_string = escaped = False
    for ch in text[:pos]:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            stack.append(ch)
        elif ch in "]}" and stack:
            stack.pop()
    if stack and stack[-1] == "{":
        return "Missing a comma or '}' after an object member."
    return "Missing a comma or ']' after an array element."


def parse_json(body: bytes) -> dict[str, Any]:
    """Parse a request body into a JSON object, or raise InvalidArgument as TF Serving does."""
    if not body:
        raise InvalidArgument("JSON Parse error: The document is empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(
            f"JSON Parse error: Invalid encoding in string. at offset: {exc.start}"
        ) from None
    start = len(text) - len(text.lstrip(" \t\n\r"))
    if start == len(text):
        raise InvalidArgument(f"JSON Parse error: The document is empty. at offset: {start}")
    try:
        # raw_decode stops after the first value, like rapidjson's kParseStopWhenDoneFlag.
        doc, _ = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        message = _PARSE_ERRORS.get(exc.msg)
        if exc.msg == "Expecting ',' delimiter":
            message = _comma_error(text, exc.pos)
        raise InvalidArgument(
            f"JSON Parse error: {message or 'Invalid value.'} at offset: {exc.pos}"
        ) from None
    except _TooBig as exc:
        raise InvalidArgument(
            "JSON Parse error: Number too big to be stored in double. at offset: "
            f"{max(text.find(str(exc)), 0)}"
        ) from None
    except RecursionError:
        raise InvalidArgument("JSON Parse error: the document nests too deeply") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"JSON Value: {debug_string(doc)} Is not object")
    return doc


# --- rapidjson-style debug strings, used inside error messages ----------------------------------

_MAX_DEBUG_BYTES = 256  # kMaxJsonDebugStringBytes


def _json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def debug_string(value: Any) -> str:
    """A value as rapidjson's PrettyWriter(kFormatSingleLineArray) prints it, cut at 256 bytes."""
    out: list[str] = []
    size = 0

    def emit(token: str) -> bool:
        nonlocal size
        if size >= _MAX_DEBUG_BYTES:
            return False
        out.append(token)
        size += len(token)
        return True

    def walk(v: Any, indent: int) -> bool:
        if isinstance(v, dict):
            if not v:
                return emit("{}")
            if not emit("{"):
                return False
            for i, (key, item) in enumerate(v.items()):
                pad = "\n" + "    " * (indent + 1)
                if not emit(("," if i else "") + pad + json.dumps(key) + ": "):
                    return False
                if not walk(item, indent + 1):
                    return False
            return emit("\n" + "    " * indent + "}")
        if isinstance(v, list):
            if not emit("["):
                return False
            for i, item in enumerate(v):
                if (i and not emit(", ")) or not walk(item, indent):
                    return False
            return emit("]")
        if v is None or isinstance(v, bool):
            return emit(json.dumps(v))
        if isinstance(v, float):
            return emit("NaN" if v != v else repr(v).replace("inf", "Infinity"))
        return emit(json.dumps(v, ensure_ascii=False))

    walk(value, 0)
    return "".join(out)


def _format_error(doc: Any, *parts: str) -> InvalidArgument:
    return InvalidArgument(f"JSON Value: {debug_string(doc)} " + "".join(parts))


def _type_error(value: Any, dtype: int) -> InvalidArgument:
    return InvalidArgument(
        f"JSON Value: {debug_string(value)} Type: {_json_type(value)} "
        f"is not of expected type: {dtype_name(dtype)}"
    )


def signature_name_of(doc: Mapping[str, Any]) -> str:
    """The optional ``signature_name`` (FillSignature); "" when absent."""
    if "signature_name" not in doc:
        return ""
    name = doc["signature_name"]
    if not isinstance(name, str):
        raise _format_error(
            doc, "not formatted correctly. 'signature_name' key must be a string value."
        )
    return name


# --- JSON -> tensors -----------------------------------------------------------------------------


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _decode_b64(value: Any) -> bytes:
    if not _is_b64(value):
        raise InvalidArgument(
            f"JSON Value: {debug_string(value)} not formatted correctly for base64 data"
        )
    text = value["b64"].strip()
    try:
        # absl::Base64Unescape accepts unpadded input too.
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument("Unable to base64 decode") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _scalar(value: Any, dtype: int) -> Any:
    """AddValueToTensor: one JSON leaf as a Python value of the target type."""
    if dtype in _FLOATS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(value, dtype)
        return value
    if dtype in _RANGES:
        low, high = _RANGES[dtype]
        if not _is_int(value) or not low <= value <= high:
            raise _type_error(value, dtype)
        return value
    if dtype == dt.DT_STRING:
        if not isinstance(value, str):
            raise _type_error(value, dtype)
        return value.encode("utf-8", "surrogatepass")
    if dtype == dt.DT_BOOL:
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    raise Unimplemented(
        f"Conversion of JSON Value: {debug_string(value)} to type: {dtype_name(dtype)}"
    )


def _dense_shape(value: Any) -> list[int]:
    """GetDenseTensorShape: the shape implied by the first element at every level."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


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
                raise _type_error(value, dtype)
            out.append(_decode_b64(value))
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
    return isinstance(value, dict) and not _is_b64(value)


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
    if not isinstance(value, dict) or _is_b64(value):
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
            raise _format_error(
                doc,
                "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to "
                "exist ",
            )
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise _format_error(doc, "Expecting 'instances' to be an list/array")
        if not instances:
            raise _format_error(doc, "No values in 'instances' array")
        return _rows(instances, input_dtypes, no_bools), RequestFormat.ROW
    if "inputs" in doc:
        return _columns(doc["inputs"], input_dtypes, no_bools), RequestFormat.COLUMNAR
    raise InvalidArgument("Missing 'inputs' or 'instances' key")


# --- tensors -> JSON -----------------------------------------------------------------------------


def _float_tokens(flat: np.ndarray) -> list[str]:
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
        return _float_tokens(flat)
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


def predict_response_json(outputs: Mapping[str, np.ndarray], fmt: RequestFormat) -> bytes:
    """MakeJsonFromTensors: ``{"predictions": ...}`` for row requests, ``{"outputs": ...}`` else."""
    if not outputs:
        raise InvalidArgument("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    if fmt is RequestFormat.COLUMNAR:
        parts = {n: _nest(_tokens(n, outputs[n]), outputs[n].shape) for n in names}
        if len(names) == 1:
            return ('{"outputs": ' + parts[names[0]] + "}").encode()
        fields = ", ".join(json.dumps(n) + ": " + parts[n] for n in names)
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
    rows: dict[str, list[str]] = {}
    for name in names:
        array = outputs[name]
        tokens = _tokens(name, array)
        inner = array.shape[1:]
        step = math.prod(inner)
        rows[name] = [_nest(tokens[i * step : (i + 1) * step], inner) for i in range(batch)]
    if len(names) == 1:
        items = rows[names[0]]
    else:
        items = [
            "{" + ", ".join(json.dumps(n) + ": " + rows[n][i] for n in names) + "}"
            for i in range(batch)
        ]
    return ('{"predictions": [' + ", ".join(items) + "]}").encode()


def classification_json(results: Sequence[Sequence[tuple[bytes, float]]]) -> bytes:
    """MakeJsonFromClassificationResult: ``{"results": [[[label, score], ...], ...]}``."""
    if not results:
        raise InvalidArgument("Cannot convert empty ClassificationResults to JSON")
    rows = []
    for classes in results:
        scores = _float_tokens(np.array([s for _, s in classes], dtype=np.float32))
        labels = [json.dumps(label.decode("utf-8", "replace")) for label, _ in classes]
        rows.append(
            "[" + ", ".join(f"[{lab}, {sc}]" for lab, sc in zip(labels, scores, strict=True)) + "]"
        )
    return ('{"results": [' + ", ".join(rows) + "]}").encode()


def regression_json(values: Sequence[float]) -> bytes:
    """MakeJsonFromRegressionResult: ``{"results": [v, ...]}``."""
    if not len(values):
        raise InvalidArgument("Cannot convert empty RegressionResults to JSON")
    tokens = _float_tokens(np.asarray(values, dtype=np.float32))
    return ('{"results": [' + ", ".join(tokens) + "]}").encode()


def error_json(message: str) -> bytes:
    """MakeJsonFromStatus: ``{"error": "<message>"}``."""
    return json.dumps({"error": message}, ensure_ascii=False).encode()


# --- JSON -> tf.Example (classify / regress) -----------------------------------------------------

_KIND_NAMES = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64", None: "UNKNOWN"}


def _add_feature_value(value: Any, name: str, feature: feature_pb2.Feature) -> None:
    """AddValueToFeature: the first value fixes the feature's kind; later ones must agree."""
    kind = feature.WhichOneof("kind")

    def need(wanted: str) -> None:
        if kind not in (None, wanted):
            raise InvalidArgument(
                f"Unexpected element type in feature: {name} expecting type: {_KIND_NAMES[kind]}"
            )

    if isinstance(value, bool):
        need("int64_list")
        feature.int64_list.value.append(1 if value else 0)
    elif (
        value is None or isinstance(value, list) or (isinstance(value, dict) and not _is_b64(value))
    ):
        raise InvalidArgument(
            f"Feature: {name} has element with unexpected JSON type: {_json_type(value)}"
        )
    elif isinstance(value, dict):
        need("bytes_list")
        feature.bytes_list.value.append(_decode_b64(value))
    elif isinstance(value, str):
        need("bytes_list")
        feature.bytes_list.value.append(value.encode("utf-8", "surrogatepass"))
    elif isinstance(value, float) or value > 2**64 - 1:  # rapidjson reads huge ints as doubles
        need("float_list")
        feature.float_list.value.append(float(value))
    else:
        need("int64_list")
        if value > 2**63 - 1:
            raise InvalidArgument(
                f"Feature: {name} has uint64_t element. Only int64_t is supported."
            )
        feature.int64_list.value.append(value)


def _example(value: Any) -> example_pb2.Example:
    if not isinstance(value, dict):
        raise InvalidArgument(f"Example must be JSON object but got JSON {_json_type(value)}")
    example = example_pb2.Example()
    for name, content in value.items():
        feature = feature_pb2.Feature()
        for item in content if isinstance(content, list) else [content]:
            _add_feature_value(item, name, feature)
        example.features.feature[name].CopyFrom(feature)
    return example


def examples_from_json(doc: Mapping[str, Any]) -> list[bytes]:
    """FillClassifyRegressRequestFromJson: serialized tf.Examples, each prefixed by the context.

    Concatenating the serialized context and example is exactly how TF Serving merges them
    (InputToSerializedExampleTensor): protobuf parsing merges the two messages.
    """
    context = b""
    if "context" in doc:
        context = _example(doc["context"]).SerializeToString()
    if "examples" not in doc:
        raise _format_error(
            doc, "When method is classify, key 'examples' is expected and was not found"
        )
    examples = doc["examples"]
    if not isinstance(examples, list):
        raise _format_error(doc, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise _format_error(doc, "'examples' value is an empty array")
    return [context + _example(e).SerializeToString() for e in examples]
