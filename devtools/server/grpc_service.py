"""TF Serving's gRPC services: PredictionService and ModelService, from tensorflow-serving-api.

Creates servicers over the same `ModelManager` the REST API uses and a `GrpcServer` to host them.
Failures abort with TF Serving's canonical codes (NOT_FOUND for an unknown model or version,
INVALID_ARGUMENT for bad input, FAILED_PRECONDITION for an unknown predict signature...).
Responses carry tensors in the typed value fields, as TF Serving does by default.

`GrpcServer` runs ``grpc.aio`` on its own event-loop thread. A call waits for its request
message there, costing no thread, for at most ``request_timeout_seconds`` (DEADLINE_EXCEEDED
after): only then does it take one of ``max_workers`` worker threads, which run the servicers'
methods (plain synchronous code, as with ``grpc.server``). With ``grpc.server`` a worker is taken
when the call starts (``grpc/_server.py``: the request is awaited inside the pooled task), so
calls that never send their request would hold every worker. The methods are registered as
stream-unary handlers, which is what lets the loop wait for the message with a deadline; on the
wire a unary call and a one-message stream are the same, so clients see TF Serving's API.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import text_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from contracts.tfconfig import ConfigError, parse_models_config
from devtools.server import inference
from devtools.server.errors import Internal, InvalidArgument, ServingError
from devtools.server.limits import ByteBudget, RequestLimits, account, estimate
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
            with account(self.budget, "Request") as acct:
                # The message and what Python makes of it; the model's share comes when it runs.
                acct.estimate(2 * request.ByteSize())
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
                estimate(declared)
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

    METHODS = {
        "Predict": predict_pb2.PredictRequest,
        "Classify": classification_pb2.ClassificationRequest,
        "Regress": regression_pb2.RegressionRequest,
        "GetModelMetadata": get_model_metadata_pb2.GetModelMetadataRequest,
        "MultiInference": inference_pb2.MultiInferenceRequest,
    }


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

    METHODS = {
        "GetModelStatus": get_model_status_pb2.GetModelStatusRequest,
        "HandleReloadConfigRequest": model_management_pb2.ReloadConfigRequest,
    }


@dataclass(frozen=True)
class GrpcOptions:
    """How the gRPC port is served and bounded."""

    address: str
    max_workers: int
    max_message_bytes: int
    max_concurrent_rpcs: int  # beyond it grpc answers RESOURCE_EXHAUSTED at once
    limits: RequestLimits
    budget: ByteBudget
    request_timeout_seconds: float = 30.0  # to send the request message; then DEADLINE_EXCEEDED


class _Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


class _WorkerContext:
    """The part of ``grpc.ServicerContext`` the servicers use, for a method run on a worker
    thread: `abort` raises, codes set are applied by the event loop when the method returns."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise _Aborted(code, details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details


class GrpcServer:
    """Both services on ``grpc.aio``, on an event loop of its own (see the module docstring)."""

    def __init__(self, manager: ModelManager, metrics: Metrics | None, options: GrpcOptions):
        self.options = options
        args = (manager, metrics, options.limits, options.budget)
        self._services = {
            "tensorflow.serving.PredictionService": PredictionServicer(*args),
            "tensorflow.serving.ModelService": ModelServicer(*args),
        }
        self._workers = futures.ThreadPoolExecutor(
            max_workers=options.max_workers, thread_name_prefix="grpc"
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="grpc", daemon=True)
        self._server: grpc.aio.Server | None = None
        self.port = 0

    def start(self) -> int:
        """Bind and serve; returns the bound port (OSError when the address cannot be bound)."""
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result()
        return self.port

    async def _start(self) -> int:
        o = self.options
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", o.max_message_bytes),
                ("grpc.max_send_message_length", o.max_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=o.max_concurrent_rpcs,
        )
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    service,
                    {
                        name: self._handler(getattr(servicer, name), request_type)
                        for name, request_type in servicer.METHODS.items()
                    },
                )
                for service, servicer in self._services.items()
            ]
        )
        port = server.add_insecure_port(o.address)
        if port == 0:
            raise OSError(f"could not bind gRPC to {o.address}")
        await server.start()
        self._server = server
        return port

    def _handler(self, method: Callable[[Any, Any], Any], request_type: Any) -> Any:
        timeout = self.options.request_timeout_seconds

        async def handle(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
            try:
                request = await asyncio.wait_for(anext(aiter(requests)), timeout)
            except TimeoutError:
                await context.abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"Request message not received within {timeout:g} s "
                    "(--grpc_request_timeout_in_ms)",
                )
            except StopAsyncIteration:
                await context.abort(
                    grpc.StatusCode.UNIMPLEMENTED, "The call requires exactly one request message."
                )
            worker = _WorkerContext()
            try:
                response = await self._loop.run_in_executor(self._workers, method, request, worker)
            except _Aborted as exc:
                await context.abort(exc.code, exc.details)
            if worker.code is not None:
                context.set_code(worker.code)
                context.set_details(worker.details)
            return response

        return grpc.stream_unary_rpc_method_handler(
            handle,
            request_deserializer=request_type.FromString,
            response_serializer=lambda response: response.SerializeToString(),
        )

    def stop(self, grace_seconds: float) -> None:
        """Stop accepting, let calls in progress finish for up to `grace_seconds`, then return."""
        if self._server is not None:
            stopping = self._server.stop(grace_seconds)
            asyncio.run_coroutine_threadsafe(stopping, self._loop).result()
            self._server = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._workers.shutdown(wait=True)


def create_grpc_server(
    manager: ModelManager, metrics: Metrics | None, options: GrpcOptions
) -> GrpcServer:
    """A `GrpcServer` hosting both services; `start()` binds it and returns the port."""
    return GrpcServer(manager, metrics, options)
