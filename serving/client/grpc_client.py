"""gRPC client for TF Serving's ``PredictionService`` and ``ModelService``.

Creates `GrpcClient`: Predict, GetModelMetadata and GetModelStatus, with the model spec (name +
version or version label + signature) TF Serving expects. The methods are called by their gRPC
paths (``/tensorflow.serving.PredictionService/Predict``, as ``prediction_service_pb2_grpc``
names them) with messages built from TF Serving's own protos by `serving.client.protos`, and
tensors converted with NumPy by `serving.client.tensors`: protobuf, grpcio and NumPy only, never
TensorFlow (whose import alone takes seconds).

One channel per client, shared by every thread that uses it (gRPC multiplexes concurrent calls
over its HTTP/2 connection); pass ``channel=`` to reuse or configure your own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format

from serving.client.base import (
    DEFAULT_SIGNATURE,
    IMAGES_INPUT,
    Prediction,
    VersionStatus,
    check_images,
    check_model_spec,
    prediction_from_outputs,
)
from serving.client.errors import ConnectionFailed, InvalidInput, ServerError, UnexpectedResponse
from serving.client.protos import message_class
from serving.client.tensors import TensorError, to_ndarray, to_tensor_proto

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "GrpcClient"]

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# What gRPC's own library (not the server) puts in UNAVAILABLE details when no connection exists;
# those are connection failures, while a server's UNAVAILABLE (e.g. "queue full") is a ServerError.
_NO_CONNECTION_HINTS = (
    "failed to connect",
    "connection refused",
    "socket closed",
    "connection reset",
    "dns resolution failed",
    "name resolution",
    "broken pipe",
)


class GrpcClient:
    """TF Serving over gRPC. Thread-safe; close() closes the channel it created."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = 10.0,
        channel: grpc.Channel | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        host, sep, port = target.rpartition(":")
        if channel is None and (not sep or not host or not port.isdigit()):
            raise InvalidInput(f"gRPC address {target!r}: use HOST:PORT, e.g. localhost:8500")
        if timeout <= 0:
            raise InvalidInput(f"timeout {timeout!r}: use a positive number of seconds")
        self.target = target
        self.timeout = timeout
        self._owns_channel = channel is None
        self._channel = channel or grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
            ],
        )
        self._methods = {
            name: self._channel.unary_unary(
                f"/tensorflow.serving.{service}/{name}",
                request_serializer=_message(f"{name}Request").SerializeToString,
                response_deserializer=_message(f"{name}Response").FromString,
            )
            for service, name in _METHODS
        }

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_channel:
            self._channel.close()

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
        batch = check_images(images)
        outputs, served = self._run_predict(
            model, {IMAGES_INPUT: batch}, version, label, signature_name
        )
        return prediction_from_outputs(outputs, batch.shape[0], model_version=served)

    def predict_raw(
        self,
        model: str,
        inputs: Mapping[str, Any],
        *,
        version: int | None = None,
        label: str | None = None,
        signature_name: str = DEFAULT_SIGNATURE,
    ) -> dict[str, np.ndarray]:
        """Run any signature on named input tensors; returns its named outputs."""
        if not inputs:
            raise InvalidInput("predict_raw needs at least one named input tensor")
        outputs, _ = self._run_predict(model, inputs, version, label, signature_name)
        return outputs

    def status(
        self, model: str, *, version: int | None = None, label: str | None = None
    ) -> list[VersionStatus]:
        """``ModelService.GetModelStatus``: the state of each version (or of the one asked for)."""
        request = _message("GetModelStatusRequest")(
            model_spec=_model_spec(model, version, label, "")
        )
        response = self._call("GetModelStatus", request)
        result = []
        for entry in response.model_version_status:
            state = _enum_name(entry, "state")
            code = _enum_name(entry.status, "error_code")
            result.append(
                VersionStatus(
                    version=entry.version,
                    state=state or str(entry.state),
                    error_code=code or str(entry.status.error_code),
                    error_message=entry.status.error_message,
                )
            )
        return result

    def metadata(
        self, model: str, *, version: int | None = None, label: str | None = None
    ) -> dict[str, Any]:
        """``GetModelMetadata`` for ``signature_def``, as the REST API's JSON shape."""
        request = _message("GetModelMetadataRequest")(
            model_spec=_model_spec(model, version, label, ""), metadata_field=["signature_def"]
        )
        response = self._call("GetModelMetadata", request)
        signatures = _message("SignatureDefMap")()
        if "signature_def" not in response.metadata or not response.metadata[
            "signature_def"
        ].Unpack(signatures):
            raise UnexpectedResponse("GetModelMetadata answered without a SignatureDefMap")
        # The same document TF Serving's REST /metadata route returns (proto JSON with field
        # names kept and default-valued fields printed), so callers see one shape.
        return {
            "model_spec": _to_dict(response.model_spec),
            "metadata": {"signature_def": _to_dict(signatures)},
        }

    def _run_predict(
        self,
        model: str,
        inputs: Mapping[str, Any],
        version: int | None,
        label: str | None,
        signature_name: str,
    ) -> tuple[dict[str, np.ndarray], int | None]:
        request = _message("PredictRequest")(
            model_spec=_model_spec(model, version, label, signature_name)
        )
        for name, value in inputs.items():
            try:
                request.inputs[name].CopyFrom(to_tensor_proto(value))
            except TensorError as exc:
                raise InvalidInput(f"input {name!r} cannot be made a tensor: {exc}") from exc
        response = self._call("Predict", request)
        try:
            outputs = {name: to_ndarray(proto) for name, proto in response.outputs.items()}
        except TensorError as exc:
            raise UnexpectedResponse(
                f"Predict answered a tensor the client cannot read: {exc}"
            ) from exc
        served = response.model_spec.version.value if response.HasField("model_spec") else None
        return outputs, served or None

    def _call(self, method: str, request: Any) -> Any:
        try:
            return self._methods[method](request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise _translate(exc, self.target, self.timeout) from exc


# (service, method) of the calls the client makes; request and response messages are named
# <method>Request and <method>Response in package tensorflow.serving (TF Serving's protos).
_METHODS = (
    ("PredictionService", "Predict"),
    ("PredictionService", "GetModelMetadata"),
    ("ModelService", "GetModelStatus"),
)


def _message(name: str) -> Any:
    return message_class(f"tensorflow.serving.{name}")


def _enum_name(message: Any, field: str) -> str | None:
    """The name of an enum field's value (None for a number the proto does not define)."""
    enum = message.DESCRIPTOR.fields_by_name[field].enum_type
    value = enum.values_by_number.get(getattr(message, field))
    return value.name if value else None


def _to_dict(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _model_spec(model: str, version: int | None, label: str | None, signature_name: str) -> Any:
    check_model_spec(model, version, label)
    spec = _message("ModelSpec")(name=model, signature_name=signature_name)
    if version is not None:
        spec.version.value = version
    elif label is not None:
        spec.version_label = label
    return spec


def _translate(exc: grpc.RpcError, target: str, timeout: float) -> Exception:
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return ConnectionFailed(f"no answer from {target} within {timeout:g}s ({details})")
    if code is grpc.StatusCode.UNAVAILABLE and any(
        hint in details.lower() for hint in _NO_CONNECTION_HINTS
    ):
        return ConnectionFailed(f"cannot reach {target}: {details}")
    return ServerError(code.name, details)
