"""REST client for TF Serving's HTTP API (tensorflow_serving/g3doc/api_rest.md).

Creates `RestClient`, which speaks the routes ``/v1/models/NAME[/versions/N|/labels/L]`` with the
verbs ``:predict`` and the ``/metadata`` suffix, in the JSON shapes the API documents: predict in
row format (``instances`` -> ``predictions``) for `predict` and in columnar format (``inputs`` ->
``outputs``) for `predict_raw`, binary strings as ``{"b64": ...}``, and errors as
``{"error": "..."}`` with the HTTP status of the server's canonical code.

HTTP goes through `httpx`: one pooled keep-alive client per `RestClient` (thread-safe), and an
injectable transport (`httpx.MockTransport` in tests, no sockets needed).
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np

from serving.client.base import (
    DEFAULT_SIGNATURE,
    Prediction,
    VersionStatus,
    check_images,
    check_model_spec,
    prediction_from_outputs,
)
from serving.client.errors import ConnectionFailed, InvalidInput, ServerError, UnexpectedResponse

__all__ = ["RestClient", "decode_json_tensor", "encode_json_tensor"]


def encode_json_tensor(value: Any) -> Any:
    """A tensor value in TF Serving's JSON mapping: nested lists, bytes as ``{"b64": ...}``."""
    array = np.asarray(value)
    if array.dtype.kind == "S" or (array.dtype.kind == "O" and _all_bytes(array)):
        return _b64_nested(array.tolist())
    if array.dtype.kind == "U" or (array.dtype.kind == "O" and _all_str(array)):
        return array.tolist()
    if array.dtype.kind not in "biuf":
        raise InvalidInput(
            f"cannot send a tensor of dtype {array.dtype}: use bool, numbers, str or bytes"
        )
    return array.tolist()


def decode_json_tensor(value: Any) -> np.ndarray:
    """The numpy array for a JSON tensor value; ``{"b64": ...}`` objects become bytes."""
    if _has_b64(value):
        return np.array(_unb64_nested(value), dtype=object)
    return np.asarray(value)


