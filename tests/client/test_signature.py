"""Predicting for any signature: JSON (row/columnar) and .npy inputs checked against metadata."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from serving.client import InvalidInput, RestClient
from serving.client.__main__ import main
from serving.client.signature import (
    fetch_predict_signature,
    load_json_inputs,
    load_npy_inputs,
    predict_with_signature,
    prepare_inputs,
    shape_notes,
    signature_from_metadata,
)


def _tensor(dtype: str, dims: list[int] | None) -> dict:
    shape = (
        {"dim": [], "unknown_rank": True}
        if dims is None
        else {
            "dim": [{"size": str(d), "name": ""} for d in dims],
            "unknown_rank": False,
        }
    )
    return {"dtype": dtype, "tensor_shape": shape, "name": "t:0"}


METADATA = {
    "model_spec": {"name": "tab", "signature_name": "", "version": "1"},
    "metadata": {
        "signature_def": {
            "signature_def": {
                "serving_default": {
                    "inputs": {
                        "age": _tensor("DT_FLOAT", [-1]),
                        "code": _tensor("DT_STRING", [-1]),
                        "count": _tensor("DT_INT64", [-1, 2]),
                    },
                    "outputs": {"score": _tensor("DT_FLOAT", [-1])},
                    "method_name": "tensorflow/serving/predict",
                },
                "classify": {
                    "inputs": {"inputs": _tensor("DT_STRING", None)},
                    "outputs": {"scores": _tensor("DT_FLOAT", None)},
                    "method_name": "tensorflow/serving/classify",
                },
            }
        }
    },
}
SIGNATURE = signature_from_metadata(METADATA, "serving_default")
NAMES = sorted(SIGNATURE["inputs"])


def test_signature_summary_from_metadata() -> None:
    assert SIGNATURE["inputs"] == {
        "age": {"dtype": "float32", "shape": [-1]},
        "code": {"dtype": "string", "shape": [-1]},
        "count": {"dtype": "int64", "shape": [-1, 2]},
    }
    with pytest.raises(
        InvalidInput, match=r"no signature 'nope'.*\['classify', 'serving_default'\]"
    ):
        signature_from_metadata(METADATA, "nope")


def test_row_and_columnar_json_give_the_same_tensors() -> None:
    rows = {
        "instances": [
            {"age": 50, "code": "a", "count": [1, 2]},
            {"age": 61.5, "code": {"b64": "Yg=="}, "count": [3, 4]},
        ]
    }
    columns = {
        "inputs": {"age": [50, 61.5], "code": ["a", {"b64": "Yg=="}], "count": [[1, 2], [3, 4]]}
    }
    for document in (rows, columns):
        inputs, _ = load_json_inputs(document, NAMES)
        prepared = prepare_inputs(inputs, SIGNATURE)
        assert prepared["age"].dtype == np.float32 and prepared["age"].tolist() == [50.0, 61.5]
        assert prepared["code"].tolist() == [b"a", b"b"]
        assert prepared["count"].dtype == np.int64 and prepared["count"].shape == (2, 2)


def test_unnamed_json_needs_a_one_input_signature() -> None:
    inputs, name = load_json_inputs({"instances": [1.0, 2.0], "signature_name": "x"}, ["only"])
    assert name == "x" and inputs["only"].tolist() == [1.0, 2.0]
    with pytest.raises(InvalidInput, match="takes 3 inputs"):
        load_json_inputs({"inputs": [1.0, 2.0]}, NAMES)
    with pytest.raises(InvalidInput, match="exactly one of"):
        load_json_inputs({"instances": [], "inputs": {}}, NAMES)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"age": [1.0], "code": ["a"]}, r"missing \['count'\]"),
        ({"age": [1.0], "code": ["a"], "count": [[1, 2]], "x": [1]}, r"unknown \['x'\]"),
        ({"age": [1.0], "code": ["a"], "count": [[1.5, 2]]}, "not all whole numbers"),
        ({"age": ["old"], "code": ["a"], "count": [[1, 2]]}, "'age' takes float32"),
        ({"age": [1.0], "code": [3], "count": [[1, 2]]}, "'code' takes strings"),
    ],
)
def test_bad_inputs_are_refused_naming_the_input(inputs, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        prepare_inputs({k: np.asarray(v) for k, v in inputs.items()}, SIGNATURE)


def test_shapes_are_left_to_the_server_and_explained_only() -> None:
    # TF Serving checks names and dtypes, not shapes: neither does the client. The differences
    # are said when the server refuses the request (the CLI prints them as notes).
    inputs = {"age": np.asarray([1.0]), "code": np.asarray(["a"]), "count": np.asarray([1, 2, 3])}
    prepared = prepare_inputs(inputs, SIGNATURE)
    assert prepared["count"].tolist() == [1, 2, 3]
    assert shape_notes(prepared, SIGNATURE) == [
        "input 'count' has shape [3]; the signature declares [-1, 2] (-1 = any)"
    ]


def test_a_tensor_info_without_a_shape_is_unknown_not_a_scalar() -> None:
    # TF1 exports such as TF Serving's half_plus_three carry no tensor_shape at all; REST and
    # gRPC metadata then have no "tensor_shape" key. An empty shape, though, is a scalar.
    metadata = json.loads(json.dumps(METADATA))
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    del signature["inputs"]["age"]["tensor_shape"]
    signature["inputs"]["code"]["tensor_shape"] = {"dim": [], "unknown_rank": False}
    inputs = signature_from_metadata(metadata, "serving_default")["inputs"]
    assert inputs["age"]["shape"] is None and inputs["code"]["shape"] == []


def test_a_classify_signature_is_named_with_the_request_it_needs() -> None:
    classify = signature_from_metadata(METADATA, "classify")
    with pytest.raises(InvalidInput) as caught:
        prepare_inputs({"inputs": np.asarray([1.0, 2.0])}, classify)
    message = str(caught.value)
    assert message.startswith("input 'inputs' takes strings, got float64 values; ")
    assert "signature 'classify' is a classify signature: it takes tf.Example protos" in message
    assert "POST /v1/models/MODEL:classify" in message and '"examples": [' in message
    assert "gRPC PredictionService/Classify" in message
    with pytest.raises(InvalidInput, match=r"is a classify signature.*predict requests only"):
        fetch_predict_signature(_MetadataOnly(), "tab", signature_name="classify")
    with pytest.raises(InvalidInput, match=r"classify/regress request \("):
        load_json_inputs({"examples": [{"x": 1.0}]}, ["inputs"])


class _MetadataOnly:
    def metadata(self, model, *, version=None, label=None):
        return METADATA


def test_npy_inputs_per_name(tmp_path: Path) -> None:
    np.save(tmp_path / "age.npy", np.array([1.0, 2.0], np.float32))
    assert load_npy_inputs([f"age={tmp_path / 'age.npy'}"])["age"].tolist() == [1.0, 2.0]
    with pytest.raises(InvalidInput, match="use NAME=FILE"):
        load_npy_inputs(["age.npy"])
    with pytest.raises(InvalidInput, match=r"missing\.npy: no such file"):
        load_npy_inputs([f"age={tmp_path / 'missing.npy'}"])


def _fake_rest(fake_server) -> None:
    fake_server.routes["GET /v1/models/tab/metadata"] = (200, METADATA)

    def predict(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        return httpx.Response(
            200, json={"outputs": {"score": [a * 2 for a in body["inputs"]["age"]]}}
        )

    fake_server.routes["POST /v1/models/tab:predict"] = predict


def test_predict_with_signature_sends_converted_columnar_inputs(fake_server) -> None:
    _fake_rest(fake_server)
    with RestClient("http://server", transport=fake_server.transport) as client:
        outputs = predict_with_signature(
            client, "tab", {"age": [3], "code": ["z"], "count": np.array([[1, 2]], np.int32)}
        )
        assert outputs["score"].tolist() == [6.0]
        assert fake_server.body()["inputs"] == {
            "age": [3.0],
            "code": [{"b64": "eg=="}],
            "count": [[1, 2]],
        }
        with pytest.raises(InvalidInput, match="classify signature"):
            predict_with_signature(client, "tab", {"inputs": [b""]}, signature_name="classify")


def test_a_fetched_signature_serves_many_batches_with_one_metadata_request(fake_server) -> None:
    _fake_rest(fake_server)
    with RestClient("http://server", transport=fake_server.transport) as client:
        signature = fetch_predict_signature(client, "tab")
        for age in (1, 2, 3):
            inputs = {"age": [age], "code": ["z"], "count": np.array([[1, 2]], np.int32)}
            outputs = predict_with_signature(client, "tab", inputs, signature=signature)
            assert outputs["score"].tolist() == [2.0 * age]
    asked = [f"{r.method} {r.url.path}" for r in fake_server.requests]
    assert asked.count("GET /v1/models/tab/metadata") == 1
    assert asked.count("POST /v1/models/tab:predict") == 3


def test_cli_predicts_from_json_and_npy(fake_server, tmp_path: Path) -> None:
    _fake_rest(fake_server)

    def factory(**kwargs):
        return RestClient("http://server", transport=fake_server.transport)

    request = tmp_path / "request.json"
    request.write_text(json.dumps({"instances": [{"age": 1, "code": "a", "count": [1, 2]}]}))
    out, err = io.StringIO(), io.StringIO()
    argv = ["predict", "--model", "tab", "--rest", "http://server", "--json"]
    assert main([*argv, "--inputs-json", str(request)], client_factory=factory, stdout=out) == 0
    assert json.loads(out.getvalue())["outputs"] == {"score": [2.0]}
    for name, value in {"age": [5.0], "code": np.array([b"q"]), "count": [[1, 1]]}.items():
        np.save(tmp_path / f"{name}.npy", np.asarray(value))
    npy = [f"--input={n}={tmp_path / n}.npy" for n in ("age", "code", "count")]
    out = io.StringIO()
    assert main([*argv[:-1], *npy], client_factory=factory, stdout=out) == 0
    assert "score [1] float" in out.getvalue() and "[0] 10.0" in out.getvalue()
    # A missing input is a usage error (exit 2) found before anything is sent.
    sent = len(fake_server.requests)
    assert main([*argv, *npy[:2]], client_factory=factory, stdout=out, stderr=err) == 2
    assert "missing ['count']" in err.getvalue()
    assert all(r.method == "GET" for r in fake_server.requests[sent:])
    with pytest.raises(SystemExit) as usage:
        main([*argv, str(request), *npy], client_factory=factory, stderr=err)
    assert usage.value.code == 2


@pytest.fixture(scope="module")
def tabular_server(tmp_path_factory: pytest.TempPathFactory):
    """The real local server over a model with two named scalar inputs (not the MNIST signature)."""
    import tensorflow as tf

    from devtools.bench.processes import start_local_server

    class Tabular(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable([2.0, -1.0], name="w")

        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.float32, name="height"),
                tf.TensorSpec([None], tf.float32, name="weight"),
            ]
        )
        def serve(self, height: tf.Tensor, weight: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"score": self.w[0] * height + self.w[1] * weight}

    workdir = tmp_path_factory.mktemp("tabular")
    module = Tabular()
    tf.saved_model.save(
        module, str(workdir / "tab" / "1"), signatures={"serving_default": module.serve}
    )
    with start_local_server(workdir / "tab", "tab", workdir, batching=None) as server:
        yield server


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_any_signature_over_the_local_server(tabular_server, protocol) -> None:
    from serving.client import connect

    where = (
        {"rest": tabular_server.rest_url}
        if protocol == "rest"
        else {"grpc": tabular_server.grpc_target}
    )
    with connect(timeout=30, **where) as client:
        # Ints from JSON are converted to the declared float32 before sending.
        outputs = predict_with_signature(client, "tab", {"height": [3, 4], "weight": [1, 1]})
        np.testing.assert_allclose(outputs["score"], [5.0, 7.0])
        with pytest.raises(InvalidInput, match=r"missing \['weight'\]"):
            predict_with_signature(client, "tab", {"height": [3.0]})


def test_cli_row_json_over_grpc(tabular_server, tmp_path: Path) -> None:
    request = tmp_path / "rows.json"
    request.write_text(
        json.dumps({"instances": [{"height": 1, "weight": 2}, {"height": 2, "weight": 0}]})
    )
    out = io.StringIO()
    argv = ["predict", "--model", "tab", "--grpc", tabular_server.grpc_target, "--json"]
    assert main([*argv, "--inputs-json", str(request)], stdout=out) == 0
    assert json.loads(out.getvalue())["outputs"] == {"score": [0.0, 4.0]}


@pytest.fixture(scope="module")
def half_plus_two_server(tmp_path_factory: pytest.TempPathFactory):
    """The local server over the TF1-graph equivalent of TF Serving's half_plus_two."""
    from devtools.bench.processes import start_local_server
    from tests.model.tf1_models import build_half_plus_two

    workdir = tmp_path_factory.mktemp("hp2")
    build_half_plus_two(workdir / "half-plus-two" / "1")
    with start_local_server(
        workdir / "half-plus-two", "half-plus-two", workdir, batching=None
    ) as server:
        yield server


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_half_plus_two_tf1_graph_serves(half_plus_two_server, protocol) -> None:
    from serving.client import connect

    server = half_plus_two_server
    where = {"rest": server.rest_url} if protocol == "rest" else {"grpc": server.grpc_target}
    with connect(timeout=30, **where) as client:
        # serving_default's x has unknown rank: any shape goes, as in the original model.
        outputs = predict_with_signature(client, "half-plus-two", {"x": [1, 2, 5]})
        np.testing.assert_allclose(outputs["y"], [2.5, 3.0, 4.5])
