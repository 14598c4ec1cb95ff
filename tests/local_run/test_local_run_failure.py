"""The local run stops at a failed step, naming the step and the log (kept apart from the
end-to-end test so the two heavy tests can run on different test workers)."""

from __future__ import annotations

from pathlib import Path

from tests.local_run.test_local_run import QUICK, _run


def test_a_failed_step_names_the_step_and_the_log(tmp_path: Path) -> None:
    result = _run(tmp_path, *QUICK, "--min-accuracy", "0.999")
    assert result.returncode == 1
    assert "FAILED at step 2/8 train" in result.stderr
    assert f"read the log: {tmp_path / 'logs' / 'train-1.log'}" in result.stderr
    assert not (tmp_path / "exports" / "mnist" / "1").exists()
