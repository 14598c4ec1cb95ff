"""`python -m devtools.serve DIR...`: models nobody here wrote, served with one command.

A Keras application built without weights, a string-input text model, a two-in/two-out Keras
model (each exported with Keras 3's `model.export`, names and all), a plain `tf.Module` and a
TF1 graph without shapes (TF Serving's `half_plus_three`), served in one process and called with
what the command prints, TF Serving's documented requests, TF Serving's gRPC stubs (as its
example clients use them) and this project's client.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from devtools.serve import UsageError, build_parser, find_models
from serving.client.sample_inputs import FREE_DIMENSION
from tests.contract.models import HALF_PLUS_THREE, export_half_plus_three, export_toy

REPO = Path(__file__).resolve().parents[2]


def export_keras_models(root: Path) -> None:
    import keras

    keras.utils.set_random_seed(7)
    keras.applications.MobileNetV3Small(weights=None).export(
        str(root / "mobilenet_v3_small" / "1"), format="tf_saved_model", verbose=False
    )
    vocabulary = ["good", "bad", "movie", "great", "awful"]
    review = keras.Input(shape=(), dtype="string", name="review")
    tokens = keras.layers.TextVectorization(vocabulary=vocabulary, output_sequence_length=8)(review)
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(7, 4)(tokens))
    positive = keras.layers.Dense(1, activation="sigmoid")(pooled)
    keras.Model(review, positive).export(
        str(root / "sentiment" / "1"), format="tf_saved_model", verbose=False
    )
    features = keras.Input(shape=(3,), name="features")
    extra = keras.Input(shape=(2,), name="extra")
    joined = keras.layers.Concatenate()([features, extra])
    outputs = {
        "score": keras.layers.Dense(1)(joined),
        "probs": keras.layers.Dense(4, activation="softmax")(joined),
    }
    keras.Model({"features": features, "extra": extra}, outputs).export(
        str(root / "two_in_two_out" / "1"), format="tf_saved_model", verbose=False
    )


@dataclass
class Served:
    process: subprocess.Popen
    output: Path
    rest: str
    grpc: str
    examples: dict[str, list[str]]  # model -> the printed curl command, split


def _read_report(output: Path, process: subprocess.Popen, deadline: float) -> str:
    while "Ctrl-C stops." not in (text := output.read_text()):
        assert process.poll() is None, text + Path(f"{output}.err").read_text()[-3000:]
        assert time.monotonic() < deadline, "devtools.serve did not report within its deadline"
        time.sleep(0.2)
    return text


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("foreign_models")
    export_keras_models(root)
    export_toy(root / "toy_module" / "1")
    export_half_plus_three(root / HALF_PLUS_THREE / "00000123")
    dirs = sorted(str(p) for p in root.iterdir())
    output = root.parent / "serve.out"
    with output.open("w") as out, Path(f"{output}.err").open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "devtools.serve", *dirs, "--port=0", "--rest_api_port", "0"],
            cwd=REPO,
            stdout=out,
            stderr=err,
            # As a user runs it: without the suite's TF_ENABLE_ONEDNN_OPTS=0 (tests/conftest.py),
            # so the command itself must load TensorFlow the way a server has to.
            env={
                **{k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"},
                "PYTHONUNBUFFERED": "1",
            },
            start_new_session=True,
        )
    try:
        text = _read_report(output, process, time.monotonic() + 300)
        rest = text.split("REST ", 1)[1].split()[0]
        grpc = text.split("gRPC ", 1)[1].split()[0]
        examples, model = {}, None
        for line in text.splitlines():
            if line and not line.startswith(" ") and ": version " in line:
                model = line.split(":", 1)[0]
            elif line.startswith("  predict:"):
                examples[model] = shlex.split(line.removeprefix("  predict:"))
        yield Served(process, output, rest, grpc, examples)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            process.wait(timeout=60)


def test_it_prints_urls_on_loopback_and_one_example_per_model(served: Served) -> None:
    assert served.rest.startswith("http://127.0.0.1:") and served.grpc.startswith("127.0.0.1:")
    assert "on 127.0.0.1 (this machine only)" in served.output.read_text()
    models = {HALF_PLUS_THREE, "mobilenet_v3_small", "sentiment", "toy_module", "two_in_two_out"}
    assert set(served.examples) == models
    for model, command in served.examples.items():
        assert command[:2] == ["curl", "-d"], model
        data, url = command[2], command[3]
        body = Path(data[1:]).read_bytes() if data.startswith("@") else data.encode()
        answer = httpx.post(url, content=body, timeout=60)
        assert answer.status_code == 200, (model, answer.text[:500])
        assert "predictions" in answer.json() or "outputs" in answer.json()
    # MobileNetV3Small without an input_shape declares [-1, -1, -1, 3]: the unknown image size
    # gets FREE_DIMENSION, and the body, too long for a command line, goes to a file.
    assert served.examples["mobilenet_v3_small"][2].startswith("@")
    mobilenet = json.loads(Path(served.examples["mobilenet_v3_small"][2][1:]).read_text())
    assert np.asarray(mobilenet["instances"]).shape == (1, FREE_DIMENSION, FREE_DIMENSION, 3)
    # The TF1 graph declares no shape: one value per row, not a scalar.
    assert json.loads(served.examples[HALF_PLUS_THREE][2]) == {"instances": [1.0]}


def test_tf_servings_documented_requests(served: Served) -> None:
    # api_rest.md, on its own model name.
    base = f"{served.rest}/v1/models/{HALF_PLUS_THREE}"
    answer = httpx.post(f"{base}:predict", json={"instances": [1.0, 2.0, 5.0]}, timeout=30)
    assert answer.json() == {"predictions": [3.5, 4.0, 5.5]}
    body = {"signature_name": "tensorflow/serving/regress", "examples": [{"x": 1.0}, {"x": 2.0}]}
    assert httpx.post(f"{base}:regress", json=body, timeout=30).json() == {"results": [3.5, 4.0]}
    status = httpx.get(base, timeout=30).json()["model_version_status"]
    assert [(s["version"], s["state"]) for s in status] == [("123", "AVAILABLE")]
    # Keras 3 names: the text model's input after its keras.Input, the output output_0.
    reviews = {"instances": ["great movie", "awful awful movie"]}
    answer = httpx.post(f"{served.rest}/v1/models/sentiment:predict", json=reviews, timeout=30)
    assert np.asarray(answer.json()["predictions"]).shape == (2, 1)
    rows = {"instances": [{"features": [1, 2, 3], "extra": [4, 5]}]}
    answer = httpx.post(f"{served.rest}/v1/models/two_in_two_out:predict", json=rows, timeout=30)
    (row,) = answer.json()["predictions"]
    assert set(row) == {"score", "probs"} and abs(sum(row["probs"]) - 1) < 1e-5


def test_tf_servings_grpc_stubs_as_its_example_clients_use_them(served: Served) -> None:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    metadata = httpx.get(f"{served.rest}/v1/models/mobilenet_v3_small/metadata", timeout=30)
    signature = metadata.json()["metadata"]["signature_def"]["signature_def"]["serving_default"]
    (name,) = signature["inputs"]  # keras_tensor_<n>: Keras 3 names the input after its tensor
    (output,) = signature["outputs"]
    with grpc.insecure_channel(served.grpc) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "mobilenet_v3_small"
        request.model_spec.signature_name = "serving_default"
        request.inputs[name].CopyFrom(tf.make_tensor_proto(np.zeros((2, 224, 224, 3), np.float32)))
        scores = tf.make_ndarray(stub.Predict(request, timeout=60).outputs[output])
    assert scores.shape == (2, 1000)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-4)


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_the_client_takes_an_unknown_shape_as_unknown(served: Served, tmp_path, protocol) -> None:
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"instances": [1.0, 2.0]}))
    where = ["--rest", served.rest] if protocol == "rest" else ["--grpc", served.grpc]
    answer = subprocess.run(
        [sys.executable, "-m", "serving.client", "predict", "--model", HALF_PLUS_THREE, *where,
         "--json", "--inputs-json", str(request)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["outputs"] == {"y": [3.5, 4.0]}


def test_sigint_stops_it_cleanly_and_removes_its_files(served: Served) -> None:
    written = Path(served.examples["mobilenet_v3_small"][2][1:])
    assert written.is_file()
    os.killpg(served.process.pid, signal.SIGINT)
    assert served.process.wait(timeout=60) == 0
    assert not written.parent.exists()


# --- arguments: refused before anything starts ------------------------------------------------


def test_directories_are_checked_before_tensorflow_starts(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such directory"):
        find_models([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"holds no version directory.*\(1/, 2/, \.\.\.\)"):
        find_models([tmp_path / "empty"])
    version = tmp_path / "half_plus_two" / "00000123"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"")
    with pytest.raises(UsageError, match=r"is a version directory .* give the model directory"):
        find_models([version])
    (tmp_path / "other" / "half_plus_two" / "1").mkdir(parents=True)
    with pytest.raises(UsageError, match="two directories are named 'half_plus_two'"):
        find_models([tmp_path / "half_plus_two", tmp_path / "other" / "half_plus_two"])
    (model,) = find_models([tmp_path / "half_plus_two"])
    assert (model.name, model.versions) == ("half_plus_two", (123,))


def test_the_command_exits_2_naming_the_directory(tmp_path: Path) -> None:
    answer = subprocess.run(
        [sys.executable, "-m", "devtools.serve", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert answer.returncode == 2
    assert f"error: {tmp_path} holds no version directory" in answer.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--port=70000"], "is not a port"), (["--rest_api_port", "x"], "not a port number")],
)
def test_ports_are_tf_servings_flags(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["DIR", *argv])
    assert caught.value.code == 2 and message in capsys.readouterr().err
    defaults = build_parser().parse_args(["DIR"])
    assert (defaults.port, defaults.rest_api_port, defaults.host) == (8500, 8501, "127.0.0.1")
