"""REST API against TF Serving's handler tests (http_rest_api_handler_test.cc), plus sockets."""

from __future__ import annotations

import base64
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


@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        ("GET", "/v1/foo", "Malformed request"),
        ("POST", "/v1/foo", "Malformed request"),
        ("GET", "/v1/models", "Missing model name"),
        ("GET", "/v1/models/debug/model_name", "Malformed request"),
        ("POST", "/v1/models", "Malformed request"),
        ("GET", "/v1/models/foo:predict", "Malformed request"),
        ("GET", "/v1/models/foo/version/50:predict", "Malformed request"),
        ("POST", "/v1/models/foo/version/50:regress", "Malformed request"),
        ("POST", "/v1/models/foo/versions/HELLO:regress", "Malformed request"),
        ("POST", f"/v1/models/foo/versions/{2**64 - 1}:regress", "Failed to convert version"),
        ("POST", "/v1/models/foo/metadata", "Malformed request"),
        ("POST", "/v1/models/foo/label/some_label:regress", "Malformed request"),
        ("POST", "/v1/models/foo/versions/50/labels/some_label:regress", "Malformed request"),
        ("POST", "/v1/models/foo/versions/some_label:regress", "Malformed request"),
        ("DELETE", "/v1/models/toy", "Malformed request"),
    ],
)
def test_unsupported_api_calls(api, method, path, message):
    status, body = call(api, method, path)
    assert status == 400
    assert message in body["error"]


@pytest.mark.parametrize(
    "path",
    ["/v1/models/foo:predict", "/v1/models/foo/versions/50:predict", "/v1/models/toy99:predict"],
)
def test_unknown_model_or_version_is_404(api, path):
    status, body = call(api, "POST", path, {"instances": [1]})
    assert status == 404
    assert body["error"].startswith("Servable not found for request: ")


def test_unknown_version_names_the_request(api):
    status, body = call(api, "POST", "/v1/models/toy/versions/7:predict", {"instances": [1.0]})
    assert (status, body["error"]) == (404, "Servable not found for request: Specific(toy, 7)")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "JSON Parse error: The document is empty"),
        (b"instances = [1, 2]", "JSON Parse error: Invalid value"),
        (
            b'{"instances": [1, 2}',
            "JSON Parse error: Missing a comma or ']' after an array element",
        ),
        (b'{"instances": ["x", "y"]}', "not of expected type: float"),
        (b'{"signature_name": 100}', "'signature_name' key must be a string value."),
        (b"[1, 2]", "Is not object"),
        (b'{"instances": [1.0], "inputs": [1.0]}', "expecting only one of 'inputs' or 'instances'"),
        (b'{"instances": 1.0}', "Expecting 'instances' to be an list/array"),
        (b'{"instances": []}', "No values in 'instances' array"),
        (b'{"foo": 1}', "Missing 'inputs' or 'instances' key"),
        (b'{"instances": [[1.0], 2.0]}', "Failed to process element: 1 of 'instances' list."),
        (b'{"signature_name": "nope", "instances": [1.0]}', 'Serving signature name: "nope"'),
    ],
)
def test_predict_request_errors(api, body, message):
    status, reply = call(api, "POST", "/v1/models/toy:predict", body)
    assert status == 400
    assert message in reply["error"]


def test_type_error_message_is_tf_servings(api):
    _, reply = call(api, "POST", "/v1/models/toy:predict", {"instances": ["x"]})
    assert reply["error"] == (
        "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
        'JSON Value: "x" Type: String is not of expected type: float'
    )


def test_nonexistent_label_is_invalid_argument(api):
    status, reply = call(api, "POST", "/v1/models/toy/labels/nope:predict", {"instances": ["x"]})
    assert (status, reply["error"]) == (400, "Unrecognized servable version label: nope")


