"""Hostile and faulty input against the local server: each case an attack run once found.

Every test talks to 127.0.0.1 only, sends a bounded number of requests and finishes in seconds.
The server must answer with TF Serving's status and a JSON ``{"error": ...}`` body (REST) or an
INVALID_ARGUMENT / RESOURCE_EXHAUSTED code (gRPC), bound memory before allocating, and keep
serving afterwards. docs/hostile-input.md states these guarantees.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from devtools.server.errors import ServerConfigError
from devtools.server.flags import parse_flags

pytestmark = pytest.mark.hostile


def raw_exchange(port: int, data: bytes, timeout: float = 10.0) -> tuple[int, dict, bytes]:
    """Send raw bytes, read one response: (status, lower-cased headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_response(sock)


def read_response(sock: socket.socket) -> tuple[int, dict, bytes]:
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed without a response: {received!r}")
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def post(port: int, path: str, body: bytes) -> tuple[int, dict, bytes]:
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    return raw_exchange(port, head + body)


def assert_json_error(status: int, headers: dict, body: bytes, want_status: int) -> str:
    assert status == want_status, body
    assert headers["content-type"] == "application/json"
    return json.loads(body)["error"]


def still_serves(server) -> None:
    status, _, body = post(server.rest_port, "/v1/models/toy:predict", b'{"instances": [0]}')
    assert (status, json.loads(body)) == (200, {"predictions": [2.0]})


# --- REST: malformed requests get TF Serving's status and a JSON body ---------------------------


@pytest.mark.parametrize("depth", [70, 300, 900])
def test_deeply_nested_lists_are_400_not_500(shared_server, depth):
    body = b'{"instances": ' + b"[" * depth + b"1" + b"]" * depth + b"}"
    error = assert_json_error(
        *post(shared_server.rest_port, "/v1/models/toy:predict", body), want_status=400
    )
    assert "levels deep" in error
    still_serves(shared_server)


def test_lone_surrogate_in_signature_name_gets_rapidjsons_error(shared_server):
    body = b'{"signature_name": "\\ud800", "instances": [1.0]}'
    error = assert_json_error(
        *post(shared_server.rest_port, "/v1/models/toy:predict", body), want_status=400
    )
    assert error == "JSON Parse error: The surrogate pair in string is invalid. at offset: 20"
    # A proper pair is one character and goes on to the signature lookup.
    body = b'{"signature_name": "\\ud83d\\ude00", "instances": [1.0]}'
    error = assert_json_error(
        *post(shared_server.rest_port, "/v1/models/toy:predict", body), want_status=400
    )
    assert error == 'Serving signature name: "\U0001f600" not found in signature def'


@pytest.mark.parametrize(
    ("request_bytes", "status", "message"),
    [
        (  # "²".isdigit() is True in Python; int("²") is not
            b"POST /v1/models/toy:predict HTTP/1.1\r\nContent-Length: \xc2\xb2\r\n\r\n",
            400,
            "Invalid Content-Length header",
        ),
        (
            b"POST /v1/models/toy:predict HTTP/1.1\r\nContent-Length: 3\r\n"
            b"Content-Length: 4\r\n\r\nabcd",
            400,
            "Conflicting Content-Length headers",
        ),
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414, "Request-URI Too Long"),
        (b"GET /v1/models/toy HTTP/1.1\r\n" + b"X: y\r\n" * 120 + b"\r\n", 431, "Too many"),
        (b"GET /v1/models/toy HTTP/1.1\r\nX: " + b"y" * 70000 + b"\r\n\r\n", 431, "Line too"),
        (b"FOO /v1/models/toy HTTP/1.1\r\n\r\n", 501, "Unsupported method ('FOO')"),
        (b"GET /v1/models/toy HTTP/9.9\r\n\r\n", 505, "Invalid HTTP version"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 garbage\r\n\r\n", 400, "Bad HTTP/0.9"),
    ],
)
def test_http_layer_errors_are_json(shared_server, request_bytes, status, message):
    error = assert_json_error(
        *raw_exchange(shared_server.rest_port, request_bytes), want_status=status
    )
    assert message in error
    still_serves(shared_server)


# --- REST: slow clients, many connections, many large bodies ------------------------------------


@pytest.fixture(scope="module")
def guarded_server(serve, toy_base: Path):
    """Small limits so each guard trips with a handful of bytes and connections."""
    return serve(
        [
            "--model_name=toy",
            f"--model_base_path={toy_base}",
            "--rest_api_header_timeout_in_ms=600",
            "--max_request_bytes=1000",
            "--max_request_tensor_bytes=1000",
            # Requests hold 1/16 of their estimated memory (costs.py): a 1000-byte JSON body
            # with its parse, model call and answer needs about 2,100 bytes of it.
            "--max_inflight_request_bytes=4000",
        ]
    )


def test_headers_have_a_total_deadline(guarded_server):
    with socket.create_connection(("127.0.0.1", guarded_server.rest_port), timeout=10) as sock:
        start = time.monotonic()
        sock.sendall(b"GET /v1/models/toy HTTP/1.1\r\n")
        with pytest.raises(OSError):  # dribble a header line every 0.2 s (slowloris)
            for _ in range(50):
                time.sleep(0.2)
                sock.sendall(b"X-Slow: 1\r\n")
        status, headers, body = read_response(sock)
    elapsed = time.monotonic() - start
    error = assert_json_error(status, headers, body, want_status=408)
    assert "--rest_api_header_timeout_in_ms" in error
    assert elapsed < 3.0  # the deadline is 0.6 s in total, not per line


def test_idle_keep_alive_connection_is_not_cut_by_the_header_deadline(guarded_server):
    with socket.create_connection(("127.0.0.1", guarded_server.rest_port), timeout=10) as sock:
        for _ in range(2):
            sock.sendall(b"GET /v1/models/toy HTTP/1.1\r\nHost: t\r\n\r\n")
            status, _, body = read_response(sock)
            assert status == 200, body
            time.sleep(1.0)  # idle longer than the header deadline between requests: allowed


def test_a_new_connection_must_send_its_request_within_the_deadline(guarded_server):
    # Idle new sockets would otherwise hold the connection cap for the 60 s idle timeout.
    with socket.create_connection(("127.0.0.1", guarded_server.rest_port), timeout=10) as sock:
        start = time.monotonic()
        status, headers, body = read_response(sock)
        assert time.monotonic() - start < 3.0
    assert_json_error(status, headers, body, want_status=408)


@pytest.fixture(scope="module")
def capped_server(serve, toy_base: Path):
    """Three connections at most; a header deadline long enough to hold them in the test."""
    return serve(
        [
            "--model_name=toy",
            f"--model_base_path={toy_base}",
            "--rest_api_max_connections=3",
            "--rest_api_header_timeout_in_ms=10000",
        ]
    )


def test_connections_over_the_cap_get_503_json(capped_server):
    port = capped_server.rest_port
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
    try:
        for sock in held:  # each one mid-request: its request line started, headers pending
            sock.sendall(b"GET /v1/models/toy HTTP/1.1\r\n")
        time.sleep(0.3)  # let the server accept and read all three
        error = assert_json_error(
            *raw_exchange(port, b"GET /v1/models/toy HTTP/1.1\r\n\r\n"), want_status=503
        )
        assert "--rest_api_max_connections=3" in error
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while True:  # the slots free up once the server sees the closes
        status, _, _ = raw_exchange(port, b"GET /v1/models/toy HTTP/1.1\r\n\r\n")
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status == 200


def test_bodies_in_flight_share_a_byte_budget(guarded_server):
    port = guarded_server.rest_port
    budget = guarded_server._rest.budget
    body = json.dumps({"instances": [1.0] * 150}).encode().ljust(1000)
    head = f"POST /v1/models/toy:predict HTTP/1.1\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    others = 2500
    budget.take(others, "held by the test")  # as if other requests were in flight
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(head + body[:900])  # holds the 900 bytes it sent, not the 1000 declared
            deadline = time.monotonic() + 5
            while budget.used < 3400 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert budget.used == 3400
            error = assert_json_error(*raw_exchange(port, head + body), want_status=429)
            assert "--max_inflight_request_bytes" in error
            budget.give(others)
            others = 0
            slow.sendall(body[900:])
            status, _, reply = read_response(slow)
            assert status == 200, reply
    finally:
        budget.give(others)
    wait_until_budget_is_free(budget)
    status, _, reply = raw_exchange(port, head + body)
    assert status == 200, reply
    wait_until_budget_is_free(budget)


def wait_until_budget_is_free(budget) -> None:
    deadline = time.monotonic() + 5  # a body's bytes are released just after its reply is sent
    while budget.used and time.monotonic() < deadline:
        time.sleep(0.02)
    assert budget.used == 0


def test_grpc_inputs_draw_on_the_same_budget(guarded_server):
    budget = guarded_server._rest.budget
    wait_until_budget_is_free(budget)
    budget.take(3995, "held by the test")  # as if REST bodies of 3995 bytes were in flight
    try:
        error = grpc_predict(guarded_server, shape(2))  # 8 bytes once decoded
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max_inflight_request_bytes" in error.details()
    finally:
        budget.give(3995)
    still_serves(guarded_server)


def test_grpc_calls_over_the_cap_are_resource_exhausted(serve, toy_base: Path, tmp_path: Path):
    batching = tmp_path / "batching.config"  # a 1.5 s batch timeout keeps the first call running
    batching.write_text(
        "max_batch_size { value: 8 }\nbatch_timeout_micros { value: 1500000 }\n"
        "max_enqueued_batches { value: 10 }\nnum_batch_threads { value: 1 }\n"
    )
    server = serve(
        [
            "--model_name=toy",
            f"--model_base_path={toy_base}",
            "--enable_batching",
            f"--batching_parameters_file={batching}",
            "--grpc_max_concurrent_rpcs=1",
        ]
    )
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "toy"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        first = stub.Predict.future(request, timeout=30)
        time.sleep(0.5)
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(request, timeout=30)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert list(first.result().outputs["y"].float_val) == [2.5]


# --- gRPC: bad tensors are INVALID_ARGUMENT / RESOURCE_EXHAUSTED, never INTERNAL ----------------


def grpc_predict(server, mutate) -> grpc.RpcError:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "toy"
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    mutate(request.inputs["x"])
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(request, timeout=30)
    return info.value


def shape(*dims: int):
    def mutate(tensor) -> None:
        for size in dims:
            tensor.tensor_shape.dim.add().size = size
        tensor.float_val.append(1.0)

    return mutate


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


def test_scalar_broadcast_is_refused_before_expansion(guarded_server, shared_server):
    before = rss_bytes()
    # 49 bytes on the wire, 3.4 GB once expanded: the batching server's batch limit refuses it...
    error = grpc_predict(shared_server, shape(1100000, 28, 28, 1))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "Task size 1100000 is larger than maximum input batch size 32"
    # ...and without batching, the per-request tensor limit does.
    error = grpc_predict(guarded_server, shape(1100000, 28, 28, 1))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--max_request_tensor_bytes" in error.details()
    assert rss_bytes() - before < 200 * 1024 * 1024


def typed(dtype: int):
    def mutate(tensor) -> None:
        tensor.dtype = dtype
        tensor.tensor_shape.dim.add().size = 1

    return mutate


def content(size: int):
    def mutate(tensor) -> None:
        tensor.tensor_shape.dim.add().size = 3
        tensor.tensor_content = b"\0" * size

    return mutate


@pytest.mark.parametrize(
    ("mutate", "code", "message"),
    [
        (typed(9999), "INVALID_ARGUMENT", "tensor parsing error: x: dtype 9999 is not"),
        (typed(0), "INVALID_ARGUMENT", "tensor parsing error: x: dtype 0 is not"),
        (typed(101), "INVALID_ARGUMENT", "tensor parsing error: x: dtype 101 is not"),
        (typed(types_pb2.DT_COMPLEX64), "UNIMPLEMENTED", "complex64 are not supported"),
        (content(5), "INVALID_ARGUMENT", "tensor_content holds 5 bytes but shape [3]"),
        (content(13), "INVALID_ARGUMENT", "tensor_content holds 13 bytes but shape [3]"),
        (shape(-1), "INVALID_ARGUMENT", "has a negative dimension"),
        (shape(2**62, 2**62), "INVALID_ARGUMENT", "has more than 2**63 - 1 elements"),
        (shape(*[1] * 65), "INVALID_ARGUMENT", "shape has 65 dimensions; at most 64"),
        (shape(2**40), "RESOURCE_EXHAUSTED", "over this server's limit of 1000 bytes"),
    ],
)
def test_bad_tensor_protos_never_give_internal(guarded_server, mutate, code, message):
    error = grpc_predict(guarded_server, mutate)
    assert error.code().name == code
    assert message in error.details()
    still_serves(guarded_server)


# --- model management ---------------------------------------------------------------------------


def test_reload_with_a_relative_base_path_is_refused(guarded_server):
    request = model_management_pb2.ReloadConfigRequest()
    config = request.config.model_config_list.config.add()
    config.name, config.base_path, config.model_platform = "toy", "models/toy", "tensorflow"
    with grpc.insecure_channel(f"127.0.0.1:{guarded_server.grpc_port}") as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.HandleReloadConfigRequest(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == (
        "Expected model toy to have an absolute path or URI; got base_path()=models/toy"
    )
    still_serves(guarded_server)


def test_truncated_variables_load_as_data_loss(toy_source: Path, tmp_path: Path):
    from contracts.tfconfig import ModelConfig
    from devtools.server.errors import Unknown
    from devtools.server.manager import ManagerOptions, ModelManager

    base = tmp_path / "toy"
    shutil.copytree(toy_source / "v1", base / "1")
    data = next((base / "1" / "variables").glob("variables.data-*"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    manager = ModelManager(ManagerOptions(file_system_poll_wait_seconds=0))
    try:
        with pytest.raises(Unknown, match="DATA_LOSS"):
            manager.start([ModelConfig(name="toy", base_path=str(base))])
        (status,) = manager.status("toy", None)
        assert (status.state, status.error_code) == ("END", "DATA_LOSS")
        assert re.search(r"variables are truncated or corrupt", status.error_message)
    finally:
        manager.stop()


def test_a_broadcast_in_a_warmup_record_fails_the_load_not_the_server(
    toy_source: Path, tmp_path: Path
):
    from tensorflow_serving.apis import prediction_log_pb2

    from contracts.tfconfig import ModelConfig
    from devtools.server.errors import Unknown
    from devtools.server.manager import ManagerOptions, ModelManager

    base = tmp_path / "toy"
    shutil.copytree(toy_source / "v1", base / "1")
    log = prediction_log_pb2.PredictionLog()
    request = log.predict_log.request
    request.model_spec.name = "toy"
    shape(1100000, 28, 28, 1)(request.inputs["x"])
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    target = base / "1" / "assets.extra" / "tf_serving_warmup_requests"
    target.parent.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(target)) as writer:
        writer.write(log.SerializeToString())
    manager = ModelManager(ManagerOptions(file_system_poll_wait_seconds=0))
    try:
        with pytest.raises(Unknown, match="RESOURCE_EXHAUSTED"):
            manager.start([ModelConfig(name="toy", base_path=str(base))])
        (status,) = manager.status("toy", None)
        assert (status.state, status.error_code) == ("END", "RESOURCE_EXHAUSTED")
    finally:
        manager.stop()


# --- flags --------------------------------------------------------------------------------------


def test_limit_flags_are_validated_together():
    base = ["--model_name=toy", "--model_base_path=/m"]
    with pytest.raises(ServerConfigError, match="could never be served"):
        parse_flags([*base, "--max_inflight_request_bytes=1000"])
    with pytest.raises(ServerConfigError, match="--rest_api_max_connections=0: must be positive"):
        parse_flags([*base, "--rest_api_max_connections=0"])
    options = parse_flags([*base, "--grpc_max_concurrent_rpcs=8"])
    assert (options.grpc_max_concurrent_rpcs, options.rest_api_header_timeout_in_ms) == (8, 10000)
