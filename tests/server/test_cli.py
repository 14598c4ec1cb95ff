"""``python -m devtools.server``: flag parsing, and one real subprocess end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

from devtools.server.errors import ServerConfigError
from devtools.server.flags import parse_flags

ROOT = Path(__file__).resolve().parents[2]


def test_flags_use_tf_serving_syntax_and_defaults():
    options = parse_flags(
        [
            "--model_name=m",
            "--model_base_path=/models/m",
            "--enable_batching",
            "--rest_api_port=8501",
        ]
    )
    assert (options.port, options.rest_api_port, options.enable_batching) == (8500, 8501, True)
    assert options.enable_model_warmup is True  # TF Serving's default
    assert options.file_system_poll_wait_seconds == 1
    # Not TF Serving's: a development server answers this machine only unless told otherwise.
    assert options.host == "127.0.0.1"
    assert parse_flags(["--model_config_file=/c", "--host=0.0.0.0"]).host == "0.0.0.0"
    assert (
        parse_flags(["--model_config_file=/c", "--enable_model_warmup=false"]).enable_model_warmup
        is False
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model_name=m"], "no model"),
        (["--model_config_file=/c", "--model_name=m"], "either --model_config_file"),
        (["--model_config_file=/c", "8500"], "unexpected argument '8500'"),
        (["--model_config_file=/c", "--port"], "--port needs a value"),
        (["--model_config_file=/c", "--port=abc"], "expected an integer"),
        (["--model_config_file=/c", "--nope=1"], "unknown flag --nope"),
        (["--model_config_file=/c", "--enable_batching=maybe"], "expected true or false"),
        (["--model_config_file=/c", "--port=0"], "enable at least one API"),
        (["--model_config_file=/c", "--port=70000"], "--port=70000"),
        (["--model_config_file=/c", "--batching_parameters_file=/b"], "needs --enable_batching"),
    ],
)
def test_bad_flags_name_the_problem(argv, message):
    with pytest.raises(ServerConfigError, match=message):
        parse_flags(argv)


def run_cli(*args: str, **kwargs) -> subprocess.Popen:
    # Without the suite's TF_ENABLE_ONEDNN_OPTS=0 (tests/conftest.py), as a user runs it: the
    # command itself must load TensorFlow the way a server has to.
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env |= {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(
        [sys.executable, "-m", "devtools.server", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def test_cli_rejects_bad_flags_quickly():
    process = run_cli("--model_name=m")
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2  # a usage error, like every project command
    assert "no model: pass --model_name=NAME --model_base_path=DIR" in output


@pytest.mark.slow
def test_cli_serves_and_shuts_down_gracefully(tmp_path, toy_base):
    port_file = tmp_path / "ports.json"
    process = run_cli(
        "--port=-1",
        "--rest_api_port=-1",
        "--host=127.0.0.1",
        "--model_name=toy",
        f"--model_base_path={toy_base}",
        f"--port_file={port_file}",
    )
    try:
        deadline = time.monotonic() + 240  # importing TensorFlow is slow on a busy machine
        while not port_file.exists():
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        ports = json.loads(port_file.read_text())
        request = urllib.request.Request(
            f"http://127.0.0.1:{ports['rest']}/v1/models/toy:predict",
            data=b'{"instances": [1.0, 2.0]}',
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert json.loads(response.read()) == {"predictions": [2.5, 3.0]}
        with grpc.insecure_channel(f"127.0.0.1:{ports['grpc']}") as channel:
            status_request = get_model_status_pb2.GetModelStatusRequest()
            status_request.model_spec.name = "toy"
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            (status,) = stub.GetModelStatus(status_request, timeout=30).model_version_status
            assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert "Successfully loaded servable version {name: toy version: 1}" in output
    assert "Running gRPC ModelServer at 127.0.0.1:" in output
    assert "Exporting HTTP/REST API at:127.0.0.1:" in output
    assert "Server stopped" in output


def test_cli_exits_1_when_the_model_cannot_load(tmp_path):
    (tmp_path / "m" / "1").mkdir(parents=True)
    process = run_cli("--port=-1", "--model_name=m", f"--model_base_path={tmp_path / 'm'}")
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 1
    assert "1 model(s) did not become available" in output