def test_predict_row_and_columnar(api):
    assert call(api, "POST", "/v1/models/toy:predict", {"instances": [1.0, 2.0]}) == (
        200,
        {"predictions": [2.5, 3.0]},
    )
    assert call(api, "POST", "/v1/models/toy/versions/1:predict", {"instances": [1.0, 2.0]})[1] == {
        "predictions": [2.5, 3.0]
    }
    assert call(api, "POST", "/v1/models/toy/labels/stable:predict", {"instances": [1, 2]})[1] == {
        "predictions": [2.5, 3.0]
    }
    body = {"signature_name": "serving_default", "inputs": [3.0, 4.0]}
    assert call(api, "POST", "/v1/models/toy/versions/1:predict", body)[1] == {
        "outputs": [3.5, 4.0]
    }


def test_predict_whole_numbers_print_as_floats(api):
    response = api.handle("POST", "/v1/models/toy:predict", b'{"instances": [1.0, 2.0]}')
    assert b"3.0" in response.body and b"2.5" in response.body


def test_predict_multiple_inputs_and_outputs(api):
    row = {"signature_name": "multi", "instances": [{"a": [1, 2], "b": 3}, {"a": [4, 5], "b": 6}]}
    assert call(api, "POST", "/v1/models/toy:predict", row)[1] == {
        "predictions": [{"b_twice": 6, "sum": 3.0}, {"b_twice": 12, "sum": 9.0}]
    }
    columns = {"signature_name": "multi", "inputs": {"a": [[1, 2], [4, 5]], "b": [3, 6]}}
    assert call(api, "POST", "/v1/models/toy:predict", columns)[1] == {
        "outputs": {"b_twice": [6, 12], "sum": [3.0, 9.0]}
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"signature_name": "multi", "instances": [[1.0, 2.0]]},
            "instances is a plain list, but expecting list of objects",
        ),
        (
            {"signature_name": "multi", "instances": [{"a": [1, 2]}]},
            "Failed to process element: 0 of 'instances' list. JSON object: ",
        ),
        (
            {"signature_name": "multi", "instances": [{"a": [1, 2], "b": 3, "c": 1}]},
            "Failed to process element: 0 key: c of 'instances' list. Error: INVALID_ARGUMENT: "
            "JSON object: does not have named input: c",
        ),
        (
            {"signature_name": "multi", "inputs": {"a": [[1, 2]]}},
            "Missing named input: b in 'inputs' object.",
        ),
        ({"signature_name": "multi", "inputs": [1]}, "inputs is a plain value/list"),
        (
            {"signature_name": "multi", "instances": [{"a": [1, 2], "b": 1.5}]},
            "is not of expected type: int64",
        ),
        (
            {"signature_name": "multi", "instances": [{"a": [1, 2], "b": 1}, {"a": [1], "b": 1}]},
            "Expecting tensor size: 2 but got: 1",
        ),
        (
            {"signature_name": "multi", "inputs": {"a": [[1, 2], [3]], "b": [1, 2]}},
            "Encountered list at unexpected size: 1 at level: 1 expected size: 2",
        ),
        (
            {"signature_name": "multi", "inputs": {"a": [1, 2], "b": [1, 2]}},
            # No shape check before the run (TF Serving has none): the runtime's own error.
            "Invalid reduction dimension",
        ),
    ],
)
def test_multi_input_errors(api, body, message):
    status, reply = call(api, "POST", "/v1/models/toy:predict", body)
    assert status == 400
    assert message in reply["error"]


def test_b64_strings_in_and_bytes_out(api):
    raw = bytes(range(256))
    encoded = base64.b64encode(raw).decode()
    body = {"signature_name": "strings", "instances": [{"b64": encoded}, "plain"]}
    status, reply = call(api, "POST", "/v1/models/toy:predict", body)
    assert status == 200
    first, second = reply["predictions"]
    assert first == {"length": 256, "echo_bytes": {"b64": encoded}}
    assert second == {"length": 5, "echo_bytes": {"b64": base64.b64encode(b"plain").decode()}}
    status, reply = call(
        api, "POST", "/v1/models/toy:predict", {**body, "instances": [{"b64": "!!"}]}
    )
    assert (status, reply["error"]) == (
        400,
        "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
        "Unable to base64 decode",
    )


