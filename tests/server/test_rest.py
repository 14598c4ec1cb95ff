"""The stand-in's REST server beyond TF Serving's contract: MNIST, sockets, limits, metrics.

What TF Serving itself does over REST (routes, vectors, error texts) is in tests/contract, which
runs against the stand-in here and against the real TF Serving in the pull-request workflow.
"""

from __future__ import annotations

import http.client
import json

import pytest


@pytest.fixture(scope="module")
def api(shared_server):
    return shared_server._rest.api


def call(api, method: str, path: str, body: object = b""):
    raw = json.dumps(body).encode() if not isinstance(body, bytes) else body
    response = api.handle(method, path, raw)
    return response.status, json.loads(response.body)


def test_mnist_predict_shapes(api, tiny_savedmodel):
    image = [[[0.0]] * 28] * 28
    status, reply = call(api, "POST", "/v1/models/mnist:predict", {"instances": [image, image]})
    assert status == 200
    assert [sorted(p) for p in reply["predictions"]] == [["classes", "probabilities"]] * 2
    assert len(reply["predictions"][0]["probabilities"]) == 10
    assert abs(sum(reply["predictions"][0]["probabilities"]) - 1) < 1e-5
    _, reply = call(api, "POST", "/v1/models/mnist:predict", {"inputs": [image]})
    assert set(reply["outputs"]) == {"classes", "probabilities"}


# --- over a socket -------------------------------------------------------------------------------


def send(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        conn.close()


def test_socket_predict_and_keep_alive(shared_server):
    conn = http.client.HTTPConnection("127.0.0.1", shared_server.rest_port, timeout=30)
    for _ in range(3):  # one connection, several requests
        conn.request("POST", "/v1/models/toy:predict", body=b'{"instances": [1.0]}')
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())) == (200, {"predictions": [2.5]})
        assert response.getheader("Content-Type") == "application/json"
    conn.close()


def test_oversized_body_is_413_and_server_keeps_serving(serve, toy_base):
    server = serve(
        ["--model_name=toy", f"--model_base_path={toy_base}", "--max_request_bytes=1024"]
    )
    status, _, body = send(server, "POST", "/v1/models/toy:predict", b"[" * 4096)
    assert status == 413
    assert "exceeds the server's limit of 1024 bytes" in json.loads(body)["error"]
    status, _, body = send(
        server,
        "POST",
        "/v1/models/toy:predict",
        b"x" * 5000,
        {"Transfer-Encoding": "chunked"},
    )
    assert status == 400  # not valid chunked framing
    status, _, body = send(server, "POST", "/v1/models/toy:predict", b'{"instances": [2.0]}')
    assert (status, json.loads(body)) == (200, {"predictions": [3.0]})


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe\x00garbage",
        b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"instances": [1e400]}',
        b'{"instances": [{"b64": 3}]}',
        b'{"instances": [null]}',
        b'{"inputs": {"x": [1]}, "instances": 3}',
        b'{"instances": ["a"]}',
    ],
)
def test_malformed_bodies_get_4xx_and_server_keeps_serving(shared_server, body):
    status, content_type, reply = send(shared_server, "POST", "/v1/models/toy:predict", body)
    assert 400 <= status < 500
    assert content_type == "application/json"
    assert json.loads(reply)["error"]
    status, _, reply = send(shared_server, "POST", "/v1/models/toy:predict", b'{"instances": [0]}')
    assert (status, json.loads(reply)) == (200, {"predictions": [2.0]})


def test_chunked_body_is_accepted(shared_server):
    conn = http.client.HTTPConnection("127.0.0.1", shared_server.rest_port, timeout=30)
    conn.request(
        "POST",
        "/v1/models/toy:predict",
        body=iter([b'{"instances"', b": [4.0]}"]),
        encode_chunked=True,
    )
    response = conn.getresponse()
    assert (response.status, json.loads(response.read())) == (200, {"predictions": [4.0]})
    conn.close()


def test_unknown_path_is_404(shared_server):
    status, _, _ = send(shared_server, "GET", "/statuspage")
    assert status == 404


def test_prometheus_metrics(shared_server):
    send(shared_server, "POST", "/v1/models/toy:predict", b'{"instances": [1.0]}')
    send(shared_server, "POST", "/v1/models/toy:predict", b'{"instances": ["x"]}')
    status, content_type, body = send(shared_server, "GET", "/monitoring/prometheus/metrics")
    text = body.decode()
    assert status == 200
    assert content_type.startswith("text/plain")
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    labels = 'model_name="toy",version="1",API="predict",entrypoint="REST"'
    ok = f':tensorflow:serving:request_count{{{labels},status="OK"}} '
    bad = f':tensorflow:serving:request_count{{{labels},status="INVALID_ARGUMENT"}} '
    assert ok in text and bad in text
    latency = 'API="predict",entrypoint="REST",model_name="toy",version="1"'  # sorted by client
    assert f":tensorflow:serving:request_latency_count{{{latency}}} " in text
    assert ":tensorflow:serving:batching_session:wrapped_run_count" in text


def test_unknown_model_names_do_not_grow_the_metrics(shared_server):
    for i in range(5):
        send(shared_server, "POST", f"/v1/models/random{i}:predict", b'{"instances": [1]}')
    _, _, body = send(shared_server, "GET", "/monitoring/prometheus/metrics")
    text = body.decode()
    assert "random" not in text
    assert (
        'model_name="<unknown>",version="",API="predict",entrypoint="REST",status="NOT_FOUND"'
        in text
    )
