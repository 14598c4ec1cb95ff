"""The client against the real local server (a subprocess over the tiny MNIST-signature model).

REST and gRPC must agree with each other and with the model run in-process, and report errors
with TF Serving's codes.
"""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from serving.client import RestClient, ServerError, VersionStatus
from serving.client.__main__ import main
from serving.client.grpc_client import GrpcClient


@pytest.fixture(scope="module")
def clients(local_server):
    server, name = local_server
    with (
        RestClient(server.rest_url, timeout=30) as rest,
        GrpcClient(server.grpc_target, timeout=30) as grpc_client,
    ):
        yield {"rest": rest, "grpc": grpc_client}, name


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, size=(5, 28, 28, 1)).astype(np.float32)


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_predict_matches_the_model_in_process(clients, batch, tiny_model_outputs, protocol) -> None:
    by_protocol, name = clients
    prediction = by_protocol[protocol].predict(name, batch)
    expected = tiny_model_outputs(batch)
    np.testing.assert_array_equal(prediction.classes, expected["classes"])
    np.testing.assert_allclose(prediction.probabilities, expected["probabilities"], rtol=1e-5)
    assert prediction.model_version == (1 if protocol == "grpc" else None)


def test_predict_raw_agrees_across_protocols(clients, batch) -> None:
    by_protocol, name = clients
    rest = by_protocol["rest"].predict_raw(name, {"images": batch}, version=1)
    grpc_outputs = by_protocol["grpc"].predict_raw(name, {"images": batch}, version=1)
    assert sorted(rest) == sorted(grpc_outputs) == ["classes", "probabilities"]
    np.testing.assert_array_equal(rest["classes"], grpc_outputs["classes"])
    np.testing.assert_allclose(rest["probabilities"], grpc_outputs["probabilities"], rtol=1e-5)


def test_status_and_metadata_agree_across_protocols(clients) -> None:
    by_protocol, name = clients
    expected = [VersionStatus(1, "AVAILABLE", "OK", "")]
    assert by_protocol["rest"].status(name) == expected
    assert by_protocol["grpc"].status(name, version=1) == expected
    rest_meta = by_protocol["rest"].metadata(name)
    assert rest_meta == by_protocol["grpc"].metadata(name)
    signature = rest_meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sorted(signature["inputs"]) == ["images"]
    assert sorted(signature["outputs"]) == ["classes", "probabilities"]


@pytest.mark.parametrize(("protocol", "status"), [("rest", 404), ("grpc", "NOT_FOUND")])
def test_unknown_model_and_version_are_not_found(clients, batch, protocol, status) -> None:
    by_protocol, name = clients
    client = by_protocol[protocol]
    with pytest.raises(ServerError) as unknown_model:
        client.predict("no-such-model", batch[:1])
    assert unknown_model.value.status == status
    assert "no-such-model" in unknown_model.value.message
    with pytest.raises(ServerError) as unknown_version:
        client.predict(name, batch[:1], version=99)
    assert unknown_version.value.status == status


def test_cli_predicts_a_png_over_both_protocols(local_server, tmp_path, tiny_model_outputs) -> None:
    # In-process (the entry point itself runs as a subprocess in test_cli.py and below).
    server, name = local_server
    digit = (np.arange(784).reshape(28, 28) % 256).astype(np.uint8)
    Image.fromarray(digit).save(tmp_path / "digit.png")
    expected = int(tiny_model_outputs(digit.reshape(1, 28, 28, 1))["classes"][0])
    for where, served in (
        (["--rest", server.rest_url], "not reported"),
        (["--grpc", server.grpc_target], "1"),
    ):
        out, err = io.StringIO(), io.StringIO()
        argv = ["predict", "--model", name, *where, str(tmp_path / "digit.png")]
        assert main(argv, stdout=out, stderr=err) == 0, err.getvalue()
        lines = out.getvalue().splitlines()
        assert lines[0].startswith(f"model {name} (version {served}) via ")
        row = lines[2].split()
        assert row[0] == str(tmp_path / "digit.png")
        assert int(row[1]) == expected


def test_the_grpc_cli_never_imports_tensorflow(local_server, tmp_path) -> None:
    # As the user runs it, in a fresh process; -X importtime names every module imported.
    server, name = local_server
    digit = (np.arange(784).reshape(28, 28) % 256).astype(np.uint8)
    Image.fromarray(digit).save(tmp_path / "digit.png")
    np.save(tmp_path / "batch.npy", np.zeros((2, 28, 28, 1), np.float32))
    where = ["--model", name, "--grpc", server.grpc_target]
    for argv in (
        ["predict", *where, str(tmp_path / "digit.png")],
        ["predict", *where, "--input", f"images={tmp_path / 'batch.npy'}", "--json"],
        ["status", *where],
        ["metadata", *where],
    ):
        run = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "serving.client", *argv],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        imported = [line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines()]
        assert "serving.client.grpc_client" in imported
        assert [m for m in imported if m.split(".")[0] == "tensorflow"] == [], argv
