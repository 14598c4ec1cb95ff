"""The Python embedded in model.yml, run for real: next version from a (moto) bucket, the gate."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def step_script(step_id: str) -> str:
    """The `python - ... <<'PY'` heredoc of the model workflow's step `step_id`."""
    workflow = yaml.safe_load((ROOT / ".github/workflows/model.yml").read_text())
    (step,) = [s for s in workflow["jobs"]["publish"]["steps"] if s.get("id") == step_id]
    match = re.search(r"<<'PY'[^\n]*\n(.*?)\nPY\n", step["run"], re.DOTALL)
    assert match, f"no PY heredoc in step {step_id}"
    return match.group(1)


def run_script(
    script: str, *args: str, cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-", *args],
        input=script,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_next_version_is_one_above_every_version_directory(
    s3, bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    script = step_script("target")
    env = {"AWS_ENDPOINT_URL_S3": moto_endpoint}
    store = f"s3://{bucket}/models"
    first = run_script(script, store, "mnist", cwd=tmp_path, env=env)
    assert (first.returncode, first.stdout) == (0, "1\n"), first.stderr
    for key in (
        "models/mnist/1/manifest.json",
        "models/mnist/2/saved_model.pb",  # uncommitted: still a taken version number
        "models/mnist/.staging/9-abc/saved_model.pb",  # staging never counts
        "models/mnistic/40/manifest.json",  # another model with a common prefix
        "models/mnist/notes.txt",
    ):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    result = run_script(script, store, "mnist", cwd=tmp_path, env=env)
    assert (result.returncode, result.stdout) == (0, "3\n"), result.stderr


def write_metrics(cwd: Path, accuracy: float) -> None:
    reports = cwd / "build/model/mnist/reports/3"
    reports.mkdir(parents=True)
    (reports / "metrics.json").write_text(json.dumps({"test": {"accuracy": accuracy}}))


def test_gate_reports_the_accuracy(tmp_path: Path) -> None:
    write_metrics(tmp_path, 0.9812)
    output = tmp_path / "github_output"
    result = run_script(
        step_script("gate"), "mnist", "3", "0.97", cwd=tmp_path, env={"GITHUB_OUTPUT": str(output)}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "### mnist v3: test accuracy 0.9812 (gate 0.97)\n"
    assert output.read_text() == "accuracy=0.9812\n"


def test_gate_refuses_a_weak_or_missing_model(tmp_path: Path) -> None:
    output = tmp_path / "github_output"
    env = {"GITHUB_OUTPUT": str(output)}
    missing = run_script(step_script("gate"), "mnist", "3", "0.97", cwd=tmp_path, env=env)
    assert missing.returncode == 1
    assert "no metrics.json for build/model/mnist/3" in missing.stderr
    write_metrics(tmp_path, 0.95)
    weak = run_script(step_script("gate"), "mnist", "3", "0.97", cwd=tmp_path, env=env)
    assert weak.returncode == 1
    assert "test accuracy 0.9500 is below the gate 0.97" in weak.stderr
    assert not output.exists()