class RestClient:
    """TF Serving over REST. Thread-safe; reuses keep-alive connections; close() when done."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if "://" not in base_url:
            base_url = f"http://{base_url}"
        if not base_url.startswith(("http://", "https://")):
            raise InvalidInput(f"REST address {base_url!r}: use http://HOST:PORT")
        if timeout <= 0:
            raise InvalidInput(f"timeout {timeout!r}: use a positive number of seconds")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)
        # Output names of single-output signatures, which TF Serving's columnar response leaves
        # unnamed; learnt once per (model, version, label, signature) from the metadata API.
        self._single_output: dict[tuple[str, int | None, str | None, str], str] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def predict(
        self,
        model: str,
        images: np.ndarray,
        *,
        version: int | None = None,
        label: str | None = None,
        signature_name: str = DEFAULT_SIGNATURE,
    ) -> Prediction:
        """Classes and probabilities for `images` (float32 [N, 28, 28, 1], raw 0-255 grey)."""
        check_model_spec(model, version, label)
        batch = check_images(images)
        body = {"signature_name": signature_name, "instances": _compact(batch)}
        answer = self._call("POST", _model_path(model, version, label) + ":predict", body)
        predictions = answer.get("predictions")
        if not isinstance(predictions, list) or not all(isinstance(p, dict) for p in predictions):
            raise UnexpectedResponse(
                "predict response lacks a 'predictions' list of objects (one per image); "
                f"got {_preview(answer)}"
            )
        try:
            outputs = {
                name: np.asarray([row[name] for row in predictions])
                for name in (predictions[0] if predictions else {})
            }
        except (KeyError, ValueError) as exc:
            raise UnexpectedResponse(f"ragged 'predictions' in response: {exc}") from exc
        return prediction_from_outputs(outputs, batch.shape[0], model_version=None)

    def predict_raw(
        self,
        model: str,
        inputs: Mapping[str, Any],
        *,
        version: int | None = None,
        label: str | None = None,
        signature_name: str = DEFAULT_SIGNATURE,
    ) -> dict[str, np.ndarray]:
        """Run any signature on named input tensors (columnar format); returns named outputs."""
        check_model_spec(model, version, label)
        if not inputs:
            raise InvalidInput("predict_raw needs at least one named input tensor")
        body = {
            "signature_name": signature_name,
            "inputs": {name: encode_json_tensor(value) for name, value in inputs.items()},
        }
        answer = self._call("POST", _model_path(model, version, label) + ":predict", body)
        if "outputs" not in answer:
            raise UnexpectedResponse(f"predict response lacks 'outputs'; got {_preview(answer)}")
        outputs = answer["outputs"]
        if isinstance(outputs, dict) and not _is_b64_object(outputs):
            return {name: decode_json_tensor(value) for name, value in outputs.items()}
        # A single-output signature: TF Serving omits the name, so look it up once.
        name = self._output_name(model, version, label, signature_name)
        return {name: decode_json_tensor(outputs)}

    def status(
        self, model: str, *, version: int | None = None, label: str | None = None
    ) -> list[VersionStatus]:
        """``GET /v1/models/NAME[...]``: the state of each version (or of the one asked for)."""
        check_model_spec(model, version, label)
        answer = self._call("GET", _model_path(model, version, label))
        return parse_status_json(answer)

    def metadata(
        self, model: str, *, version: int | None = None, label: str | None = None
    ) -> dict[str, Any]:
        """``GET /v1/models/NAME[...]/metadata``: ``model_spec`` and ``metadata.signature_def``."""
        check_model_spec(model, version, label)
        return self._call("GET", _model_path(model, version, label) + "/metadata")

    def _output_name(
        self, model: str, version: int | None, label: str | None, signature_name: str
    ) -> str:
        key = (model, version, label, signature_name)
        with self._lock:
            if key in self._single_output:
                return self._single_output[key]
        meta = self.metadata(model, version=version, label=label)
        try:
            signatures = meta["metadata"]["signature_def"]["signature_def"]
            names = list(signatures[signature_name]["outputs"])
        except (KeyError, TypeError) as exc:
            raise UnexpectedResponse(
                f"cannot find the outputs of signature {signature_name!r} in the metadata"
            ) from exc
        if len(names) != 1:
            raise UnexpectedResponse(
                f"unnamed 'outputs' in the response but signature {signature_name!r} has "
                f"{len(names)} outputs {names}"
            )
        with self._lock:
            self._single_output[key] = names[0]
        return names[0]

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        content = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if content is not None else None
        try:
            response = self._http.request(method, path, content=content, headers=headers)
        except httpx.TimeoutException as exc:
            raise ConnectionFailed(
                f"no answer from {self.base_url}{path} within {self.timeout:g}s ({exc})"
            ) from exc
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"cannot reach {self.base_url}{path}: {exc}") from exc
        try:
            answer = json.loads(response.content)
        except ValueError:
            answer = None
        if response.is_error:
            if isinstance(answer, dict) and isinstance(answer.get("error"), str):
                raise ServerError(response.status_code, answer["error"])
            text = response.text.strip()[:500] or response.reason_phrase
            raise ServerError(response.status_code, text)
        if not isinstance(answer, dict):
            raise UnexpectedResponse(
                f"{method} {path} answered {response.status_code} with a body that is not a JSON "
                f"object: {response.text[:200]!r}"
            )
        return answer


def parse_status_json(answer: Mapping[str, Any]) -> list[VersionStatus]:
    """`VersionStatus` list from a JSON ``GetModelStatusResponse``."""
    entries = answer.get("model_version_status")
    if not isinstance(entries, list):
        raise UnexpectedResponse(f"status lacks 'model_version_status'; got {_preview(answer)}")
    result = []
    for entry in entries:
        status = entry.get("status") or {}
        try:
            version = int(entry["version"])
        except (KeyError, TypeError, ValueError) as exc:
            raise UnexpectedResponse(f"status entry without a numeric version: {entry}") from exc
        result.append(
            VersionStatus(
                version=version,
                state=str(entry.get("state", "UNKNOWN")),
                error_code=str(status.get("error_code", "OK")),
                error_message=str(status.get("error_message", "")),
            )
        )
    return result


def _compact(batch: np.ndarray) -> list[Any]:
    """Nested lists for JSON; whole-number pixels as ints ("255" rather than "255.0").

    TF Serving reads any JSON number into a DT_FLOAT tensor, and grey values from images are
    whole numbers: ints halve the encoding time and the body size on the hot path.
    """
    rounded = np.rint(batch)
    if np.array_equal(rounded, batch) and np.abs(rounded).max() < 2**24:
        return rounded.astype(np.int32).tolist()
    return batch.tolist()


def _model_path(model: str, version: int | None, label: str | None) -> str:
    # Percent-encoded, every byte but unreserved ones: TF Serving's routes capture `[^/:]+` and
    # then decode it (DecodeArg, http_rest_api_util.cc), so any name reaches the right model.
    path = f"/v1/models/{quote(model, safe='')}"
    if version is not None:
        path += f"/versions/{version}"
    elif label is not None:
        path += f"/labels/{quote(label, safe='')}"
    return path


def _preview(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 200 else text[:200] + "..."


def _all_bytes(array: np.ndarray) -> bool:
    return array.size > 0 and all(isinstance(v, bytes) for v in array.flat)


def _all_str(array: np.ndarray) -> bool:
    return array.size > 0 and all(isinstance(v, str) for v in array.flat)


def _b64_nested(value: Any) -> Any:
    if isinstance(value, list):
        return [_b64_nested(v) for v in value]
    return {"b64": base64.b64encode(value).decode("ascii")}


def _is_b64_object(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _has_b64(value: Any) -> bool:
    while isinstance(value, list) and value:
        value = value[0]
    return _is_b64_object(value)


def _unb64_nested(value: Any) -> Any:
    if isinstance(value, list):
        return [_unb64_nested(v) for v in value]
    if _is_b64_object(value):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except ValueError as exc:
            raise UnexpectedResponse(f"invalid base64 in response: {exc}") from exc
    raise UnexpectedResponse(f"mixed b64 and plain values in one tensor: {value!r}")
