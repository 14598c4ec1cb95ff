"""What REST and gRPC share: status and metadata responses, and per-request bookkeeping.

Both front ends build TF Serving's own response protos here (``GetModelStatusResponse``,
``GetModelMetadataResponse``) so the REST JSON is the protobuf JSON TF Serving prints and the gRPC
answer is the same message. `RequestRecord` times a request and feeds the metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from devtools.server.manager import ModelManager
from devtools.server.metrics import Metrics
from devtools.server.servable import Servable

SIGNATURE_DEF_FIELD = "signature_def"


def status_response(
    manager: ModelManager, name: str, version: int | None, label: str | None
) -> get_model_status_pb2.GetModelStatusResponse:
    """GetModelStatus. The `label` is ignored, as TF Serving ignores it (any label, even an
    unknown one, answers with every version's state: get_model_status_impl.cc)."""
    del label
    response = get_model_status_pb2.GetModelStatusResponse()
    for row in manager.status(name, version):
        entry = response.model_version_status.add()
        entry.version = row.version
        entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(row.state)
        entry.status.error_code = _code_number(row.error_code)
        entry.status.error_message = row.error_message
    return response


def _code_number(name: str) -> int:
    import grpc

    return int(grpc.StatusCode[name].value[0])


def metadata_response(servable: Servable) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """SavedModelGetSignatureDef: every signature of the MetaGraphDef, init op included."""
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, definition in servable.meta_graph.signature_def.items():
        signature_map.signature_def[key].CopyFrom(definition)
    response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
    return response


def status_json(response: get_model_status_pb2.GetModelStatusResponse) -> bytes:
    """ToJsonString(GetModelStatusResponse): proto JSON with default values printed."""
    text = json_format.MessageToJson(response, always_print_fields_with_no_presence=True, indent=1)
    return text.encode()


def metadata_json(response: get_model_metadata_pb2.GetModelMetadataResponse) -> bytes:
    """ToJsonString(GetModelMetadataResponse): model_spec plus the unpacked SignatureDefMap."""
    options = {"always_print_fields_with_no_presence": True, "preserving_proto_field_name": True}
    spec = json_format.MessageToJson(response.model_spec, indent=None, **options)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_map)
    signatures = json_format.MessageToJson(signature_map, indent=None, **options)
    return f'{{\n"model_spec":{spec},\n"metadata": {{"signature_def": {signatures}}}\n}}\n'.encode()


@dataclass
class RequestRecord:
    """One request's model, served version, API and entry point, reported when it ends."""

    metrics: Metrics | None
    api: str
    entrypoint: str
    model: str = ""
    version: str = ""
    known_models: Callable[[], Collection[str]] | None = None
    started: float = field(default_factory=time.monotonic)

    def served(self, servable: Servable) -> None:
        self.version = str(servable.version)

    def finish(self, status: str) -> None:
        if self.metrics is None:
            return
        model = self.model
        if not self.version and self.known_models is not None and model not in self.known_models():
            # Names of models that do not exist come from clients; keeping each as a label
            # value would let random names grow the metrics without bound.
            model = "<unknown>"
        self.metrics.record_request(
            model,
            self.version,
            self.api,
            self.entrypoint,
            status,
            time.monotonic() - self.started,
        )
