"""Predict for any model and signature: inputs from JSON or `.npy` files, checked against metadata.

The signature is fetched from the server (`metadata`, the same document over REST and gRPC) and
each input is converted to its declared dtype and checked against its declared shape before
anything is sent, so a wrong name, dtype or shape is an `InvalidInput` naming the input, not a
server error. Inputs come as:

- JSON in TF Serving's REST request shapes (tensorflow_serving/g3doc/api_rest.md): row format
  ``{"instances": [{"x": ..., "y": ...}, ...]}`` (or a list of plain values for a one-input
  signature) and columnar format ``{"inputs": {"x": [...], ...}}`` (or one plain tensor);
  ``{"b64": ...}`` values are bytes; an optional ``signature_name`` is honoured;
- ``NAME=FILE.npy`` pairs, one array per input name.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from contracts.signatures import dtype_name
from serving.client.base import DEFAULT_SIGNATURE
from serving.client.errors import InvalidInput, UnexpectedResponse
from serving.client.images import read_npy

__all__ = [
    "load_json_inputs",
    "load_npy_inputs",
    "predict_with_signature",
    "prepare_inputs",
    "signature_from_metadata",
]

_NUMPY_DTYPES = {
    "float16": np.float16,
    "float32": np.float32,
    "float64": np.float64,
    "int8": np.int8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
    "uint16": np.uint16,
    "uint32": np.uint32,
    "uint64": np.uint64,
    "bool": np.bool_,
}


def signature_from_metadata(metadata: Mapping[str, Any], signature_name: str) -> dict[str, Any]:
    """``{"inputs": {name: {"dtype", "shape"}}, "outputs": {...}}`` of one signature."""
    try:
        signatures = metadata["metadata"]["signature_def"]["signature_def"]
    except (KeyError, TypeError) as exc:
        raise UnexpectedResponse("the model's metadata holds no signature_def map") from exc
    if signature_name not in signatures:
        servable = sorted(k for k in signatures if not k.startswith("__"))
        raise InvalidInput(
            f"the model has no signature {signature_name!r}; it has {servable} "
            "(choose one with --signature-name)"
        )
    signature = signatures[signature_name]

    def tensor(info: Mapping[str, Any]) -> dict[str, Any]:
        shape = info.get("tensor_shape") or {}
        dims = None if shape.get("unknown_rank") else [int(d["size"]) for d in shape.get("dim", [])]
        return {"dtype": dtype_name(str(info.get("dtype", ""))), "shape": dims}

    return {
        "method": signature.get("method_name", ""),
        "inputs": {k: tensor(v) for k, v in (signature.get("inputs") or {}).items()},
        "outputs": {k: tensor(v) for k, v in (signature.get("outputs") or {}).items()},
    }


def _unb64(value: Any) -> Any:
    if isinstance(value, list):
        return [_unb64(v) for v in value]
    if isinstance(value, dict) and set(value) == {"b64"}:
        try:
            return base64.b64decode(value["b64"], validate=True)
        except ValueError as exc:
            raise InvalidInput(f"invalid base64 in the inputs: {exc}") from exc
    return value


def _array(value: Any, what: str) -> np.ndarray:
    value = _unb64(value)
    try:
        array = np.array(value)
    except ValueError as exc:
        raise InvalidInput(f"{what} is ragged (rows of different lengths): {exc}") from exc
    if array.dtype.kind == "S" or (array.dtype.kind == "U"):
        array = array.astype(object)
    return array


def load_json_inputs(
    document: Any, input_names: Sequence[str]
) -> tuple[dict[str, Any], str | None]:
    """Named input arrays (and the signature_name, if the document names one) from a request."""
    if not isinstance(document, dict) or ("instances" in document) == ("inputs" in document):
        raise InvalidInput(
            'JSON inputs must be an object with exactly one of "instances" (row format) or '
            '"inputs" (columnar format), as TF Serving\'s REST predict API takes them'
        )
    signature_name = document.get("signature_name")
    if "inputs" in document:
        columns = document["inputs"]
        if isinstance(columns, dict) and set(columns) != {"b64"}:
            return {k: _array(v, f"input {k!r}") for k, v in columns.items()}, signature_name
        return {_only_input(input_names): _array(columns, "inputs")}, signature_name
    rows = document["instances"]
    if not isinstance(rows, list) or not rows:
        raise InvalidInput('"instances" must be a non-empty list (one entry per example)')
    if all(isinstance(r, dict) and set(r) != {"b64"} for r in rows):
        names = set(rows[0])
        for number, row in enumerate(rows, start=1):
            if set(row) != names:
                raise InvalidInput(
                    f"instance {number} names inputs {sorted(row)}, instance 1 {sorted(names)}; "
                    "every instance must name the same inputs"
                )
        return {
            name: _array([row[name] for row in rows], f"input {name!r}") for name in sorted(names)
        }, signature_name
    return {_only_input(input_names): _array(rows, "instances")}, signature_name


def _only_input(input_names: Sequence[str]) -> str:
    if len(input_names) != 1:
        raise InvalidInput(
            f"unnamed inputs, but the signature takes {len(input_names)} inputs "
            f"{sorted(input_names)}: name each one"
        )
    return input_names[0]


def load_npy_inputs(pairs: Sequence[str]) -> dict[str, np.ndarray]:
    """``NAME=FILE.npy`` pairs -> named arrays (pickled object arrays are refused)."""
    inputs: dict[str, np.ndarray] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise InvalidInput(f"--input {pair!r}: use NAME=FILE.npy")
        if name in inputs:
            raise InvalidInput(f"--input {name!r} given twice")
        array = read_npy(Path(path), f"--input {name}={path}")
        if not isinstance(array, np.ndarray):
            raise InvalidInput(
                f"--input {name}={path}: holds several arrays (.npz); save one array with np.save"
            )
        inputs[name] = array
    return inputs


def _convert(name: str, value: Any, spec: Mapping[str, Any]) -> np.ndarray:
    dtype, shape = spec["dtype"], spec["shape"]
    array = np.asarray(value)
    if dtype == "string":
        if array.dtype.kind not in "OSU":
            raise InvalidInput(f"input {name!r} takes strings, got {array.dtype} values")
        flat = [v if isinstance(v, bytes) else str(v).encode() for v in array.reshape(-1)]
        converted = np.array(flat, dtype=object).reshape(array.shape)
    elif dtype in _NUMPY_DTYPES:
        target = np.dtype(_NUMPY_DTYPES[dtype])
        if array.dtype.kind not in "biuf":
            raise InvalidInput(f"input {name!r} takes {dtype}, got {array.dtype} values")
        converted = array.astype(target)
        if target.kind in "iu" and not np.array_equal(converted, array):
            raise InvalidInput(
                f"input {name!r} takes {dtype}: its values are not all whole numbers in range"
            )
    else:
        raise InvalidInput(f"input {name!r} has dtype {dtype}, which this client cannot send")
    if shape is not None:
        fits = len(shape) == converted.ndim and all(
            want in (-1, got) for want, got in zip(shape, converted.shape, strict=True)
        )
        if not fits:
            raise InvalidInput(
                f"input {name!r} must have shape {shape} (-1 = any size), got "
                f"{list(converted.shape)}"
            )
    return converted


def prepare_inputs(inputs: Mapping[str, Any], signature: Mapping[str, Any]) -> dict[str, Any]:
    """Inputs converted to the signature's dtypes; refuses missing, unknown or misshapen ones."""
    wanted = signature["inputs"]
    missing, unknown = sorted(wanted.keys() - inputs.keys()), sorted(inputs.keys() - wanted.keys())
    if missing or unknown:
        raise InvalidInput(
            f"the signature takes inputs {sorted(wanted)}; "
            + "; ".join(
                part
                for part in (
                    f"missing {missing}" if missing else "",
                    f"unknown {unknown}" if unknown else "",
                )
                if part
            )
        )
    return {name: _convert(name, inputs[name], wanted[name]) for name in sorted(wanted)}


