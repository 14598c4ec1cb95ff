"""`python -m serving.sync --model NAME` refuses a name no publish can write (exit 2, the rule in
the message, nothing created) instead of polling the store for it for ever. Run as the user and
the init container run it: a fresh process, `--once`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["Bad_Name", "mnist.v2", "mnist-", "m" * 41])
def test_an_invalid_model_name_is_a_usage_error(tmp_path: Path, name: str) -> None:
    dest = tmp_path / "models"
    argv = ["--source", "s3://local-models/models", "--dest", str(dest), "--once"]
    answer = subprocess.run(
        [sys.executable, "-m", "serving.sync", *argv, "--model", "mnist", "--model", name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert answer.returncode == 2, answer.stderr
    assert f"argument --model: invalid model name {name!r}: use 1-40 lowercase" in answer.stderr
    assert "usage:" in answer.stderr and "Traceback" not in answer.stderr
    assert not dest.exists()
