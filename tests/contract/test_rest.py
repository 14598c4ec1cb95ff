"""TF Serving's REST API, as its handler tests and api_rest.md state it, over a socket.

The vectors are TF Serving's own: ``http_rest_api_handler_test.cc`` (model
``saved_model_half_plus_two_2_versions``, version 123, label ``Version_Label``), api_rest.md's
examples (``saved_model_half_plus_three``) and docker.md's (``half_plus_two``); the error texts
are those of ``http_rest_api_util.cc``, ``json_tensor.cc``, ``server_core.cc`` and
``classifier.cc``/``regressor.cc`` at TF Serving 2.20. ``toy_tf2`` covers what those models lack
(several inputs and outputs, strings). Runs against the stand-in by default and against a real
TF Serving with ``--serving-rest-url`` (see conftest.py).
"""

from __future__ import annotations

import base64
from urllib.parse import quote

import numpy as np
import pytest

from serving.client import RestClient
from tests.contract.models import (
    HALF_PLUS_THREE,
    HALF_PLUS_TWO,
    LABEL,
    ODD_NAME,
    TOY,
    TWO_VERSIONS,
)

TWO = f"/v1/models/{TWO_VERSIONS}"
THREE = f"/v1/models/{HALF_PLUS_THREE}"
TOY_PATH = f"/v1/models/{TOY}"
OK = {"error_code": "OK", "error_message": ""}
AVAILABLE_123 = {"model_version_status": [{"version": "123", "state": "AVAILABLE", "status": OK}]}


# --- routes (HttpRestApiHandlerTest.UnsupportedApiCalls, PredictModelNameVersionErrors) --------


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
    ],
)
def test_unsupported_api_calls(server, method, path, message):
    status, body = server.rest(method, path)
    assert status == 400
    assert message in body["error"]


@pytest.mark.parametrize(
    "path",
    ["/v1/models/foo:predict", "/v1/models/foo/versions/50:predict", f"{TWO}99:predict"],
)
def test_unknown_model_or_version_is_404(server, path):
    status, body = server.rest("POST", path, {"instances": [1]})
    assert status == 404
    assert body["error"].startswith("Servable not found for request: ")


def test_api_rest_md_404_example(server):
    # api_rest.md: POST /v1/models/half:predict -> 404 {"error": "...Latest(half)"}
    status, content_type, body = server.rest_raw(
        "POST", "/v1/models/half:predict", b'{"instances": [1.0,5.0]}'
    )
    assert (status, content_type) == (404, "application/json")
    assert b"Servable not found for request: Latest(half)" in body


def test_a_version_the_policy_does_not_serve_is_not_found(server):
    # 124 is on disk, but the config's specific policy serves 123 only.
    status, body = server.rest("POST", f"{TWO}/versions/124:predict", {"instances": [1.0]})
    assert (status, body["error"]) == (
        404,
        f"Servable not found for request: Specific({TWO_VERSIONS}, 124)",
    )


# --- predict (HttpRestApiHandlerTest.PredictRequestErrors, Predict) ---------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "JSON Parse error: The document is empty"),
        (b"instances = [1, 2]", "JSON Parse error: Invalid value"),
        (b'{ "instances": ["x", "y"] }', "not of expected type: float"),
        (b'{ "signature_name": 100 }', "'signature_name' key must be a string value."),
        (b"[1, 2]", "Is not object"),
        (b'{"instances": [1.0], "inputs": [1.0]}', "expecting only one of 'inputs' or 'instances'"),
        (b'{"instances": 1.0}', "Expecting 'instances' to be an list/array"),
        (b'{"instances": []}', "No values in 'instances' array"),
        (b'{"foo": 1}', "Missing 'inputs' or 'instances' key"),
        (b'{"instances": [[1.0], 2.0]}', "Failed to process element: 1 of 'instances' list."),
        (b'{"signature_name": "nope", "instances": [1.0]}', 'Serving signature name: "nope"'),
    ],
)
def test_predict_request_errors(server, body, message):
    status, reply = server.rest("POST", f"{TWO}:predict", body)
    assert status == 400
    assert message in reply["error"]


def test_type_error_message(server):
    _, reply = server.rest("POST", f"{TOY_PATH}:predict", {"instances": ["x"]})
    assert reply["error"] == (
        "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
        'JSON Value: "x" Type: String is not of expected type: float'
    )


def test_nonexistent_label_is_invalid_argument(server):
    path = f"{TWO}/labels/Version_Nonexistent:predict"
    status, reply = server.rest("POST", path, {"instances": ["x", "y"]})
    assert status == 400
    assert "Unrecognized servable version label" in reply["error"]


