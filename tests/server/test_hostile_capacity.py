"""Issue 27: no client can hold the stand-in's shared capacity (hostile suite, loopback only).

Each finding of the review has its own request pattern here: bodies that trickle in after
declaring their size (the byte budget), gRPC calls that never send their request (the worker
pool), idle keep-alive connections (the connection cap), and client strings echoed in errors.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import grpc
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from devtools.server.errors import MAX_MESSAGE_CHARS
from tests.server.test_hostile import assert_json_error, post, raw_exchange, read_response

pytestmark = pytest.mark.hostile

PREDICT = "/v1/models/toy:predict"


@pytest.fixture(scope="module")
def tight_server(serve, toy_base: Path):
    """Small limits: a 4 KB budget, three connections, two gRPC workers, 1 s deadlines."""
    return serve(
        [
            "--model_name=toy",
            f"--model_base_path={toy_base}",
            "--max_request_bytes=1000",
            "--max_request_tensor_bytes=1000",
            "--max_inflight_request_bytes=4000",
            "--rest_api_max_connections=3",
            "--rest_api_body_timeout_in_ms=1000",
            "--grpc_max_threads=2",
            "--grpc_request_timeout_in_ms=1000",
        ]
    )


def grpc_predict_ok(server) -> float:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "toy"
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].tensor_shape.dim.add().size = 1
    request.inputs["x"].float_val.append(2.0)
    started = time.monotonic()
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        answer = stub.Predict(request, timeout=10)
    assert list(answer.outputs["y"].float_val) == [3.0]
    return time.monotonic() - started


def test_trickling_bodies_cannot_hold_the_budget(tight_server) -> None:
    """The review's case scaled down: two sockets declare bodies as large as allowed and send a
    byte at a time. They hold only the bytes they sent, REST and gRPC predictions go on, and
    after the body deadline they get 408 and give everything back."""
    port, budget = tight_server.rest_port, tight_server._rest.budget
    head = f"POST {PREDICT} HTTP/1.1\r\nContent-Length: 1000\r\n\r\n".encode()
    slow = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
    try:
        for sock in slow:
            sock.sendall(head + b'{"instances": [')
        for _ in range(3):
            time.sleep(0.1)
            for sock in slow:
                sock.sendall(b"1,")
        assert budget.used <= 2 * 25  # the bytes they sent, not the 2,000 they declared
        status, _, reply = post(port, PREDICT, b'{"instances": [1.0]}')
        assert status == 200, reply
        assert grpc_predict_ok(tight_server) < 5
        replies = [read_response(sock) for sock in slow]
    finally:
        for sock in slow:
            sock.close()
    for reply in replies:
        error = assert_json_error(*reply, want_status=408)
        assert "--rest_api_body_timeout_in_ms" in error
    deadline = time.monotonic() + 5
    while budget.used and time.monotonic() < deadline:
        time.sleep(0.02)
    assert budget.used == 0


def test_grpc_calls_that_never_send_their_request_hold_no_worker(tight_server) -> None:
    """Four calls (twice the workers) open their stream and send nothing: a real call is still
    answered at once, and the silent ones end with DEADLINE_EXCEEDED after the deadline."""
    release = threading.Event()

    def nothing():
        release.wait(30)
        return
        yield  # a generator that sends no message

    with grpc.insecure_channel(f"127.0.0.1:{tight_server.grpc_port}") as channel:
        silent_call = channel.stream_unary(
            "/tensorflow.serving.PredictionService/Predict",
            request_serializer=predict_pb2.PredictRequest.SerializeToString,
            response_deserializer=predict_pb2.PredictResponse.FromString,
        )
        silent = [silent_call.future(nothing(), timeout=30) for _ in range(4)]
        time.sleep(0.3)
        assert grpc_predict_ok(tight_server) < 1.0
        started = time.monotonic()
        codes = []
        for future in silent:
            with pytest.raises(grpc.RpcError) as ended:
                future.result(timeout=10)
            codes.append(ended.value.code())
            assert "--grpc_request_timeout_in_ms" in ended.value.details()
        release.set()
    assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * 4
    assert time.monotonic() - started < 3


def test_idle_keep_alive_connections_cannot_hold_the_connection_cap(tight_server) -> None:
    """Three keep-alive connections (the cap) each made a request and now sit idle, as the
    review's 256 sockets sending a GET every 50 s: a new client is still served, and the
    connection idle longest is closed to make room."""
    port = tight_server.rest_port
    request = b"GET /v1/models/toy HTTP/1.1\r\nHost: t\r\n\r\n"
    idle = []
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(request)
        assert read_response(sock)[0] == 200
        idle.append(sock)
        time.sleep(0.05)
    try:
        status, _, reply = raw_exchange(port, request)
        assert status == 200, reply
        assert idle[0].recv(1) == b""  # the oldest idle connection was closed
        for sock in idle[1:]:  # the others still work
            sock.sendall(request)
            assert read_response(sock)[0] == 200
    finally:
        for sock in idle:
            sock.close()


def test_echoed_client_strings_are_truncated(tight_server, shared_server) -> None:
    name = "s" * 1_000_000  # the review sent 50 MB; the body limit of shared_server is 64 MiB
    body = json.dumps({"signature_name": name, "instances": [1.0]}).encode()
    status, _, reply = post(shared_server.rest_port, PREDICT, body)
    error = assert_json_error(status, {"content-type": "application/json"}, reply, 400)
    assert len(error) < MAX_MESSAGE_CHARS + 100
    assert error.endswith("more characters)")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "toy"
    request.model_spec.signature_name = name
    with grpc.insecure_channel(f"127.0.0.1:{shared_server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Predict(request, timeout=30)
    assert len(refused.value.details()) < MAX_MESSAGE_CHARS + 100
