"""Every command a user runs answers --help (exit 0, usage on stdout, nothing done) and refuses an
unknown argument (exit 2, usage on stderr), each run as the user runs it: a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = [sys.executable, "-m"]
COMMANDS = {
    "model": [*PYTHON, "model"],
    "model train": [*PYTHON, "model", "train"],
    "model publish": [*PYTHON, "model", "publish"],
    "model samples": [*PYTHON, "model", "samples"],
    "infra.synth": [*PYTHON, "infra.synth"],
    "ops.model_labels": [*PYTHON, "ops.model_labels"],
    "infra.config_docs": [*PYTHON, "infra.config_docs"],
    "ops.preflight": [*PYTHON, "ops.preflight"],
    "ops.canary decide": [*PYTHON, "ops.canary", "decide"],
    "infra.dashboards": [*PYTHON, "infra.dashboards"],
    "devtools.canary_demo": [*PYTHON, "devtools.canary_demo"],
    "serving.client": [*PYTHON, "serving.client"],
    "serving.client status": [*PYTHON, "serving.client", "status"],
    "serving.sync": [*PYTHON, "serving.sync"],
    "serving.sync probe": [*PYTHON, "serving.sync", "probe"],
    "devtools.server": [*PYTHON, "devtools.server"],
    "devtools.bench": [*PYTHON, "devtools.bench"],
    "devtools.local_run": [*PYTHON, "devtools.local_run"],
    "policies.runner": [*PYTHON, "policies.runner"],
    "scripts/bench_sync.py": [sys.executable, "scripts/bench_sync.py"],
    "scripts/bootstrap": ["bash", "scripts/bootstrap"],
    "scripts/checkov": ["bash", "scripts/checkov"],
    "scripts/lock": ["bash", "scripts/lock"],
    "scripts/local-run": ["bash", "scripts/local-run"],
    # Installs Debian's prometheus when missing: --help must not.
    "scripts/prometheus": ["bash", "scripts/prometheus"],
    # Hands its arguments to pytest, and turns pytest's usage error (exit 4) into usage + exit 2.
    "scripts/test": ["bash", "scripts/test"],
}
UNKNOWN = "--no-such-option"


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TFSE_VERBOSE")}
    return subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


# argparse treats -h as --help; the commands that parse their own arguments are asked both ways.
OWN_PARSERS = {
    "devtools.server",
    "scripts/bootstrap",
    "scripts/checkov",
    "scripts/lock",
    "scripts/local-run",
    "scripts/prometheus",
    "scripts/test",
}


def _flags(name: str) -> tuple[str, ...]:
    return ("--help", "-h") if name in OWN_PARSERS else ("--help",)


@pytest.fixture(scope="module")
def answers() -> dict[tuple[str, str], subprocess.CompletedProcess[str]]:
    """Every command with its help flags and an unknown option, run four at a time."""
    runs = {(name, flag): [*argv, flag] for name, argv in COMMANDS.items() for flag in _flags(name)}
    runs |= {(name, UNKNOWN): [*argv, UNKNOWN] for name, argv in COMMANDS.items()}
    with ThreadPoolExecutor(4) as pool:
        return dict(zip(runs, pool.map(_run, runs.values()), strict=True))


@pytest.mark.parametrize("name", COMMANDS)
def test_help_prints_usage_and_exits_0(name: str, answers) -> None:
    for flag in _flags(name):
        answer = answers[(name, flag)]
        assert answer.returncode == 0, f"{name} {flag}: {answer.stderr[-2000:]}"
        assert "usage:" in answer.stdout.lower(), f"{name} {flag}: {answer.stdout[:500]}"
        assert "Traceback" not in answer.stderr
        assert "cuInit" not in answer.stderr  # no TensorFlow start-up noise either


@pytest.mark.parametrize("name", COMMANDS)
def test_an_unknown_option_is_refused_with_usage_and_exit_2(name: str, answers) -> None:
    answer = answers[(name, UNKNOWN)]
    assert answer.returncode == 2, f"{name}: exit {answer.returncode}: {answer.stderr[-2000:]}"
    assert "usage" in answer.stderr.lower(), f"{name}: {answer.stderr[-2000:]}"
    assert "Traceback" not in answer.stderr


def test_help_does_no_work(answers) -> None:
    # The scripts that would install, lint or resolve said only what they do.
    for name in ("scripts/bootstrap", "scripts/lock", "scripts/local-run"):
        assert "==>" not in answers[(name, "--help")].stderr
    assert "ruff" not in answers[("scripts/test", "-h")].stderr
    assert "installing" not in answers[("scripts/prometheus", "--help")].stderr
    assert "==>" not in answers[("scripts/bootstrap", UNKNOWN)].stderr
