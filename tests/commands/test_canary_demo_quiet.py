"""`python -m devtools.canary_demo` exports its tiny models without TensorFlow's CPU-only
GPU-probe line (`failed call to cuInit ... (303)`), which used to be the first line a user saw.
The export is the demo's first TensorFlow use; it runs here in a fresh process, as in the demo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from model import tf_quiet

ROOT = Path(__file__).resolve().parents[2]
EXPORT = """
import sys
from pathlib import Path
from devtools.canary_demo import export_model
export_model(Path(sys.argv[1]), 2.0)
print("saved_model.pb" if (Path(sys.argv[1]) / "saved_model.pb").is_file() else "missing")
"""


@pytest.mark.skipif(tf_quiet.has_gpu_device(), reason="on a GPU machine nothing is dropped")
def test_the_demo_export_prints_no_probe_noise(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TFSE_VERBOSE")}
    answer = subprocess.run(
        [sys.executable, "-c", EXPORT, str(tmp_path / "steady" / "1")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == "saved_model.pb"
    assert "cuInit" not in answer.stderr, answer.stderr
