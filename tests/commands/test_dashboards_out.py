"""`python -m infra.dashboards --out DIR` writes the dashboard and prints its path; an --out it
cannot write into (here: an existing file) exits 1 with the path and the cause, no traceback,
and leaves that file as it was. Run as the user runs it: a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _dashboards(out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.dashboards", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_writes_the_dashboard_and_prints_its_path(tmp_path: Path) -> None:
    answer = _dashboards(tmp_path / "dash")
    assert answer.returncode == 0, answer.stderr
    written = Path(answer.stdout.strip())
    assert written.parent == tmp_path / "dash"
    assert json.loads(written.read_text())["title"]


def test_an_out_that_is_a_file_is_refused_by_name(tmp_path: Path) -> None:
    taken = tmp_path / "not-a-directory"
    taken.write_text("keep me")
    answer = _dashboards(taken)
    assert answer.returncode == 1, answer.stderr
    assert f"error: cannot write the dashboard into --out {taken}: " in answer.stderr
    assert "Traceback" not in answer.stderr
    assert taken.read_text() == "keep me"
