"""The local run's reuse check prints no TensorFlow GPU-probe noise on a CPU-only machine.

`scripts/local-run` asks, in its own process, whether an unchanged export can be reused
(`Recipe.reusable_export`, which validates the export and so reads its variables: that process's
first device use). Before the fix the user saw `E ... failed call to cuInit ... (303)` between
the training steps. Run the way the local run runs it: a fresh process, log level 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from model import tf_quiet
from model.train import TrainResult

from .conftest import TINY_LIMIT

ROOT = Path(__file__).resolve().parents[2]
REUSE_CHECK = """
import sys
from pathlib import Path
from model.recipes.mnist import Mnist
from model.train import RunArgs
run = RunArgs(out=Path(sys.argv[1]), limit=int(sys.argv[2]))
print("reusable:", Mnist(epochs=1).reusable_export(run))
"""


@pytest.mark.skipif(tf_quiet.has_gpu_device(), reason="on a GPU machine nothing is dropped")
def test_the_reuse_check_finds_the_export_and_prints_no_probe_noise(
    trained: TrainResult,
) -> None:
    out = trained.export_dir.parent.parent
    env = {k: v for k, v in os.environ.items() if k != "TFSE_VERBOSE"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"  # what scripts/local-run exports
    answer = subprocess.run(
        [sys.executable, "-c", REUSE_CHECK, str(out), str(TINY_LIMIT)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == f"reusable: {trained.export_dir}"
    assert "cuInit" not in answer.stderr, answer.stderr