def test_predict_latest_version_and_label(server):
    body = {"instances": [[1.0, 2.0], [3.0, 4.0]]}
    assert server.rest("POST", f"{TWO}:predict", body) == (
        200,
        {"predictions": [[2.5, 3.0], [3.5, 4.0]]},
    )
    for path in (f"{TWO}/versions/123:predict", f"{TWO}/labels/{LABEL}:predict"):
        assert server.rest("POST", path, {"instances": [1.0, 2.0]}) == (
            200,
            {"predictions": [2.5, 3.0]},
        )
    body = {"signature_name": "serving_default", "instances": [3.0, 4.0]}
    assert server.rest("POST", f"{TWO}/versions/123:predict", body) == (
        200,
        {"predictions": [3.5, 4.0]},
    )
    body = {"signature_name": "serving_default", "inputs": [3.0, 4.0]}
    assert server.rest("POST", f"{TWO}/versions/123:predict", body) == (
        200,
        {"outputs": [3.5, 4.0]},
    )


def test_docker_md_and_api_rest_md_examples(server):
    # docker.md: half_plus_two answers {"instances": [1.0, 2.0, 5.0]} with [2.5, 3.0, 4.5].
    body = {"instances": [1.0, 2.0, 5.0]}
    assert server.rest("POST", f"/v1/models/{HALF_PLUS_TWO}:predict", body) == (
        200,
        {"predictions": [2.5, 3.0, 4.5]},
    )
    # api_rest.md: saved_model_half_plus_three, predict and regress.
    assert server.rest("POST", f"{THREE}:predict", body) == (200, {"predictions": [3.5, 4.0, 5.5]})
    body = {"signature_name": "tensorflow/serving/regress", "examples": [{"x": 1.0}, {"x": 2.0}]}
    assert server.rest("POST", f"{THREE}:regress", body) == (200, {"results": [3.5, 4.0]})
    assert server.rest("GET", THREE) == (200, AVAILABLE_123)


def test_whole_numbers_print_as_floats(server):
    status, _, raw = server.rest_raw("POST", f"{TOY_PATH}:predict", b'{"instances": [1.0, 2.0]}')
    assert status == 200 and b"3.0" in raw and b"2.5" in raw


def test_several_inputs_and_outputs(server):
    row = {"signature_name": "multi", "instances": [{"a": [1, 2], "b": 3}, {"a": [4, 5], "b": 6}]}
    assert server.rest("POST", f"{TOY_PATH}:predict", row) == (
        200,
        {"predictions": [{"b_twice": 6, "sum": 3.0}, {"b_twice": 12, "sum": 9.0}]},
    )
    columns = {"signature_name": "multi", "inputs": {"a": [[1, 2], [4, 5]], "b": [3, 6]}}
    assert server.rest("POST", f"{TOY_PATH}:predict", columns) == (
        200,
        {"outputs": {"b_twice": [6, 12], "sum": [3.0, 9.0]}},
    )


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
def test_several_inputs_errors(server, body, message):
    status, reply = server.rest("POST", f"{TOY_PATH}:predict", body)
    assert status == 400
    assert message in reply["error"]


def test_b64_strings_in_and_bytes_out(server):
    raw = bytes(range(256))
    encoded = base64.b64encode(raw).decode()
    body = {"signature_name": "strings", "instances": [{"b64": encoded}, "plain"]}
    status, reply = server.rest("POST", f"{TOY_PATH}:predict", body)
    assert status == 200
    first, second = reply["predictions"]
    assert first == {"length": 256, "echo_bytes": {"b64": encoded}}
    assert second == {"length": 5, "echo_bytes": {"b64": base64.b64encode(b"plain").decode()}}
    bad = {**body, "instances": [{"b64": "!!"}]}
    status, reply = server.rest("POST", f"{TOY_PATH}:predict", bad)
    assert status == 400
    assert "Unable to base64 decode" in reply["error"]


# --- classify and regress (HttpRestApiHandlerTest.Regress, Classify) ----------------------------


def test_regress_and_classify(server):
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]}
    for path in (f"{TWO}:regress", f"{TWO}/versions/123:regress", f"{TWO}/labels/{LABEL}:regress"):
        assert server.rest("POST", path, body) == (200, {"results": [42.0]})
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]}
    assert server.rest("POST", f"{TWO}:classify", body) == (200, {"results": [[["", 12.0]]]})
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 10.0}]}
    assert server.rest("POST", f"{TWO}/labels/{LABEL}:classify", body) == (
        200,
        {"results": [[["", 7.0]]]},
    )