def fetch_predict_signature(
    client: Any,
    model: str,
    *,
    signature_name: str = DEFAULT_SIGNATURE,
    version: int | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """The named predict signature of a served model, from its metadata."""
    metadata = client.metadata(model, version=version, label=label)
    signature = signature_from_metadata(metadata, signature_name)
    if signature["method"] and signature["method"] != "tensorflow/serving/predict":
        raise InvalidInput(
            f"signature {signature_name!r} is a {signature['method'].rsplit('/', 1)[-1]} "
            "signature (tf.Example in); this client sends predict requests only"
        )
    return signature


def predict_with_signature(
    client: Any,
    model: str,
    inputs: Mapping[str, Any],
    *,
    signature_name: str = DEFAULT_SIGNATURE,
    version: int | None = None,
    label: str | None = None,
    signature: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Check and convert `inputs` against the signature, predict; returns the named outputs.

    The signature is fetched from the server's metadata unless given (`fetch_predict_signature`
    once, then many batches without a metadata request each).
    """
    if signature is None:
        signature = fetch_predict_signature(
            client, model, signature_name=signature_name, version=version, label=label
        )
    prepared = prepare_inputs(inputs, signature)
    return client.predict_raw(
        model, prepared, version=version, label=label, signature_name=signature_name
    )


def read_json_file(path: str) -> Any:
    """A JSON document from a file, or from standard input when `path` is '-'."""
    import sys

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        return json.loads(text)
    except OSError as exc:
        raise InvalidInput(f"--inputs-json {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise InvalidInput(f"--inputs-json {path}: not JSON ({exc})") from exc
