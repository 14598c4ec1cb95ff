"""The Python embedded in model.yml, run for real: next version from a (moto) bucket, the gate."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def step_script(step_id: str) -> str:
    """The `python - ... <<'PY'` heredoc of the model workflow's step `step_id`."""
    workflow = yaml.safe_load((ROOT / ".github/workflows/model.yml").read_text())
    (step,) = [s for s in workflow["jobs"]["publish"]["steps"] if s.get("id") == step_id]
    match = re.search(r"<<'PY'[^\n]*\n(.*?)\nPY\n", step["run"], re.DOTALL)
    assert match, f"no PY heredoc in step {step_id}"
    return match.group(1)


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_script(
    script: str, *args: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Result:
    """Run a step's script in this process (as `python - ARGS` would, from the current
    directory), so the project's imports are paid once for the whole file."""
    monkeypatch.setattr(sys, "argv", ["-", *args])
    capsys.readouterr()
    code, message = 0, ""
    try:
        exec(compile(script, "model.yml", "exec"), {"__name__": "__main__"})
    except SystemExit as exc:
        # sys.exit("message") prints the message to stderr and exits 1.
        code, message = (1, f"{exc.code}\n") if isinstance(exc.code, str) else (exc.code or 0, "")
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err + message)


def test_next_version_is_one_above_every_version_directory(
    s3, bucket: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    script = step_script("target")
    # boto3.client("s3") in the script reaches the loopback S3 through the standard variable.
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    store = f"s3://{bucket}/models"
    first = run_script(script, store, "mnist", monkeypatch=monkeypatch, capsys=capsys)
    assert (first.returncode, first.stdout) == (0, "1\n"), first.stderr
    for key in (
        "models/mnist/1/manifest.json",
        "models/mnist/2/saved_model.pb",  # uncommitted: still a taken version number
        "models/mnist/.staging/9-abc/saved_model.pb",  # staging never counts
        "models/mnistic/40/manifest.json",  # another model with a common prefix
        "models/mnist/notes.txt",
    ):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    result = run_script(script, store, "mnist", monkeypatch=monkeypatch, capsys=capsys)
    assert (result.returncode, result.stdout) == (0, "3\n"), result.stderr


def write_metrics(cwd: Path, metrics: dict) -> None:
    reports = cwd / "build/model/mnist/reports/3"
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "metrics.json").write_text(json.dumps(metrics))


def mnist_metrics(accuracy: float) -> dict:
    """What `model train --recipe mnist` writes, as far as the gate reads it."""
    return {"recipe": "mnist", "test": {"accuracy": accuracy}, "min_accuracy": 0.97}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "github_output"))
    return tmp_path


def test_gate_reports_the_recipes_verdict(workdir: Path, monkeypatch, capsys) -> None:
    write_metrics(workdir, mnist_metrics(0.9812))
    output = workdir / "github_output"
    gate = step_script("gate")
    result = run_script(gate, "mnist", "3", monkeypatch=monkeypatch, capsys=capsys)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "### mnist v3 (recipe mnist): test accuracy 0.9812 (gate 0.97)\n"
    assert output.read_text() == "gate=test accuracy 0.9812 (gate 0.97)\n"


def test_gate_refuses_a_weak_or_missing_model(workdir: Path, monkeypatch, capsys) -> None:
    output = workdir / "github_output"
    gate = step_script("gate")
    missing = run_script(gate, "mnist", "3", monkeypatch=monkeypatch, capsys=capsys)
    assert missing.returncode == 1
    assert "no metrics.json for build/model/mnist/3" in missing.stderr
    write_metrics(workdir, mnist_metrics(0.95))
    weak = run_script(gate, "mnist", "3", monkeypatch=monkeypatch, capsys=capsys)
    assert weak.returncode == 1
    assert "mnist v3 misses its gate: test accuracy 0.9500 (gate 0.97)" in weak.stderr
    assert not output.exists()


@pytest.mark.parametrize(
    "broken",
    [
        {"test": {"accuracy": 0.99}, "min_accuracy": 0.97},  # no recipe
        {"recipe": "nope", "test": {"accuracy": 0.99}, "min_accuracy": 0.97},
        {"recipe": "mnist", "test": {}, "min_accuracy": 0.97},  # no metric
        {"recipe": "mnist", "test": {"accuracy": 0.99}},  # no threshold
        {"recipe": "mnist", "test": {"accuracy": "high"}, "min_accuracy": 0.97},
        {"recipe": "mnist", "test": {"accuracy": float("nan")}, "min_accuracy": 0.97},
    ],
)
def test_gate_fails_closed_on_metrics_it_cannot_judge(
    workdir: Path, monkeypatch, capsys, broken: dict
) -> None:
    write_metrics(workdir, broken)
    result = run_script(step_script("gate"), "mnist", "3", monkeypatch=monkeypatch, capsys=capsys)
    assert result.returncode == 1
    assert "mnist v3" in result.stderr or "cannot be judged" in result.stderr
    assert not (workdir / "github_output").exists()
