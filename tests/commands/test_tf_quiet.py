"""TensorFlow's GPU-probe noise stays off CPU-only machines; real errors and --verbose do not.

The real thing runs in fresh processes (the probe happens once per process): the gRPC client
command (which imports TensorFlow and probes), then in the same process a real ERROR from
TensorFlow's C++ runtime; and the client command with --verbose.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from contracts import tf_quiet

ROOT = Path(__file__).resolve().parents[2]
CPU_ONLY = not tf_quiet.has_gpu_device()
NOISE = "failed call to cuInit"
CLIENT = [sys.executable, "-m", "serving.client"]
CLIENT_ARGS = ["status", "--grpc", "127.0.0.1:9", "--timeout", "0.2", "--wait-available", "0.3"]
# `python -m serving.client ...` in-process, then a real C++ ERROR from TensorFlow after the probe
# (PrintV2 to the ERROR log).
CLIENT_THEN_REAL_ERROR = f"""
import sys
import tensorflow as tf
from serving.client.__main__ import main
print("client exit", main({CLIENT_ARGS!r}), file=sys.stderr)
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
def runs() -> dict[str, subprocess.CompletedProcess[str]]:
    jobs = {
        "client, real error": ([sys.executable, "-c", CLIENT_THEN_REAL_ERROR], {}),
        "client --verbose": ([*CLIENT, *CLIENT_ARGS, "--verbose"], {}),
    }
    with ThreadPoolExecutor(len(jobs)) as pool:
        done = pool.map(lambda job: _run(job[0], **job[1]), jobs.values())
        return dict(zip(jobs, done, strict=True))


def test_a_tensorflow_command_prints_no_probe_noise_but_real_errors(runs) -> None:
    answer = runs["client, real error"]
    assert answer.returncode == 0, answer.stderr
    assert "client exit 4" in answer.stderr, answer.stderr
    assert (
        "connection refused (cannot reach 127.0.0.1:9" in answer.stderr
    )  # what the user needs is there
    assert NOISE not in answer.stderr
    assert re.search(r"\] a real TensorFlow error$", answer.stderr, re.M), answer.stderr


@pytest.mark.skipif(not CPU_ONLY, reason="a GPU machine has no probe noise to bring back")
def test_verbose_brings_the_full_log_back(runs) -> None:
    assert NOISE in runs["client --verbose"].stderr


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