def test_regress_and_classify(api):
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]}
    for path in (
        "/v1/models/toy:regress",
        "/v1/models/toy/versions/1:regress",
        "/v1/models/toy/labels/stable:regress",
    ):
        assert call(api, "POST", path, body) == (200, {"results": [42.0]})
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]}
    assert call(api, "POST", "/v1/models/toy:classify", body) == (200, {"results": [[["", 12.0]]]})
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 10.0}]}
    assert call(api, "POST", "/v1/models/toy/labels/stable:classify", body)[1] == {
        "results": [[["", 7.0]]]
    }


def test_regress_with_context_merges_features(api):
    body = {
        "signature_name": "regress_x_to_y",
        "context": {"x": 80.0},
        "examples": [{}, {"x": 2.0}],
    }
    assert call(api, "POST", "/v1/models/toy:regress", body) == (200, {"results": [42.0, 3.0]})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"signature_name": "regress_x_to_y"}, "key 'examples' is expected and was not found"),
        ({"examples": {}}, "Expecting 'examples' value to be an list/array"),
        ({"examples": []}, "'examples' value is an empty array"),
        ({"examples": [1]}, "Example must be JSON object but got JSON Number"),
        (
            {"examples": [{"x": [1, "a"]}]},
            "Unexpected element type in feature: x expecting type: int64",
        ),
        ({"examples": [{"x": None}]}, "Feature: x has element with unexpected JSON type: Null"),
        ({"examples": [{"x": 1.0}]}, "No signature was found with the name: serving_default"),
    ],
)
def test_regress_errors(api, body, message):
    if "signature_name" not in body and "No signature" in message:
        body = {**body, "signature_name": "serving_default_missing"}
        message = "No signature was found with the name: serving_default_missing"
    status, reply = call(api, "POST", "/v1/models/toy:regress", body)
    assert status == 400
    assert message in reply["error"]


def test_regress_on_a_predict_signature_names_the_rule(api):
    status, reply = call(api, "POST", "/v1/models/toy:regress", {"examples": [{"x": 1.0}]})
    assert status == 400
    assert reply["error"].startswith("No regression inputs found in SignatureDef: ")


def test_status_all_version_and_label(api):
    expected = {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    for path in ("/v1/models/toy", "/v1/models/toy/versions/1", "/v1/models/toy/labels/stable"):
        assert call(api, "GET", path) == (200, expected)
    status, reply = call(api, "GET", "/v1/models/toy/versions/9")
    assert (status, reply["error"]) == (404, "Could not find version 9 of model toy")
    status, reply = call(api, "GET", "/v1/models/nope")
    assert (status, reply["error"]) == (404, "Could not find any versions of model nope")


def test_metadata(api):
    status, reply = call(api, "GET", "/v1/models/toy/metadata")
    assert status == 200
    assert reply["model_spec"] == {"name": "toy", "signature_name": "", "version": "1"}
    signatures = reply["metadata"]["signature_def"]["signature_def"]
    assert set(signatures) >= {
        "serving_default",
        "multi",
        "strings",
        "classify_x_to_y",
        "__saved_model_init_op",
    }
    x = signatures["serving_default"]["inputs"]["x"]
    assert x["dtype"] == "DT_FLOAT"
    assert x["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}]
    assert signatures["serving_default"]["method_name"] == "tensorflow/serving/predict"
    status, reply = call(api, "GET", "/v1/models/toy/versions/1/metadata")
    assert status == 200
    status, reply = call(api, "GET", "/v1/models/toy/versions/3/metadata")
    assert (status, reply["error"]) == (404, "Servable not found for request: Specific(toy, 3)")


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
