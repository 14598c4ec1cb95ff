"""GrpcClient against a fake PredictionService/ModelService on a loopback port.

The fake records each request, so the tests check exactly what the client sends (model spec,
signature, tensors) and how TF Serving's status codes come back as client errors.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.client import ConnectionFailed, InvalidInput, ModelClient, ServerError
from serving.client.base import VersionStatus
from serving.client.grpc_client import GrpcClient


class FakeServing(
    prediction_service_pb2_grpc.PredictionServiceServicer,
    model_service_pb2_grpc.ModelServiceServicer,
):
    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.lock = threading.Lock()

    def Predict(self, request, context):
        with self.lock:
            self.requests.append(request)
        if request.model_spec.name == "missing":
            context.abort(
                grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(missing)"
            )
        if request.model_spec.name == "slow":
            time.sleep(1.0)
        images = tf.make_ndarray(request.inputs["images"])
        probabilities = np.full((len(images), 10), 0.05, dtype=np.float32)
        classes = (images.reshape(len(images), -1)[:, 0] % 10).astype(np.int64)
        probabilities[np.arange(len(images)), classes] = 0.55
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = 7
        response.model_spec.signature_name = request.model_spec.signature_name
        response.outputs["probabilities"].CopyFrom(tf.make_tensor_proto(probabilities))
        response.outputs["classes"].CopyFrom(tf.make_tensor_proto(classes))
        return response

    def GetModelStatus(self, request, context):
        self.requests.append(request)
        response = get_model_status_pb2.GetModelStatusResponse()
        state = get_model_status_pb2.ModelVersionStatus.State
        ok = response.model_version_status.add(version=1, state=state.Value("AVAILABLE"))
        ok.status.error_code = 0
        bad = response.model_version_status.add(version=2, state=state.Value("END"))
        bad.status.error_code = 5  # NOT_FOUND
        bad.status.error_message = "Could not find SavedModel .pb or .pbtxt"
        return response

    def GetModelMetadata(self, request, context):
        self.requests.append(request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        signature = signatures.signature_def["serving_default"]
        signature.method_name = "tensorflow/serving/predict"
        signature.inputs["images"].name = "serving_default_images:0"
        signature.inputs["images"].dtype = 1
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = 7
        response.metadata["signature_def"].Pack(signatures)
        return response


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeServing, str]]:
    servicer = FakeServing()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(grace=None)


def test_predict_sends_model_spec_and_images(fake) -> None:
    servicer, target = fake
    images = np.zeros((3, 28, 28, 1), dtype=np.uint8)
    images[:, 0, 0, 0] = [3, 4, 5]
    with GrpcClient(target, timeout=5) as client:
        assert isinstance(client, ModelClient)
        prediction = client.predict("mnist", images, label="canary", signature_name="sig")
    request = servicer.requests[-1]
    assert request.model_spec.name == "mnist"
    assert request.model_spec.version_label == "canary"
    assert request.model_spec.WhichOneof("version_choice") == "version_label"
    assert request.model_spec.signature_name == "sig"
    sent = tf.make_ndarray(request.inputs["images"])
    assert sent.dtype == np.float32
    assert sent.shape == (3, 28, 28, 1)
    assert prediction.classes.tolist() == [3, 4, 5]
    assert prediction.probabilities.shape == (3, 10)
    assert prediction.model_version == 7


def test_predict_with_version_sets_the_int64_wrapper(fake) -> None:
    servicer, target = fake
    with GrpcClient(target, timeout=5) as client:
        client.predict("mnist", np.zeros((1, 28, 28, 1)), version=12)
    spec = servicer.requests[-1].model_spec
    assert spec.WhichOneof("version_choice") == "version"
    assert spec.version.value == 12
    assert spec.signature_name == "serving_default"


def test_predict_raw_returns_named_outputs(fake) -> None:
    _, target = fake
    with GrpcClient(target, timeout=5) as client:
        outputs = client.predict_raw("mnist", {"images": np.full((2, 28, 28, 1), 9.0)})
    assert sorted(outputs) == ["classes", "probabilities"]
    assert outputs["classes"].tolist() == [9, 9]


def test_status_names_states_and_error_codes(fake) -> None:
    servicer, target = fake
    with GrpcClient(target, timeout=5) as client:
        assert client.status("mnist", version=2) == [
            VersionStatus(1, "AVAILABLE", "OK", ""),
            VersionStatus(2, "END", "NOT_FOUND", "Could not find SavedModel .pb or .pbtxt"),
        ]
    assert servicer.requests[-1].model_spec.version.value == 2


def test_metadata_has_the_rest_shape(fake) -> None:
    _, target = fake
    with GrpcClient(target, timeout=5) as client:
        metadata = client.metadata("mnist")
    assert metadata["model_spec"] == {"name": "mnist", "signature_name": "", "version": "7"}
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    assert signature["inputs"]["images"] == {
        "name": "serving_default_images:0",
        "dtype": "DT_FLOAT",
    }


def test_server_status_codes_become_server_errors(fake) -> None:
    _, target = fake
    with GrpcClient(target, timeout=5) as client, pytest.raises(ServerError) as caught:
        client.predict("missing", np.zeros((1, 28, 28, 1)))
    assert caught.value.status == "NOT_FOUND"
    assert caught.value.message == "Servable not found for request: Latest(missing)"


def test_deadline_is_a_connection_failure(fake) -> None:
    _, target = fake
    with (
        GrpcClient(target, timeout=0.2) as client,
        pytest.raises(ConnectionFailed, match=r"within 0\.2s"),
    ):
        client.predict("slow", np.zeros((1, 28, 28, 1)))


def test_nothing_listening_is_a_connection_failure() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (
        GrpcClient(f"127.0.0.1:{port}", timeout=2) as client,
        pytest.raises(ConnectionFailed, match=f"cannot reach 127.0.0.1:{port}"),
    ):
        client.status("mnist")


@pytest.mark.parametrize("target", ["localhost", "localhost:http", ":8500"])
def test_bad_target_is_refused(target: str) -> None:
    with pytest.raises(InvalidInput, match="use HOST:PORT"):
        GrpcClient(target)


def test_version_and_label_together_are_refused_before_sending(fake) -> None:
    servicer, target = fake
    before = len(servicer.requests)
    with GrpcClient(target, timeout=5) as client, pytest.raises(InvalidInput, match="not both"):
        client.predict("mnist", np.zeros((1, 28, 28, 1)), version=1, label="stable")
    assert len(servicer.requests) == before
