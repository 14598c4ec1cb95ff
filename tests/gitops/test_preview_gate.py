"""The pull-request preview job's shell steps, run for real with bash as GitHub runs them
(`bash --noprofile --norc -eo pipefail`): the deploy runner is refused before any pull-request
code is checked out, and a stack whose API endpoint is private is skipped with a notice unless a
preview runner is named."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def preview_step(step_id: str) -> str:
    workflow = yaml.safe_load((ROOT / ".github/workflows/pull-request.yml").read_text())
    (step,) = [s for s in workflow["jobs"]["preview"]["steps"] if s.get("id") == step_id]
    return step["run"]


@dataclass(frozen=True)
class Step:
    returncode: int
    stdout: str
    outputs: dict[str, str]


def run_step(step_id: str, cwd: Path, **env: str) -> Step:
    script = cwd / f"{step_id}.sh"
    script.write_text(preview_step(step_id))
    output = cwd / "github_output"
    output.unlink(missing_ok=True)
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(output), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = output.read_text().splitlines() if output.exists() else []
    outputs = dict(line.split("=", 1) for line in lines)
    return Step(result.returncode, result.stdout + result.stderr, outputs)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The stack files of this repository, and `.venv/bin/python` (the step's interpreter)."""
    for path in ROOT.glob("Pulumi*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / ".venv/bin").mkdir(parents=True)
    (tmp_path / ".venv/bin/python").symlink_to(sys.executable)
    return tmp_path


def test_the_deploy_runner_is_refused_before_checkout(tmp_path: Path) -> None:
    configured = {"STACK": "prod", "PREVIEW_ROLE": "arn:aws:iam::1:role/p", "BACKEND": "s3://b"}
    deploy = "self-hosted tfserving-prod"  # the stack file's deployRunner labels
    for label in ("tfserving-prod", "self-hosted"):
        refused = run_step(
            "creds", tmp_path, PREVIEW_RUNNER=label, DEPLOY_RUNNER=deploy, **configured
        )
        assert refused.returncode == 1, label
        assert (
            "::error title=pulumi preview refused (prod)::PREVIEW_RUNNER_PROD names a label of "
            "the deploy runner (deployRunner in Pulumi.prod.yaml)" in refused.stdout
        )
        assert refused.outputs == {}
    own = run_step(
        "creds", tmp_path, PREVIEW_RUNNER="prod-preview", DEPLOY_RUNNER=deploy, **configured
    )
    assert (own.returncode, own.outputs) == (0, {"configured": "true"})
    # No preview runner (GitHub-hosted) is not a collision.
    hosted = run_step("creds", tmp_path, PREVIEW_RUNNER="", DEPLOY_RUNNER=deploy, **configured)
    assert (hosted.returncode, hosted.outputs) == (0, {"configured": "true"})
    bare = run_step("creds", tmp_path, STACK="prod", PREVIEW_ROLE="", BACKEND="s3://b")
    assert (bare.returncode, bare.outputs) == (0, {"configured": "false"})
    assert "::notice title=pulumi preview skipped (prod)::" in bare.stdout


def test_a_stack_the_hosted_runner_reaches_is_previewed_from_it(tmp_path: Path) -> None:
    step = run_step("target", tmp_path, STACK="dev", PREVIEW_RUNNER="", HOSTED_REACH="true")
    assert (step.returncode, step.outputs) == (0, {"preview": "true"}), step.stdout
    assert "::notice" not in step.stdout


def test_a_stack_it_does_not_reach_needs_a_preview_runner(tmp_path: Path) -> None:
    skipped = run_step("target", tmp_path, STACK="prod", PREVIEW_RUNNER="", HOSTED_REACH="false")
    assert (skipped.returncode, skipped.outputs) == (0, {"preview": "false"}), skipped.stdout
    assert skipped.stdout.startswith(
        "::notice title=pulumi preview skipped (prod)::The prod cluster's API endpoint does not "
        "admit GitHub-hosted runners"
    )
    assert "Set PREVIEW_RUNNER_PROD to a runner reserved for untrusted previews" in skipped.stdout
    named = run_step(
        "target", tmp_path, STACK="prod", PREVIEW_RUNNER="prod-preview", HOSTED_REACH="false"
    )
    assert named.outputs == {"preview": "true"}
