"""Predict for any model and signature: inputs from JSON or `.npy` files, checked against metadata.

The signature is fetched from the server (`metadata`, the same document over REST and gRPC) and
each input is checked by name and converted to its declared dtype before anything is sent, so a
missing or unknown input or a wrong dtype is an `InvalidInput` naming the input, not a server
error. Shapes are the model's business, as in TF Serving (it checks names and dtypes only):
`shape_notes` says which inputs differ from the declared shape, to explain a server error. A
classify or regress signature is named as such, with the request it needs. Inputs come as:

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
    "shape_notes",
    "signature_from_metadata",
    "tf_example_hint",
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
        # No tensor_shape at all (TF1 exports such as TF Serving's half_plus_three) is an unknown
        # shape, like an unknown rank; a tensor_shape without dims is a scalar.
        shape = info.get("tensor_shape")
        if not isinstance(shape, Mapping) or shape.get("unknown_rank"):
            dims = None
        else:
            dims = [int(d["size"]) for d in shape.get("dim", [])]
        return {"dtype": dtype_name(str(info.get("dtype", ""))), "shape": dims}

    return {
        "name": signature_name,
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
    if isinstance(document, dict) and "examples" in document:
        raise InvalidInput(
            'the JSON is a classify/regress request ("examples": tf.Example features); this '
            "client sends predict requests only: POST it to /v1/models/MODEL:classify or "
            ":regress (api_rest.md), e.g. with curl -d @FILE"
        )
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
    dtype = spec["dtype"]
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
    return converted


def shape_notes(inputs: Mapping[str, Any], signature: Mapping[str, Any]) -> list[str]:
    """Inputs whose shape differs from the declared one, in words (for an error's explanation).

    Never a reason to refuse: TF Serving checks names and dtypes, not shapes (PreProcessPrediction
    in predict_util.cc), and models run on shapes their signature does not declare (TF Serving's
    half_plus_two declares x [-1, 1] and answers {"instances": [1.0, 2.0]}).
    """
    notes = []
    for name, spec in sorted(signature["inputs"].items()):
        shape, value = spec["shape"], inputs.get(name)
        if shape is None or value is None:
            continue
        got = list(np.shape(value))
        fits = len(shape) == len(got) and all(w in (-1, g) for w, g in zip(shape, got, strict=True))
        if not fits:
            declared = f"the signature declares {shape} (-1 = any)"
            notes.append(f"input {name!r} has shape {got}; {declared}")
    return notes


# The methods whose signatures take serialized tf.Example protos, and their gRPC method names.
_EXAMPLE_APIS = {"tensorflow/serving/classify": "Classify", "tensorflow/serving/regress": "Regress"}


def tf_example_hint(signature: Mapping[str, Any]) -> str | None:
    """For a classify or regress signature, what it is and the request it needs; else None."""
    api = _EXAMPLE_APIS.get(str(signature.get("method", "")))
    if api is None:
        return None
    name, verb = signature.get("name", "SIGNATURE"), api.lower()
    return (
        f"signature {name!r} is a {verb} signature: it takes tf.Example protos, not tensors. "
        f"Send a {verb} request instead: REST POST /v1/models/MODEL:{verb} with "
        f'{{"signature_name": "{name}", "examples": [{{"FEATURE": VALUE, ...}}]}} '
        f"(api_rest.md), or gRPC PredictionService/{api} with a {api}Request"
    )


def prepare_inputs(inputs: Mapping[str, Any], signature: Mapping[str, Any]) -> dict[str, Any]:
    """Inputs converted to the signature's dtypes; refuses missing or unknown ones.

    For a classify or regress signature the refusal says so and names the request it needs.
    """
    try:
        return _prepare(inputs, signature)
    except InvalidInput as exc:
        hint = tf_example_hint(signature)
        if hint is None:
            raise
        raise InvalidInput(f"{exc}; {hint}") from None


def _prepare(inputs: Mapping[str, Any], signature: Mapping[str, Any]) -> dict[str, Any]:
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
    hint = tf_example_hint(signature)
    if hint is not None:
        raise InvalidInput(f"{hint}; this client sends predict requests only")
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