def test_regress_with_context_merges_features(server):
    body = {"signature_name": "regress_x_to_y", "context": {"x": 80.0}}
    body["examples"] = [{}, {"x": 2.0}]
    assert server.rest("POST", f"{TWO}:regress", body) == (200, {"results": [42.0, 3.0]})


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
        (
            {"signature_name": "nope", "examples": [{"x": 1.0}]},
            "No signature was found with the name: nope",
        ),
    ],
)
def test_regress_errors(server, body, message):
    status, reply = server.rest("POST", f"{TWO}:regress", body)
    assert status == 400
    assert message in reply["error"]


def test_regress_on_a_predict_signature_names_the_rule(server):
    status, reply = server.rest("POST", f"{TWO}:regress", {"examples": [{"x": 1.0}]})
    assert status == 400
    assert reply["error"].startswith("No regression inputs found in SignatureDef: ")


# --- status and metadata (HttpRestApiHandlerTest.GetStatus, GetModelMetadata) ------------------


def test_status_all_versions_a_version_and_a_label(server):
    for path in (TWO, f"{TWO}/versions/123", f"{TWO}/labels/{LABEL}"):
        assert server.rest("GET", path) == (200, AVAILABLE_123)
    status, reply = server.rest("GET", f"{TWO}/versions/9")
    assert (status, reply["error"]) == (404, f"Could not find version 9 of model {TWO_VERSIONS}")
    status, reply = server.rest("GET", "/v1/models/nope")
    assert (status, reply["error"]) == (404, "Could not find any versions of model nope")


def test_status_ignores_the_label_even_an_unknown_one(server):
    # GetModelStatusWithModelSpec (get_model_status_impl.cc) reads the version only: a label,
    # known or not, lists every version, 200.
    assert server.rest("GET", f"{TWO}/labels/Version_Nonexistent") == (200, AVAILABLE_123)


def test_metadata(server):
    status, reply = server.rest("GET", f"{TWO}/metadata")
    assert status == 200
    assert reply["model_spec"] == {"name": TWO_VERSIONS, "signature_name": "", "version": "123"}
    signatures = reply["metadata"]["signature_def"]["signature_def"]
    assert set(signatures) >= {
        "serving_default",
        "classify_x_to_y",
        "regress_x_to_y",
        "regress_x_to_y2",
        "regress_x2_to_y3",
    }
    # Field for field as TF Serving's testdata/saved_model_half_plus_two_2_versions_metadata.json.
    dims = {"dim": [{"size": "-1", "name": ""}, {"size": "1", "name": ""}], "unknown_rank": False}
    assert signatures["serving_default"] == {
        "inputs": {"x": {"dtype": "DT_FLOAT", "tensor_shape": dims, "name": "x:0"}},
        "outputs": {"y": {"dtype": "DT_FLOAT", "tensor_shape": dims, "name": "y:0"}},
        "method_name": "tensorflow/serving/predict",
        "defaults": {},
    }
    status, reply = server.rest("GET", f"{TWO}/versions/123/metadata")
    assert status == 200 and reply["model_spec"]["version"] == "123"
    assert server.rest("GET", f"{TWO}/labels/{LABEL}/metadata")[0] == 200
    status, reply = server.rest("GET", f"{TWO}/versions/3/metadata")
    assert (status, reply["error"]) == (
        404,
        f"Servable not found for request: Specific({TWO_VERSIONS}, 3)",
    )


def test_a_signature_tensor_without_a_shape_has_no_tensor_shape(server):
    # api_rest.md's half_plus_three is an old TF1 export: its tensors carry no shape at all, and
    # the metadata says so by leaving tensor_shape out (clients must read that as "unknown").
    _, reply = server.rest("GET", f"{THREE}/metadata")
    x = reply["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["x"]
    assert x == {"dtype": "DT_FLOAT", "name": "x:0"}


def test_any_model_name_reaches_its_model_percent_encoded(server):
    # The route captures `[^/:]+` and the handler decodes it (DecodeArg, http_rest_api_util.cc).
    path = f"/v1/models/{quote(ODD_NAME, safe='')}"
    assert server.rest("POST", f"{path}:predict", {"instances": [1.0]}) == (
        200,
        {"predictions": [2.5]},
    )
    status, reply = server.rest("GET", f"{path}/metadata")
    assert (status, reply["model_spec"]["name"]) == (200, ODD_NAME)
    with RestClient(server.rest_url, timeout=30) as client:
        assert [s.state for s in client.status(ODD_NAME)] == ["AVAILABLE"]
        outputs = client.predict_raw(ODD_NAME, {"x": np.array([2.0], np.float32)})
    assert outputs["y"].tolist() == [3.0]
