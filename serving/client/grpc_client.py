"""gRPC client for TF Serving's ``PredictionService`` and ``ModelService``.

Creates `GrpcClient` over the official stubs of ``tensorflow-serving-api``
(``prediction_service_pb2_grpc``, ``model_service_pb2_grpc``): Predict, GetModelMetadata and
GetModelStatus, with the model spec (name + version or version label + signature) TF Serving
expects. Tensors are converted with TensorFlow's own ``make_tensor_proto``/``make_ndarray``
(importing the stubs imports TensorFlow anyway, because the protos live in it).

One channel per client, shared by every thread that uses it (gRPC multiplexes concurrent calls
over its HTTP/2 connection); pass ``channel=`` to reuse or configure your own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

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
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

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
        request = get_model_status_pb2.GetModelStatusRequest(
            model_spec=_model_spec(model, version, label, "")
        )
        response = self._call(self._models.GetModelStatus, request)
        state_names = get_model_status_pb2.ModelVersionStatus.State
        result = []
        for entry in response.model_version_status:
            code_enum = entry.status.DESCRIPTOR.fields_by_name["error_code"].enum_type
            code = code_enum.values_by_number.get(entry.status.error_code)
            result.append(
                VersionStatus(
                    version=entry.version,
                    state=state_names.Name(entry.state),
                    error_code=code.name if code else str(entry.status.error_code),
                    error_message=entry.status.error_message,
                )
            )
        return result

    def metadata(
        self, model: str, *, version: int | None = None, label: str | None = None
    ) -> dict[str, Any]:
        """``GetModelMetadata`` for ``signature_def``, as the REST API's JSON shape."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=_model_spec(model, version, label, ""), metadata_field=["signature_def"]
        )
        response = self._call(self._predict.GetModelMetadata, request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
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
        request = predict_pb2.PredictRequest(
            model_spec=_model_spec(model, version, label, signature_name)
        )
        for name, value in inputs.items():
            try:
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"input {name!r} cannot be made a tensor: {exc}") from exc
        response = self._call(self._predict.Predict, request)
        outputs = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
        served = response.model_spec.version.value if response.HasField("model_spec") else None
        return outputs, served or None

    def _call(self, method: Callable[..., Any], request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise _translate(exc, self.target, self.timeout) from exc


def _to_dict(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _model_spec(
    model: str, version: int | None, label: str | None, signature_name: str
) -> model_pb2.ModelSpec:
    check_model_spec(model, version, label)
    spec = model_pb2.ModelSpec(name=model, signature_name=signature_name)
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
