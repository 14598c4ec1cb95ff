"""The pull-request job where the real TF Serving judges the stand-in: declared and run.

The job exports the contract models, starts the stacks' TF Serving image on them with Docker and
runs tests/contract against its URLs. There is no Docker here, so the last test runs the job's
own steps (export, wait, pytest) with the stand-in started on the exported models in the
container's place: the same scripts, the same contract tests, pointed at a URL.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts.rules import validate_image_reference
from infra.capture import REPO_ROOT
from tests.contract.models import model_configs

JOB = "tf-serving-contract"


@pytest.fixture(scope="module")
def job() -> dict[str, Any]:
    workflow = yaml.safe_load((REPO_ROOT / ".github/workflows/pull-request.yml").read_text())
    return workflow["jobs"][JOB]


def step(job: dict[str, Any], starts: str) -> dict[str, Any]:
    (found,) = [s for s in job["steps"] if s.get("name", "").startswith(starts)]
    return found


def test_the_job_serves_the_stacks_tf_serving_image(job) -> None:
    image = job["env"]["TF_SERVING_IMAGE"]
    declared = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())["config"]
    assert image == declared["servingImage"]["default"]
    assert validate_image_reference(image) == image  # a version tag or digest, never latest
    assert job["permissions"] == {"contents": "read"}
    assert job["runs-on"] == "ubuntu-24.04"


def test_models_exist_before_the_server_starts_and_are_mounted_where_the_config_says(job) -> None:
    names = [s.get("name", "") for s in job["steps"]]
    export = step(job, "python -m tests.contract.models")
    docker = step(job, "docker run")
    tests = step(job, "pytest tests/contract")
    assert names.index(export["name"]) < names.index(docker["name"]) < names.index(tests["name"])
    assert '-m tests.contract.models "$MODELS" --base-path /models' in export["run"]
    assert '--volume "$PWD/$MODELS:/models:ro" "$TF_SERVING_IMAGE"' in docker["run"]
    assert "--model_config_file=/models/models.config" in docker["run"]
    assert "--allow_version_labels_for_unavailable_models" in docker["run"]
    # Each model directory is named after a model (the wait step polls them by directory name);
    # a model with another name may share one (TF Serving loads every model before it listens).
    configs = model_configs("/models")
    names = {c.name for c in configs}
    assert all(c.base_path.removeprefix("/models/") in names for c in configs)
    assert tests["env"] == {
        "TF_SERVING_REST_URL": "http://127.0.0.1:8501",
        "TF_SERVING_GRPC_TARGET": "127.0.0.1:8500",
    }
    assert "--publish 127.0.0.1:8500:8500 --publish 127.0.0.1:8501:8501" in docker["run"]
    assert step(job, "TF Serving's log")["if"] == "always()"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_the_job_scripts_pass_shellcheck(job, tmp_path: Path) -> None:
    for number, entry in enumerate(job["steps"]):
        if "run" not in entry:
            continue
        script = tmp_path / f"step{number}.sh"
        script.write_text("#!/usr/bin/env bash\n" + entry["run"])
        result = subprocess.run(
            ["shellcheck", "--severity=warning", str(script)], capture_output=True, text=True
        )
        assert result.returncode == 0, f"{entry.get('name')}: {result.stdout}"


def run_step(script: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """A `run:` script the way GitHub runs it (bash -eo pipefail), from the repository root."""
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_jobs_steps_run_the_contract_tests_against_a_server_url(job, tmp_path: Path) -> None:
    models = tmp_path / "contract-models"
    python = sys.executable  # the steps' `.venv/bin/python`, wherever this test runs

    def steps_script(entry: dict[str, Any], **ports: int) -> str:
        text = entry["run"].replace(".venv/bin/python", python)
        for published, port in (("8501", ports["rest"]), ("8500", ports["grpc"])):
            text = text.replace(f"127.0.0.1:{published}", f"127.0.0.1:{port}")
        return text

    export = step(job, "python -m tests.contract.models")
    env = {"MODELS": str(models)}
    exported = run_step(export["run"].replace(".venv/bin/python", python), env, timeout=300)
    assert exported.returncode == 0, exported.stderr[-3000:]
    config = (models / "models.config").read_text()
    assert 'base_path: "/models/saved_model_half_plus_two_2_versions"' in config
    # In the container's place: the stand-in, reading the same config with /models mapped.
    local = models / "local.config"
    local.write_text(config.replace('"/models/', f'"{models}/'))
    ports_file = tmp_path / "ports.json"
    server = subprocess.Popen(
        [
            sys.executable, "-m", "devtools.server", "--port=-1", "--rest_api_port=-1",
            f"--port_file={ports_file}", f"--model_config_file={local}",
            "--allow_version_labels_for_unavailable_models",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not ports_file.exists():
            assert server.poll() is None, server.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the stand-in did not start"
            time.sleep(0.2)
        ports = json.loads(ports_file.read_text())
        wait = run_step(steps_script(step(job, "wait until"), **ports), env, timeout=300)
        assert wait.returncode == 0, wait.stderr[-3000:]
        tests = step(job, "pytest tests/contract")
        tests_env = {k: steps_script({"run": v}, **ports) for k, v in tests["env"].items()}
        ran = run_step(steps_script(tests, **ports), {**env, **tests_env}, timeout=540)
        assert ran.returncode == 0, ran.stdout[-5000:]
        # Every contract test ran, against the URL (the header says which server), none skipped.
        assert f"contract tests against http://127.0.0.1:{ports['rest']} and " in ran.stdout
        assert " passed" in ran.stdout and "skipped" not in ran.stdout
    finally:
        server.terminate()
        server.wait(timeout=60)
