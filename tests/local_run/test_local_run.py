"""The end-to-end local run: the README's first command, on a quick training budget."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.local_run import parse_args

REPO = Path(__file__).resolve().parents[2]
QUICK = ["--epochs", "1", "--limit", "600", "--load-seconds", "1", "--no-synth"]


def _run(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devtools.local_run", "--workdir", str(workdir), *args],
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# Two whole runs (the second reuses both models' exports) on a shared 2-core machine: longer than
# the suite's default 300 s budget per test, bounded by each run's own 600 s subprocess timeout.
@pytest.mark.timeout(900)
def test_runs_end_to_end_twice_with_a_hot_swap_and_no_failed_request(tmp_path: Path) -> None:
    first = _run(tmp_path, *QUICK, "--min-accuracy", "0")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = first.stdout
    assert "version 1: trained" in out and "version 2: trained" in out
    assert "published version 1 to s3://local-models/models/mnist/" in out
    assert "version 1 AVAILABLE" in out
    assert "[5/8 predict] REST: 90 held-out digits" in out
    assert "[5/8 predict] gRPC: 90 held-out digits" in out
    # The second model, beside mnist: its own publish, sync agent and version, one models.config.
    assert "diabetes version 1: trained" in out
    assert "published diabetes version 1 to s3://local-models/models/" in out
    assert "diabetes version 1 AVAILABLE beside mnist" in out
    assert "[5/8 predict] REST: diabetes, 89 held-out patients" in out
    assert "[5/8 predict] gRPC: diabetes, 89 held-out patients" in out
    assert (tmp_path / "serving" / "models" / "diabetes" / "1" / "saved_model.pb").is_file()
    assert (tmp_path / "logs" / "sync-diabetes.log").is_file()
    assert "label canary -> version 2, stable stays on version 1" in out
    assert "gRPC version 2:" in out and " 0 failed" in out
    assert "all processes stopped, no ports left open" in out
    assert (tmp_path / "serving" / "models" / "mnist" / "2" / "saved_model.pb").is_file()
    assert (tmp_path / "logs" / "server.log").is_file()

    again = _run(tmp_path, *QUICK, "--min-accuracy", "0")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "version 1: reused (inputs unchanged)" in again.stdout
    assert "version 2: reused (inputs unchanged)" in again.stdout
    assert "diabetes version 1: reused (inputs unchanged)" in again.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--concurrency", "0"], "--load-seconds and --concurrency must be positive"),
        (["--load-seconds", "-1"], "--load-seconds and --concurrency must be positive"),
        (["--epochs", "0"], "--epochs must be positive"),
    ],
)
def test_bad_flags_are_refused(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
