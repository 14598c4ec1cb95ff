"""RestClient against a recording fake transport: exact URLs, bodies and error mapping."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import unquote

import httpx
import numpy as np
import pytest

from serving.client import (
    ConnectionFailed,
    InvalidInput,
    ModelClient,
    RestClient,
    ServerError,
    UnexpectedResponse,
    VersionStatus,
)


def client_for(server: Any, base: str = "http://serving:8501") -> RestClient:
    return RestClient(base, timeout=2.0, transport=server.transport)


def test_predict_sends_row_format_and_parses_predictions(
    fake_server: Any, mnist_predictions: Any
) -> None:
    fake_server.routes["POST /v1/models/mnist:predict"] = (200, mnist_predictions([7, 2]))
    images = np.zeros((2, 28, 28, 1), dtype=np.uint8)
    images[1, 0, 0, 0] = 255

    prediction = client_for(fake_server).predict("mnist", images)

    request = fake_server.requests[0]
    assert str(request.url) == "http://serving:8501/v1/models/mnist:predict"
    assert request.headers["content-type"] == "application/json"
    body = fake_server.body()
    assert body["signature_name"] == "serving_default"
    assert set(body) == {"signature_name", "instances"}
    assert np.asarray(body["instances"]).shape == (2, 28, 28, 1)
    assert body["instances"][1][0][0] == [255.0]
    assert prediction.classes.tolist() == [7, 2]
    assert prediction.classes.dtype == np.int64
    assert prediction.probabilities.dtype == np.float32
    assert prediction.probabilities.shape == (2, 10)
    assert prediction.probabilities[0, 7] == pytest.approx(0.91)
    assert prediction.model_version is None  # TF Serving's REST predict does not say


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"version": 3}, "/v1/models/mnist/versions/3:predict"),
        ({"label": "canary"}, "/v1/models/mnist/labels/canary:predict"),
    ],
)
def test_predict_routes_version_and_label(
    fake_server: Any, mnist_predictions: Any, spec, path
) -> None:
    fake_server.routes[f"POST {path}"] = (200, mnist_predictions([1]))
    client = client_for(fake_server)
    client.predict("mnist", np.zeros((1, 28, 28, 1)), signature_name="other", **spec)
    assert fake_server.requests[0].url.path == path
    assert fake_server.body()["signature_name"] == "other"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"version": 1, "label": "stable"}, "not both"),
        ({"version": 0}, "positive integer"),
        ({"label": ""}, "label '' is not valid"),
    ],
)
def test_bad_model_spec_is_refused_before_sending(fake_server: Any, kwargs, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        client_for(fake_server).predict("mnist", np.zeros((1, 28, 28, 1)), **kwargs)
    with pytest.raises(InvalidInput, match="model name '' is not valid"):
        client_for(fake_server).status("")
    assert fake_server.requests == []


@pytest.mark.parametrize(
    ("name", "label", "path"),
    [
        # TF Serving's own model names: any text, the route carries it percent-encoded and the
        # server decodes it (DecodeArg in http_rest_api_util.cc).
        ("half_plus_two", None, "/v1/models/half_plus_two"),
        ("Resnet V2", "Version_Label", "/v1/models/Resnet%20V2/labels/Version_Label"),
        ("team/a:b", "a/b", "/v1/models/team%2Fa%3Ab/labels/a%2Fb"),
    ],
)
def test_any_model_name_and_label_is_routed_percent_encoded(
    fake_server: Any, name: str, label: str | None, path: str
) -> None:
    fake_server.routes[f"GET {unquote(path)}"] = (200, {"model_version_status": []})  # decoded
    client_for(fake_server).status(name, label=label)
    assert fake_server.requests[0].url.raw_path.decode() == path


@pytest.mark.parametrize("shape", [(28, 28, 1), (1, 28, 28), (0, 28, 28, 1), (1, 27, 28, 1)])
def test_predict_refuses_wrong_image_shapes(fake_server: Any, shape) -> None:
    with pytest.raises(InvalidInput, match=r"\[N, 28, 28, 1\]"):
        client_for(fake_server).predict("mnist", np.zeros(shape))
    assert fake_server.requests == []


def test_server_error_carries_status_and_tf_serving_message(fake_server: Any) -> None:
    fake_server.routes["POST /v1/models/half:predict"] = (
        404,
        {"error": "Servable not found for request: Latest(half)"},
    )
    with pytest.raises(ServerError) as caught:
        client_for(fake_server).predict("half", np.zeros((1, 28, 28, 1)))
    assert caught.value.status == 404
    assert caught.value.message == "Servable not found for request: Latest(half)"


def test_non_json_error_body_is_reported_as_text(fake_server: Any) -> None:
    fake_server.routes["GET /v1/models/mnist"] = (502, b"bad gateway from proxy")
    with pytest.raises(ServerError) as caught:
        client_for(fake_server).status("mnist")
    assert (caught.value.status, caught.value.message) == (502, "bad gateway from proxy")


def test_success_with_a_body_that_is_not_json_is_unexpected(fake_server: Any) -> None:
    fake_server.routes["GET /v1/models/mnist"] = (200, b"<html>hello</html>")
    with pytest.raises(UnexpectedResponse, match="not a JSON object"):
        client_for(fake_server).status("mnist")


def test_predict_without_the_mnist_outputs_is_unexpected(fake_server: Any) -> None:
    fake_server.routes["POST /v1/models/mnist:predict"] = (200, {"predictions": [[0.5, 0.5]]})
    with pytest.raises(UnexpectedResponse, match="list of objects"):
        client_for(fake_server).predict("mnist", np.zeros((1, 28, 28, 1)))
    fake_server.routes["POST /v1/models/mnist:predict"] = (200, {"predictions": [{"scores": 1}]})
    with pytest.raises(
        UnexpectedResponse, match=r"lacks output\(s\) \['classes', 'probabilities'\]"
    ):
        client_for(fake_server).predict("mnist", np.zeros((1, 28, 28, 1)))


def test_timeouts_and_refused_connections_are_connection_failures(
    fake_server: Any,
) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    fake_server.routes["GET /v1/models/slow"] = slow
    fake_server.routes["GET /v1/models/down"] = refused
    client = client_for(fake_server)
    with pytest.raises(ConnectionFailed, match="within 2s"):
        client.status("slow")
    with pytest.raises(ConnectionFailed, match="Connection refused"):
        client.status("down")


def test_status_parses_tf_serving_json(fake_server: Any) -> None:
    # The document TF Serving's api_rest.md shows, plus a version that failed to load.
    fake_server.routes["GET /v1/models/mnist"] = (
        200,
        {
            "model_version_status": [
                {
                    "version": "123",
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                },
                {
                    "version": "124",
                    "state": "END",
                    "status": {"error_code": "NOT_FOUND", "error_message": "no saved_model.pb"},
                },
            ]
        },
    )
    assert client_for(fake_server).status("mnist") == [
        VersionStatus(123, "AVAILABLE", "OK", ""),
        VersionStatus(124, "END", "NOT_FOUND", "no saved_model.pb"),
    ]


def test_status_and_metadata_routes(fake_server: Any) -> None:
    status = {"model_version_status": [{"version": "2", "state": "AVAILABLE", "status": {}}]}
    metadata = {"model_spec": {"name": "mnist", "version": "2"}, "metadata": {}}
    fake_server.routes["GET /v1/models/mnist/labels/stable"] = (200, status)
    fake_server.routes["GET /v1/models/mnist/versions/2/metadata"] = (200, metadata)
    client = client_for(fake_server, base="localhost:8501/")
    assert client.status("mnist", label="stable")[0] == VersionStatus(2, "AVAILABLE", "OK", "")
    assert client.metadata("mnist", version=2) == metadata
    assert [str(r.url) for r in fake_server.requests] == [
        "http://localhost:8501/v1/models/mnist/labels/stable",
        "http://localhost:8501/v1/models/mnist/versions/2/metadata",
    ]
    assert all(r.method == "GET" and not r.content for r in fake_server.requests)


def test_predict_raw_uses_columnar_format_with_b64_bytes(fake_server: Any) -> None:
    fake_server.routes["POST /v1/models/m:predict"] = (
        200,
        {"outputs": {"scores": [[1.5, 2.5]], "tags_bytes": [{"b64": "AAE="}]}},
    )
    outputs = client_for(fake_server).predict_raw(
        "m", {"x": np.array([[1, 2]], dtype=np.int32), "blob": np.array([b"\x00\xff"])}
    )
    assert fake_server.body() == {
        "signature_name": "serving_default",
        "inputs": {"x": [[1, 2]], "blob": [{"b64": base64.b64encode(b"\x00\xff").decode()}]},
    }
    assert outputs["scores"].tolist() == [[1.5, 2.5]]
    assert outputs["tags_bytes"].tolist() == [b"\x00\x01"]


def test_predict_raw_names_a_single_unnamed_output_from_metadata(
    fake_server: Any,
) -> None:
    fake_server.routes["POST /v1/models/half:predict"] = (200, {"outputs": [2.5, 3.0]})
    fake_server.routes["GET /v1/models/half/metadata"] = (
        200,
        {
            "model_spec": {"name": "half", "version": "1"},
            "metadata": {
                "signature_def": {
                    "signature_def": {"serving_default": {"outputs": {"y": {"name": "y:0"}}}}
                }
            },
        },
    )
    client = client_for(fake_server)
    for _ in range(2):
        outputs = client.predict_raw("half", {"x": np.array([1.0, 2.0])})
        assert list(outputs) == ["y"]
        assert outputs["y"].tolist() == [2.5, 3.0]
    paths = [r.url.path for r in fake_server.requests]
    assert paths.count("/v1/models/half/metadata") == 1  # learnt once, then cached


def test_rest_client_is_a_model_client(fake_server: Any) -> None:
    with client_for(fake_server) as client:
        assert isinstance(client, ModelClient)


@pytest.mark.parametrize("base", ["ftp://host:21", "http://host:8501"])
def test_bad_base_url_or_timeout(base: str) -> None:
    if base.startswith("ftp"):
        with pytest.raises(InvalidInput, match="use http://HOST:PORT"):
            RestClient(base)
    else:
        with pytest.raises(InvalidInput, match="positive number"):
            RestClient(base, timeout=0)


def test_whole_pixels_go_as_ints_and_fractions_as_floats(
    fake_server: Any, mnist_predictions: Any
) -> None:
    fake_server.routes["POST /v1/models/mnist:predict"] = (200, mnist_predictions([0]))
    client = client_for(fake_server)
    whole = np.full((1, 28, 28, 1), 255.0, dtype=np.float32)
    client.predict("mnist", whole)
    assert b'"instances": [[[[255], [255]' in fake_server.requests[-1].content
    fractional = whole.copy()
    fractional[0, 0, 0, 0] = 127.5
    client.predict("mnist", fractional)
    assert fake_server.body()["instances"][0][0][:2] == [[127.5], [255.0]]
    assert b"[[[[127.5], [255.0]" in fake_server.requests[-1].content
