"""Issue 27: the stand-in never dies on a request or a model file (hostile suite).

`python -m devtools.server` runs in its own process with TensorFlow's defaults in its
environment, as a developer starts it: requests of the wrong rank reach an MNIST-shaped
convolution (oneDNN's kernel aborts the process on them; the server turns oneDNN off), a version
whose warmup record does not fit fails its load and the process serves on, and a version of 19
digits (TF Serving's int64 range) is served. Loopback only.
"""

from __future__ import annotations

import json
import shutil
import time

import grpc
import numpy as np
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from contracts.rules import INT64_MAX
from tests.server.hostile_support import ServerProcess, export_conv, write_predict_warmup
from tests.server.test_hostile import post, raw_exchange

pytestmark = pytest.mark.hostile


@pytest.fixture(scope="module")
def conv_server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("crash")
    source = root / "source"
    export_conv(source / "good")
    shutil.copytree(source / "good", source / "poisoned")
    # A warmup record without the batch and channel dimensions: [1, 3] into the convolution.
    write_predict_warmup(source / "poisoned", "conv", "images", np.zeros([1, 3], np.float32))
    base = root / "models" / "conv"
    shutil.copytree(source / "good", base / "1")
    server = ServerProcess(root / "server", ["--model_name=conv", f"--model_base_path={base}"])
    try:
        yield server, base, source
    finally:
        server.stop()


def states(server: ServerProcess) -> dict[int, tuple[str, str]]:
    request = b"GET /v1/models/conv HTTP/1.1\r\nHost: t\r\n\r\n"
    status, _headers, body = raw_exchange(server.rest_port, request)
    assert status == 200, body
    return {
        int(v["version"]): (v["state"], v["status"]["error_code"])
        for v in json.loads(body)["model_version_status"]
    }


def wait_for(condition, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs": []}',  # the review's 14-byte request
        b'{"instances": [1]}',
        json.dumps({"instances": [[[0.5] * 28] * 28]}).encode(),  # an image without its channel
        json.dumps({"inputs": [[0.5] * 3]}).encode(),
    ],
    ids=["empty-inputs", "scalar-instance", "no-channel", "rank-2"],
)
def test_a_wrong_rank_over_rest_is_400_and_the_server_lives(conv_server, body: bytes) -> None:
    server, _base, _source = conv_server
    status, _headers, reply = post(server.rest_port, "/v1/models/conv:predict", body)
    assert status == 400, reply
    assert "error" in json.loads(reply)
    assert server.alive()
    good = json.dumps({"instances": [[[[0.5]] * 28] * 28]}).encode()
    assert post(server.rest_port, "/v1/models/conv:predict", good)[0] == 200


def test_a_wrong_rank_over_grpc_is_invalid_argument(conv_server) -> None:
    server, _base, _source = conv_server
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "conv"
    tensor = request.inputs["images"]
    tensor.dtype = types_pb2.DT_FLOAT
    for size in (1, 3):  # the review's 47-byte message
        tensor.tensor_shape.dim.add().size = size
    tensor.float_val.extend([0.1, 0.2, 0.3])
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Predict(request, timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "4-dimensional" in refused.value.details()
    assert server.alive()


def test_a_failing_warmup_fails_that_version_not_the_process(conv_server) -> None:
    server, base, source = conv_server
    staging = base / ".incoming-2"
    shutil.copytree(source / "poisoned", staging)
    staging.rename(base / "2")
    wait_for(lambda: states(server).get(2, ("", ""))[0] == "END", what="version 2's load to end")
    assert states(server)[2][1] == "INVALID_ARGUMENT"
    assert states(server)[1] == ("AVAILABLE", "OK")
    assert server.alive()
    shutil.rmtree(base / "2")


def test_a_version_of_nineteen_digits_is_served(conv_server) -> None:
    server, base, source = conv_server
    staging = base / f".incoming-{INT64_MAX}"
    shutil.copytree(source / "good", staging)
    staging.rename(base / str(INT64_MAX))  # 9223372036854775807: 19 digits
    wait_for(
        lambda: states(server).get(INT64_MAX, ("", ""))[0] == "AVAILABLE",
        what="version 2^63-1 AVAILABLE",
    )
    good = json.dumps({"instances": [[[[0.5]] * 28] * 28]}).encode()
    status, _headers, reply = post(
        server.rest_port, f"/v1/models/conv/versions/{INT64_MAX}:predict", good
    )
    assert status == 200, reply


def test_the_server_refuses_to_run_with_onednn_on(monkeypatch, toy_base) -> None:
    """In a process where TensorFlow was already loaded with oneDNN on, the server would abort
    on the first input of the wrong rank: it refuses to start instead, saying why."""
    from devtools.server import server as server_module
    from devtools.server.errors import ServerConfigError
    from devtools.server.flags import parse_flags
    from model import tf_runtime

    monkeypatch.setattr(tf_runtime, "onednn_enabled", lambda: True)
    monkeypatch.setattr(server_module, "onednn_problem", tf_runtime.onednn_problem)
    options = parse_flags(["--port=-1", "--model_name=toy", f"--model_base_path={toy_base}"])
    with pytest.raises(ServerConfigError, match="TF_ENABLE_ONEDNN_OPTS=0 before TensorFlow"):
        server_module.ModelServer(options).start()
