"""The stand-in's gRPC server beyond TF Serving's contract: MNIST and config reloads.

What TF Serving itself answers over gRPC is in tests/contract (the official stubs as clients),
which runs against the stand-in here and against the real TF Serving in the pull-request workflow.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2


@pytest.fixture(scope="module")
def channel(shared_server):
    with grpc.insecure_channel(f"127.0.0.1:{shared_server.grpc_port}") as channel:
        yield channel


@pytest.fixture(scope="module")
def predictions(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def predict_request(name: str = "toy", **inputs: np.ndarray) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return request


def test_predict_mnist(predictions):
    images = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    response = predictions.Predict(predict_request("mnist", images=images))
    probabilities = tf.make_ndarray(response.outputs["probabilities"])
    assert probabilities.shape == (3, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert tf.make_ndarray(response.outputs["classes"]).tolist() == probabilities.argmax(1).tolist()


def test_handle_reload_config_request(serve, toy_base, tiny_savedmodel):
    mnist_base, _ = tiny_savedmodel
    server = serve(["--model_name=toy", f"--model_base_path={toy_base}"])
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        request = model_management_pb2.ReloadConfigRequest()
        entry = request.config.model_config_list.config.add()
        entry.name, entry.base_path, entry.model_platform = "mnist", str(mnist_base), "tensorflow"
        response = stub.HandleReloadConfigRequest(request)
        assert response.status.error_code == 0
        assert models_available(stub, "mnist") and not models_available(stub, "toy")
        bad = model_management_pb2.ReloadConfigRequest()
        bad.config.CopyFrom(request.config)
        bad.config.model_config_list.config[0].version_labels["canary"] = 7
        with pytest.raises(grpc.RpcError) as info:
            stub.HandleReloadConfigRequest(bad)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        custom = model_management_pb2.ReloadConfigRequest(
            config=model_server_config_pb2.ModelServerConfig()
        )
        with pytest.raises(grpc.RpcError) as info:
            stub.HandleReloadConfigRequest(custom)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def models_available(stub, name: str) -> bool:
    import time

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = {s.state for s in stub.GetModelStatus(request).model_version_status}
        if states == {get_model_status_pb2.ModelVersionStatus.AVAILABLE}:
            return True
        if states == {get_model_status_pb2.ModelVersionStatus.END}:
            return False
        time.sleep(0.05)
    raise AssertionError(f"{name} did not settle")
