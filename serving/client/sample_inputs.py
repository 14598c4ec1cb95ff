"""Sample inputs for any signature, built from its declared dtypes and shapes alone.

What `python -m devtools.serve` prints as each model's example request and what
``scripts/local-run --export`` predicts with: one value per element, of the input's dtype
(``1.0``, ``1``, ``True``, ``"sample text"``), in a tensor of the input's shape with every
unknown dimension (``-1``) filled in: the first one is the batch (``batch`` rows), any other gets
`FREE_DIMENSION`; an unknown rank is a vector of ``batch`` values. Whether the model can compute
anything useful from them is its business; they are well-formed for its signature, which is all
a smoke test or an example needs.

`predict_body` turns them into a REST predict body in TF Serving's row format
(``{"instances": [...]}``) when every input is batched along its first dimension, else in the
columnar format (``{"inputs": {...}}``), as tensorflow_serving/g3doc/api_rest.md describes both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from serving.client.base import DEFAULT_SIGNATURE
from serving.client.rest import encode_json_tensor

__all__ = ["FREE_DIMENSION", "SAMPLE_TEXT", "predict_body", "sample_inputs"]

FREE_DIMENSION = 8  # an unknown dimension after the batch one: a few tokens, pixels or steps
SAMPLE_TEXT = "sample text"
_VALUES: dict[str, Any] = {"bool": True, "string": SAMPLE_TEXT}


def _shape(dims: list[int] | None, batch: int) -> tuple[int, ...]:
    if dims is None:
        return (batch,)
    filled = []
    for position, size in enumerate(dims):
        if size >= 0:
            filled.append(size)
        else:
            filled.append(batch if position == 0 else FREE_DIMENSION)
    return tuple(filled)


def _value(dtype: str) -> Any:
    if dtype in _VALUES:
        return _VALUES[dtype]
    try:
        kind = np.dtype(dtype).kind
    except TypeError:
        kind = ""
    if kind in "iuf" and kind:
        return 1.0 if kind == "f" else 1
    raise ValueError(f"no sample value for an input of dtype {dtype}")


def sample_inputs(signature: Mapping[str, Any], batch: int = 1) -> dict[str, np.ndarray]:
    """One array per input of `signature` (`signature_from_metadata`'s shape) for `batch` rows.

    Raises ValueError for a dtype no JSON or TensorProto value spells simply (complex, ...).
    """
    arrays = {}
    for name, spec in sorted(signature["inputs"].items()):
        shape, value = _shape(spec["shape"], batch), _value(spec["dtype"])
        if spec["dtype"] == "string":
            arrays[name] = np.full(shape, value.encode(), dtype=object)
        else:
            arrays[name] = np.full(shape, value, dtype=spec["dtype"])
    return arrays


def _batched(spec: Mapping[str, Any]) -> bool:
    dims = spec["shape"]
    return dims is None or (len(dims) > 0 and dims[0] == -1)


def predict_body(signature: Mapping[str, Any], batch: int = 1) -> dict[str, Any]:
    """A REST predict body with `sample_inputs`, ready for ``json.dumps``."""
    inputs = sample_inputs(signature, batch)
    body: dict[str, Any] = {}
    name = signature.get("name", DEFAULT_SIGNATURE)
    if name != DEFAULT_SIGNATURE:
        body["signature_name"] = name
    plain = {k: _plain(v) for k, v in inputs.items()}
    if inputs and all(_batched(spec) for spec in signature["inputs"].values()):
        if len(plain) == 1:
            (body["instances"],) = plain.values()
        else:
            body["instances"] = [{k: v[row] for k, v in plain.items()} for row in range(batch)]
    elif len(plain) == 1:
        (body["inputs"],) = plain.values()
    else:
        body["inputs"] = plain
    return body


def _plain(array: np.ndarray) -> Any:
    """JSON values: strings stay text (a plain JSON string is a DT_STRING value)."""
    if array.dtype == object:
        return np.vectorize(lambda v: v.decode(), otypes=[object])(array).tolist()
    return encode_json_tensor(array)
