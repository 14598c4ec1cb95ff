"""TF Serving's gRPC services: PredictionService and ModelService, from tensorflow-serving-api.

Creates servicers over the same `ModelManager` the REST API uses and a `grpc.server` to host them.
Failures abort with TF Serving's canonical codes (NOT_FOUND for an unknown model or version,
INVALID_ARGUMENT for bad input, FAILED_PRECONDITION for an unknown predict signature...).
Responses carry tensors in the typed value fields, as TF Serving does by default.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import text_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from contracts.tfconfig import ConfigError, parse_models_config
from devtools.server import inference
from devtools.server.errors import Internal, InvalidArgument, ServingError
from devtools.server.limits import ByteBudget, RequestLimits
from devtools.server.manager import ModelManager
from devtools.server.metrics import Metrics
from devtools.server.service import SIGNATURE_DEF_FIELD, RequestRecord, metadata_response
from devtools.server.service import status_response as build_status
from devtools.server.tensors import (
    check_request_inputs,
    ndarray_to_tensor_proto,
    tensor_proto_to_ndarray,
)

log = logging.getLogger(__name__)


def _spec(request: Any) -> tuple[str, int | None, str | None]:
    spec = request.model_spec
    choice = spec.WhichOneof("version_choice")
    version = spec.version.value if choice == "version" else None
    label = spec.version_label if choice == "version_label" else None
    return spec.name, version, label


class _Base:
    def __init__(
        self,
        manager: ModelManager,
        metrics: Metrics | None,
        limits: RequestLimits,
        budget: ByteBudget,
    ) -> None:
        self.manager = manager
        self.metrics = metrics
        self.limits = limits
        self.budget = budget

    def _call(
        self,
        api: str,
        request: Any,
        context: grpc.ServicerContext,
        work: Callable[[RequestRecord], Any],
    ) -> Any:
        """Run `work`, translating ServingErrors into the gRPC status and recording metrics."""
        record = RequestRecord(
            self.metrics, api=api, entrypoint="GRPC", known_models=self.manager.model_names
        )
        if request.HasField("model_spec"):
            record.model = request.model_spec.name
        try:
            response = work(record)
        except ServingError as exc:
            record.finish(exc.code_name)
            context.abort(exc.code, exc.message)
        except RecursionError:
            record.finish("INVALID_ARGUMENT")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Request nests too deeply")
        except MemoryError:  # the limits should prevent it; if not, one request pays
            record.finish("RESOURCE_EXHAUSTED")
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "Out of memory serving this request")
        except Exception as exc:  # a bug must cost one request, never the server
            log.exception("gRPC %s failed", api)
            record.finish("INTERNAL")
            context.abort(grpc.StatusCode.INTERNAL, f"Internal error: {exc}")
        record.finish("OK")
        return response


class PredictionServicer(_Base, prediction_service_pb2_grpc.PredictionServiceServicer):
    def Predict(self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext) -> Any:
        def work(record: RequestRecord) -> predict_pb2.PredictResponse:
            name, version, label = _spec(request)
            with self.manager.handle(name, version, label) as servable:
                record.served(servable)
                # Bound memory from the declared shapes before a single value is expanded.
                declared = check_request_inputs(request.inputs, self.limits)
                with self.budget.reserve(declared, "Request inputs"):
                    inputs = {k: tensor_proto_to_ndarray(v, k) for k, v in request.inputs.items()}
                    signature, outputs = servable.predict(
                        request.model_spec.signature_name, inputs, list(request.output_filter)
                    )
                response = predict_pb2.PredictResponse()
                response.model_spec.name = name
                response.model_spec.version.value = servable.version
                response.model_spec.signature_name = signature.name
                for alias, array in outputs.items():
                    response.outputs[alias].CopyFrom(ndarray_to_tensor_proto(array))
                return response

        return self._call("Predict", request, context, work)

    def Classify(
        self, request: classification_pb2.ClassificationRequest, context: grpc.ServicerContext
    ) -> Any:
        def work(record: RequestRecord) -> classification_pb2.ClassificationResponse:
            name, version, label = _spec(request)
            with self.manager.handle(name, version, label) as servable:
                record.served(servable)
                examples = inference.serialized_examples(request.input)
                results = inference.classify(servable, request.model_spec.signature_name, examples)
                response = classification_pb2.ClassificationResponse()
                _fill_spec(response, name, servable.version, request.model_spec.signature_name)
                for row in results:
                    classes = response.result.classifications.add()
                    for class_label, score in row:
                        classes.classes.add(
                            label=class_label.decode("utf-8", "replace"), score=score
                        )
                return response

        return self._call("Classify", request, context, work)

    def Regress(
        self, request: regression_pb2.RegressionRequest, context: grpc.ServicerContext
    ) -> Any:
        def work(record: RequestRecord) -> regression_pb2.RegressionResponse:
            name, version, label = _spec(request)
            with self.manager.handle(name, version, label) as servable:
                record.served(servable)
                examples = inference.serialized_examples(request.input)
                values = inference.regress(servable, request.model_spec.signature_name, examples)
                response = regression_pb2.RegressionResponse()
                _fill_spec(response, name, servable.version, request.model_spec.signature_name)
                for value in values:
                    response.result.regressions.add(value=value)
                return response

        return self._call("Regress", request, context, work)

    def GetModelMetadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: grpc.ServicerContext
    ) -> Any:
        def work(record: RequestRecord) -> get_model_metadata_pb2.GetModelMetadataResponse:
            if not request.HasField("model_spec"):
                raise InvalidArgument("Missing ModelSpec")
            if not request.metadata_field:
                raise InvalidArgument(
                    "GetModelMetadataRequest must specify at least one metadata_field"
                )
            for field in request.metadata_field:
                if field != SIGNATURE_DEF_FIELD:
                    raise InvalidArgument(f"Metadata field {field} is not supported")
            with self.manager.handle(*_spec(request)) as servable:
                record.served(servable)
                return metadata_response(servable)

        return self._call("GetModelMetadata", request, context, work)

    def MultiInference(self, request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "MultiInference is not supported here")


def _fill_spec(response: Any, name: str, version: int, signature_name: str) -> None:
    response.model_spec.name = name
    response.model_spec.version.value = version
    response.model_spec.signature_name = signature_name


class ModelServicer(_Base, model_service_pb2_grpc.ModelServiceServicer):
    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        def work(record: RequestRecord) -> Any:
            if not request.HasField("model_spec"):
                raise InvalidArgument("Missing ModelSpec")
            return build_status(self.manager, *_spec(request))

        return self._call("GetModelStatus", request, context, work)

    def HandleReloadConfigRequest(
        self, request: model_management_pb2.ReloadConfigRequest, context: grpc.ServicerContext
    ) -> Any:
        response = model_management_pb2.ReloadConfigResponse()
        try:
            if request.config.WhichOneof("config") != "model_config_list":
                raise InvalidArgument(
                    "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
                    "ModelConfigList is currently supported"
                )
            try:
                # Adapter: the one models.config parser works on text, so print the proto.
                models = parse_models_config(text_format.MessageToString(request.config))
            except ConfigError as exc:
                raise InvalidArgument(str(exc)) from None
            self.manager.reload(models)
        except ServingError as exc:
            log.error("ReloadConfig failed: %s", exc.message)
            response.status.error_code = exc.code_number
            response.status.error_message = exc.message
            context.set_code(exc.code)
            context.set_details(exc.message)
            return response
        except Exception as exc:
            log.exception("ReloadConfig failed")
            error = Internal(f"ReloadConfig failed: {exc}")
            context.set_code(error.code)
            context.set_details(error.message)
            return response
        return response


@dataclass(frozen=True)
class GrpcOptions:
    """How the gRPC port is served and bounded."""

    address: str
    max_workers: int
    max_message_bytes: int
    max_concurrent_rpcs: int  # beyond it grpc answers RESOURCE_EXHAUSTED at once
    limits: RequestLimits
    budget: ByteBudget


def create_grpc_server(
    manager: ModelManager, metrics: Metrics | None, options: GrpcOptions
) -> tuple[grpc.Server, int]:
    """A started-but-not-yet-serving grpc.Server hosting both services, and its bound port."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=options.max_workers, thread_name_prefix="grpc"),
        options=[
            ("grpc.max_receive_message_length", options.max_message_bytes),
            ("grpc.max_send_message_length", options.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=options.max_concurrent_rpcs,
    )
    args = (manager, metrics, options.limits, options.budget)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(*args), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(*args), server)
    address = options.address
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind gRPC to {address}")
    return server, port
