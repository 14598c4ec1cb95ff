"""`python -m devtools.bench --export` refuses what is not a model directory with exit 2 and a
message that names the cause and what to pass, before any work: run as the user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench(export: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devtools.bench", "--export", str(export)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("layout", "given", "message"),
    [
        ((), "missing", "--export {given} is not a directory; give a model directory DIR/<name>"),
        (
            ("mnist/1/saved_model.pb",),
            "mnist/1",
            "--export {given} is a version directory; give the model directory above it "
            "(--export {parent})",
        ),
        (("mnist/reports/x",), "mnist", "no version directory (1, 2, ...) under {given}"),
    ],
)
def test_a_wrong_export_is_refused_with_the_cause_and_the_fix(
    tmp_path: Path, layout: tuple[str, ...], given: str, message: str
) -> None:
    for relative in layout:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"")
    export = tmp_path / given
    answer = _bench(export)
    assert answer.returncode == 2, answer.stderr
    assert message.format(given=export, parent=export.parent) in answer.stderr
    assert "Traceback" not in answer.stderr
    assert answer.stdout == ""
