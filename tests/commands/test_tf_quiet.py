"""TensorFlow's GPU-probe noise stays off CPU-only machines; real errors and --verbose do not.

The real thing runs in fresh processes (the probe happens once per process): the local server
(which imports TensorFlow and probes) stopping on a bad models.config, then in the same process a
real ERROR from TensorFlow's C++ runtime; and the same server run with TFSE_VERBOSE=1.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from model import tf_quiet

ROOT = Path(__file__).resolve().parents[2]
CPU_ONLY = not tf_quiet.has_gpu_device()
NOISE = "failed call to cuInit"
SERVER = [sys.executable, "-m", "devtools.server"]
# `python -m devtools.server ...` in-process (it probes the devices, then refuses a model without
# a platform: exit 1), then a real C++ ERROR from TensorFlow (PrintV2 to the ERROR log).
SERVER_THEN_REAL_ERROR = """
import sys
from devtools.server.__main__ import main
print("server exit", main(sys.argv[1:]), file=sys.stderr)
import tensorflow as tf
tf.raw_ops.PrintV2(input="a real TensorFlow error", output_stream="log(error)")
"""


def _run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TFSE_VERBOSE")
    }
    return subprocess.run(
        argv, cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=180
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    config = tmp_path_factory.mktemp("tf_quiet") / "models.config"
    config.write_text('model_config_list { config { name: "m" base_path: "/m" } }')
    args = [f"--model_config_file={config}", "--port=0", "--rest_api_port=-1"]
    jobs = {
        "server, real error": ([sys.executable, "-c", SERVER_THEN_REAL_ERROR, *args], {}),
        "server, verbose": ([*SERVER, *args], {"TFSE_VERBOSE": "1"}),
    }
    with ThreadPoolExecutor(len(jobs)) as pool:
        done = pool.map(lambda job: _run(job[0], **job[1]), jobs.values())
        return dict(zip(jobs, done, strict=True))


def test_a_tensorflow_command_prints_no_probe_noise_but_real_errors(runs) -> None:
    answer = runs["server, real error"]
    assert answer.returncode == 0, answer.stderr
    assert "server exit 1" in answer.stderr, answer.stderr
    assert "model 'm': model_platform is empty" in answer.stderr  # what the user needs is there
    assert NOISE not in answer.stderr
    assert re.search(r"\] a real TensorFlow error$", answer.stderr, re.M), answer.stderr


@pytest.mark.skipif(not CPU_ONLY, reason="a GPU machine has no probe noise to bring back")
def test_verbose_brings_the_full_log_back(runs) -> None:
    assert NOISE in runs["server, verbose"].stderr


def test_only_the_matching_lines_are_dropped_from_file_descriptor_2(capfd) -> None:
    with tf_quiet.drop_stderr_lines(tf_quiet.PROBE_NOISE):
        os.write(2, b"E cuda_platform.cc:51] failed call to cuInit: UNKNOWN ERROR (303)\n")
        os.write(2, b"E something real went wrong\n")
    assert capfd.readouterr().err == "E something real went wrong\n"


def test_a_gpu_device_node_keeps_the_probe_as_is(tmp_path: Path, capfd, monkeypatch) -> None:
    monkeypatch.setattr(tf_quiet, "_probed", False)
    (tmp_path / "nvidia0").touch()
    tf_quiet.probe_devices(lambda: os.write(2, b"failed call to cuInit\n"), dev=tmp_path)
    assert capfd.readouterr().err == "failed call to cuInit\n"  # a real fault on a GPU machine
    tf_quiet.probe_devices(lambda: os.write(2, b"again\n"), dev=tmp_path)
    assert capfd.readouterr().err == ""  # once per process
