"""The GitHub Actions workflows: schema-valid, pinned, least-privilege, and covering every stack."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
PIN = re.compile(
    r"^\s*(?:-\s+)?uses:\s+(?P<action>[\w.-]+/[\w./-]+)@(?P<ref>\S+)(?:\s+#\s*(?P<tag>\S+))?\s*$"
)
SHA = re.compile(r"^[0-9a-f]{40}$")
SEMVER_TAG = re.compile(r"^v\d+\.\d+\.\d+$")
OIDC_ACTION = "aws-actions/configure-aws-credentials"
WRITE_ACTIONS = {"actions/github-script", "peter-evans/create-pull-request"}


def load_workflow(path: Path) -> dict[str, Any]:
    """Parse a workflow file; PyYAML reads the bare key `on` as the boolean True, undo that."""
    data = yaml.safe_load(path.read_text())
    if True in data:
        data["on"] = data.pop(True)
    return data


@pytest.fixture(scope="module")
def workflow_paths() -> list[Path]:
    paths = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
    assert paths, f"no workflow files under {WORKFLOWS}"
    return paths


@pytest.fixture(scope="module")
def workflows(workflow_paths: list[Path]) -> dict[str, dict[str, Any]]:
    """Every workflow by file name (e.g. ``pull-request.yml``)."""
    return {p.name: load_workflow(p) for p in workflow_paths}


@pytest.fixture(scope="module")
def stacks() -> set[str]:
    """Stack names from the ``Pulumi.<stack>.yaml`` files at the repository root."""
    found = {p.name[len("Pulumi.") : -len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml")}
    assert found, "no Pulumi.<stack>.yaml stack files at the repository root"
    return found


def check_jsonschema(*paths: Path) -> subprocess.CompletedProcess[str]:
    """Validate against GitHub's workflow schema, vendored in check-jsonschema (no network)."""
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows"]
        + [str(p) for p in paths],
        capture_output=True,
        text=True,
        timeout=120,
    )


def jobs(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return workflow["jobs"]


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job.get("steps", []) if s.get("uses", "").split("@")[0] == action]


def matrix_stacks(job: dict[str, Any]) -> set[str]:
    return set(job["strategy"]["matrix"]["stack"])


def test_workflows_match_githubs_schema(workflow_paths: list[Path]) -> None:
    result = check_jsonschema(*workflow_paths)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_a_broken_workflow(workflow_paths: list[Path], tmp_path: Path) -> None:
    # The check above must be able to fail: a misspelt job key is caught.
    text = (ROOT / ".github/workflows/pull-request.yml").read_text()
    broken = tmp_path / "broken.yml"
    broken.write_text(text.replace("    runs-on: ubuntu-24.04\n", "    runs_on: ubuntu-24.04\n", 1))
    result = check_jsonschema(broken)
    assert result.returncode == 1
    assert "runs_on" in result.stdout


def test_every_action_is_pinned_to_a_commit_sha(workflow_paths: list[Path]) -> None:
    seen: dict[str, set[tuple[str, str]]] = {}
    uses_lines = 0
    for path in workflow_paths:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "uses:" not in line.split("#")[0]:
                continue
            uses_lines += 1
            match = PIN.match(line)
            where = f"{path.name}:{number}: {line.strip()}"
            assert match, f"unparsable uses: line {where}"
            assert SHA.match(match["ref"]), f"not pinned to a full commit SHA: {where}"
            tag = match["tag"] or ""
            assert SEMVER_TAG.match(tag), f"no '# vX.Y.Z' comment: {where}"
            seen.setdefault(match["action"], set()).add((match["ref"], match["tag"]))
    assert uses_lines > 0
    # One version of each action across all workflows, so a bump is one reviewed change.
    mixed = {action: pins for action, pins in seen.items() if len(pins) > 1}
    assert not mixed, f"actions pinned to more than one commit: {mixed}"


def test_permissions_are_least_privilege(workflows: dict[str, dict[str, Any]]) -> None:
    for name, workflow in workflows.items():
        assert workflow.get("permissions") == {}, f"{name}: top-level permissions must be {{}}"
        for job_id, job in jobs(workflow).items():
            where = f"{name}:{job_id}"
            assert "permissions" in job, f"{where}: declare permissions per job"
            permissions = job["permissions"]
            assert isinstance(permissions, dict), f"{where}: permissions must be a mapping"
            assert "write-all" not in str(permissions)
            uses_oidc = bool(steps_using(job, OIDC_ACTION))
            assert (permissions.get("id-token") == "write") == uses_oidc, (
                f"{where}: id-token: write exactly when the job assumes a role with OIDC"
            )
            writes_prs = any(steps_using(job, action) for action in WRITE_ACTIONS) or any(
                s["with"].get("comment-on-pr") is True for s in steps_using(job, "pulumi/actions")
            )
            assert (permissions.get("pull-requests") == "write") == writes_prs, (
                f"{where}: pull-requests: write exactly when the job comments or opens a PR"
            )
            if uses_oidc:
                # OIDC and write access to the repository never share a job.
                assert permissions.get("contents", "none") in ("read", "none"), where
                for step in steps_using(job, OIDC_ACTION):
                    inputs = step["with"]
                    assert "role-to-assume" in inputs, where
                    assert not {"aws-access-key-id", "aws-secret-access-key"} & set(inputs), (
                        f"{where}: long-lived AWS keys are not allowed"
                    )


def test_no_long_lived_cloud_secrets(workflow_paths: list[Path]) -> None:
    for path in workflow_paths:
        text = path.read_text()
        for secret in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PULUMI_ACCESS_TOKEN"):
            assert secret not in text, f"{path.name} refers to {secret}"


def test_pull_request_covers_every_stack(
    workflows: dict[str, dict[str, Any]], stacks: set[str]
) -> None:
    pr = workflows["pull-request.yml"]
    assert "pull_request" in pr["on"]
    for job_id in ("synth", "preview"):
        assert matrix_stacks(jobs(pr)[job_id]) == stacks, f"{job_id} matrix != stack files"
    # The one comment covers every stack the synth job runs.
    (script,) = steps_using(jobs(pr)["comment"], "actions/github-script")
    assert sorted(script["env"]["STACKS"].split()) == sorted(stacks)


def test_pull_request_synth_comment_and_preview(workflows: dict[str, dict[str, Any]]) -> None:
    pr = jobs(workflows["pull-request.yml"])
    assert any("scripts/test" in s.get("run", "") for s in pr["test"]["steps"])
    synth_runs = " ".join(s.get("run", "") for s in pr["synth"]["steps"])
    assert 'python -m infra.synth --stack "$STACK"' in synth_runs
    # Forks: synth only (no comment, no preview), because they get no write token or OIDC.
    same_repo = "github.event.pull_request.head.repo.full_name == github.repository"
    assert same_repo in pr["comment"]["if"]
    assert same_repo in pr["preview"]["if"]
    assert pr["comment"]["needs"] == ["synth", "preview"]
    script = steps_using(pr["comment"], "actions/github-script")[0]["with"]["script"]
    assert '"<!-- synth-plan -->"' in script
    assert "updateComment" in script and "createComment" in script
    assert "strategy" not in pr["comment"]  # one comment for every stack, not one per stack

    preview = pr["preview"]
    (pulumi,) = steps_using(preview, "pulumi/actions")
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["policyPacks"] == "policies"
    assert pulumi["with"]["policyPackConfigs"] == "policies/config.${{ matrix.stack }}.json"
    # Without credentials the job says so visibly instead of silently doing nothing; the deploy
    # runner is refused in that first step, before any pull-request code is checked out.
    first = preview["steps"][0]
    assert "::notice" in first["run"] and "::error" in first["run"]
    assert "uses" not in first
    ids = [s.get("id") for s in preview["steps"]]
    gate = ids.index("target")
    assert all(
        "steps.creds.outputs.configured == 'true'" in s["if"]
        for s in preview["steps"][1 : gate + 1]
    )
    # Only a stack the runner can reach is previewed (tests/gitops/test_preview_gate.py).
    for step in preview["steps"][gate + 1 :]:
        assert "steps.target.outputs.preview == 'true'" in step["if"]
    assert pulumi["if"] == "steps.target.outputs.preview == 'true'"
    # The preview job holds no write right: the comment job (no cloud credential) posts the
    # preview from its artifact, in the one comment beside the synth.
    assert preview["permissions"] == {"contents": "read", "id-token": "write"}
    assert "comment-on-pr" not in pulumi["with"] and "github-token" not in pulumi["with"]
    assert pulumi["with"]["comment-on-summary"] is True
    assert pulumi["with"]["diff"] is True
    (kept,) = steps_using(preview, "actions/upload-artifact")
    assert kept["with"]["name"] == "preview-${{ matrix.stack }}"
    assert "synth/preview-${stack}/preview.txt" in script
    assert "id-token" not in pr["comment"]["permissions"]


def test_pull_request_synth_diffs_against_the_base_branch(
    workflows: dict[str, dict[str, Any]],
) -> None:
    synth = jobs(workflows["pull-request.yml"])["synth"]
    steps = synth["steps"]
    checkouts = steps_using(synth, "actions/checkout")
    (base,) = [s for s in checkouts if s.get("with", {}).get("path")]
    assert base["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    assert base["with"]["persist-credentials"] is False
    ids = [s.get("id") for s in steps]
    assert ids.index("base") < ids.index("synth")
    base_run = steps[ids.index("base")]["run"]
    assert f"cd {base['with']['path']}" in base_run and "-m infra.synth" in base_run
    assert "compare=" in base_run  # the step output the head synth reads
    head = steps[ids.index("synth")]
    assert head["env"]["BASE_PLAN"] == "${{ steps.base.outputs.compare }}"
    assert '--compare "$BASE_PLAN"' in head["run"]
    # A missing base plan is said in the comment, never shown as "no changes".
    assert "No base plan" in head["run"]


def test_pull_request_code_never_runs_on_a_deploy_runner(
    workflows: dict[str, dict[str, Any]],
) -> None:
    pr = workflows["pull-request.yml"]
    assert set(pr["on"]) == {"pull_request"}
    for job_id, job in jobs(pr).items():
        # Only the preview may leave GitHub's hosted runners, for one reserved for previews.
        assert job["runs-on"] == "ubuntu-24.04" or job_id == "preview", job_id
    preview = jobs(pr)["preview"]
    assert (
        preview["runs-on"]
        == "${{ vars[format('PREVIEW_RUNNER_{0}', matrix.stack)] || 'ubuntu-24.04' }}"
    )
    # The deploy runner's labels come from the stack file (tests/gitops/test_preview_gate.py).
    assert (
        "fromJSON(needs.stacks.outputs.stacks)[matrix.stack].runner"
        in (preview["env"]["DEPLOY_RUNNER"])
    )


def test_every_stack_has_a_policy_config(stacks: set[str]) -> None:
    for stack in stacks:
        assert (ROOT / "policies" / f"config.{stack}.json").is_file(), stack


def test_deploy_updates_every_stack_one_at_a_time(
    workflows: dict[str, dict[str, Any]], stacks: set[str]
) -> None:
    deploy = workflows["deploy.yml"]
    assert deploy["on"]["push"]["branches"] == ["main"]
    deployed = set()
    facts = jobs(deploy)["stacks"]
    assert any("python -m ops.stacks" in st.get("run", "") for st in facts["steps"])
    assert facts["permissions"] == {"contents": "read"}
    for job_id, job in jobs(deploy).items():
        if job_id == "stacks":
            continue
        stack = job["env"]["STACK"]
        deployed.add(stack)
        assert job["environment"] == stack, job_id
        # A manual dispatch may name any branch: only main is ever deployed.
        assert job["if"] == "github.ref == 'refs/heads/main'", job_id
        # The runner the stack file names (deployRunner), which settings hold to the endpoint.
        assert job["runs-on"] == f"${{{{ fromJSON(needs.stacks.outputs.stacks).{stack}.runner }}}}"
        assert job["concurrency"] == {"group": f"pulumi-{stack}", "cancel-in-progress": False}
        (pulumi,) = steps_using(job, "pulumi/actions")
        assert pulumi["with"]["command"] == "up"
        assert pulumi["with"]["stack-name"] == stack
        assert pulumi["with"]["policyPacks"] == "policies"
        assert pulumi["with"]["policyPackConfigs"] == f"policies/config.{stack}.json"
        runs = " ".join(s.get("run", "") for s in job["steps"])
        assert 'python -m infra.synth --stack "$STACK"' in runs, f"{job_id}: no synth gate"
    assert deployed == stacks
    # prod only after dev succeeded, and behind its own environment (required reviewers).
    assert jobs(deploy)["prod"]["needs"] == ["stacks", "dev"]


def test_model_pipeline_trains_gates_publishes_and_proposes_the_label(
    workflows: dict[str, dict[str, Any]],
) -> None:
    model = workflows["model.yml"]
    assert "workflow_dispatch" in model["on"]
    assert model["on"]["push"]["paths"] == ["model/**"]
    text = (ROOT / ".github/workflows/model.yml").read_text()
    for command in ("python -m model train", "python -m model publish --export"):
        assert command in text
    assert 'store="s3://$bucket/models"' in text and '--store "$STORE"' in text
    assert "python -m ops.model_labels" in text
    create_pr = "peter-evans/create-pull-request"
    # Before the label PR, the publish job (it holds the credentials) checks the version is
    # committed in the stack's store, and fails when it cannot check.
    publish = jobs(model)["publish"]
    (check,) = [s for s in publish["steps"] if "ops.model_labels" in s.get("run", "")]
    assert '--store "$STORE" --require-store-check --dry-run' in check["run"]
    names = [s.get("name", s.get("uses", "")) for s in publish["steps"]]
    assert names.index("python -m model publish") < names.index("label check against the store")
    (pr_job,) = [j for j in jobs(model).values() if steps_using(j, create_pr)]
    (create,) = steps_using(pr_job, create_pr)
    assert create["with"]["add-paths"] == "Pulumi.${{ needs.publish.outputs.stack }}.yaml"


def run_step(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """A step's `run:` script the way GitHub runs it (`bash --noprofile --norc -eo pipefail`)."""
    path = cwd / "step.sh"
    path.write_text(script)
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(path)],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_model_pipeline_trains_any_registered_recipe_gated_on_its_own_metric(
    workflows: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    from model.recipes import recipes

    model = workflows["model.yml"]
    inputs = model["on"]["workflow_dispatch"]["inputs"]
    # Free text checked against the registry: a new recipe needs no edit of this workflow.
    assert inputs["recipe"] == {**inputs["recipe"], "type": "string", "default": "mnist"}
    assert inputs["threshold"]["default"] == "" and inputs["model"]["default"] == ""
    publish = jobs(model)["publish"]
    assert publish["env"]["RECIPE"] == "${{ inputs.recipe || 'mnist' }}"
    assert publish["env"]["MODEL"] == "${{ inputs.model || inputs.recipe || 'mnist' }}"
    steps = {s.get("id", s.get("name")): s for s in publish["steps"]}
    runs = "\n".join(s.get("run", "") for s in publish["steps"])
    # No step names a recipe's gate flag: each comes from the recipe's declaration.
    assert [r.gate.flag for r in recipes().values() if r.gate.flag in runs] == []

    # `.venv/bin/python` of the steps is this interpreter (the project is installed in it).
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    output = tmp_path / "github_output"
    for name, recipe in recipes().items():
        output.write_text("")
        step = run_step(steps["recipe"]["run"], tmp_path, RECIPE=name, GITHUB_OUTPUT=str(output))
        assert step.returncode == 0, step.stdout + step.stderr
        assert output.read_text().splitlines() == [f"name={name}", f"flag={recipe.gate.flag}"]
    step = run_step(steps["recipe"]["run"], tmp_path, RECIPE="mnist2", GITHUB_OUTPUT=str(output))
    assert step.returncode == 1
    choose = "::error title=unknown recipe::the recipe input names no recipe; choose one of: "
    assert choose + " ".join(recipes()) in step.stdout

    # The gate report re-reads metrics.json and judges it with the recipe's own gate.
    report = tmp_path / "build" / "model" / "diabetes" / "reports" / "3"
    report.mkdir(parents=True)
    summary = tmp_path / "summary.md"
    env = {"MODEL": "diabetes", "VERSION": "3", "GITHUB_STEP_SUMMARY": str(summary)}
    verdicts = {}
    for mae in (40.0, 60.0):
        metrics = {"recipe": "diabetes", "test": {"mae": mae, "baseline_mae": 63.5, "r2": 0.5}}
        (report / "metrics.json").write_text(json.dumps({**metrics, "max_mae": 50.0}))
        output.write_text("")
        step = run_step(steps["gate"]["run"], tmp_path, GITHUB_OUTPUT=str(output), **env)
        verdicts[mae] = (step.returncode, output.read_text() + step.stderr)
    verdict = "test MAE 40.00 (gate 50.0; predicting the mean: 63.50), R² 0.500"
    assert verdicts[40.0] == (0, f"gate={verdict}\n")
    assert f"### diabetes v3 (recipe diabetes): {verdict}" in summary.read_text()
    assert verdicts[60.0][0] == 1
    assert "diabetes v3 misses its gate: test MAE 60.00 (gate 50.0;" in verdicts[60.0][1]

    # Training gets the threshold with the recipe's own flag, and only when one was given.
    python.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > argv.txt\n')  # records its command line
    train = steps["python -m model train"]["run"]
    expected = ["-m", "model", "train", "--recipe", "diabetes", "--out", "build/model"]
    expected += ["--name", "sugar", "--version", "7"]
    for threshold, gate in (("", []), ("45", ["--max-mae", "45"])):
        env = {"RECIPE": "diabetes", "MODEL": "sugar", "VERSION": "7", "GATE_FLAG": "--max-mae"}
        step = run_step(train, tmp_path, THRESHOLD=threshold, **env)
        assert step.returncode == 0, step.stderr
        assert (tmp_path / "argv.txt").read_text().splitlines() == expected + gate


def test_canary_gate_runs_on_a_schedule_and_proposes_the_move(
    workflows: dict[str, dict[str, Any]],
) -> None:
    canary = workflows["canary.yml"]
    assert canary["on"]["schedule"] and "workflow_dispatch" in canary["on"]
    text = (ROOT / ".github/workflows/canary.yml").read_text()
    assert '"-m", "ops.canary", "decide", "--prometheus-url"' in text
    decide, propose = jobs(canary)["decide"], jobs(canary)["propose"]
    # Every stack with a canary on schedule, each in its own environment, none when none has.
    assert decide["strategy"]["matrix"]["stack"] == "${{ fromJSON(needs.stacks.outputs.judge) }}"
    assert decide["environment"] == "${{ matrix.stack }}"
    assert decide["if"] == "needs.stacks.outputs.judge != '[]'"
    pick = next(s for s in jobs(canary)["stacks"]["steps"] if s.get("id") == "pick")
    assert "python -m ops.stacks" in pick["run"] and 'f["canaries"]' in pick["run"]
    assert propose["env"]["STACK"] == "${{ matrix.move.stack }}"
    # ... which each move carries from the decide job of its stack.
    assert '"stack": stack, "model": model.name, **move' in text
    # The gate holds the query role; the pull request job holds write access and no role.
    assert steps_using(decide, OIDC_ACTION) and not steps_using(propose, OIDC_ACTION)
    (move,) = [s for s in propose["steps"] if "ops.model_labels" in s.get("run", "")]
    # The decision is applied by the label mover: promote with the label and share 100,
    # rollback with share 0 (ops.model_labels.gate_move).
    assert '--share "$SHARE"' in move["run"]
    assert '--label "$LABEL" --version "$VERSION"' in move["run"]
    assert "gate_move(decision" in text and "model.canary_version is None" in text
    (create,) = steps_using(propose, "peter-evans/create-pull-request")
    assert create["with"]["add-paths"] == "Pulumi.${{ env.STACK }}.yaml"


def test_load_workflow_restores_the_on_key(tmp_path: Path) -> None:
    path = tmp_path / "w.yml"
    path.write_text("on: push\njobs: {}\n")
    assert load_workflow(path)["on"] == "push"


@pytest.mark.parametrize(
    "line",
    [
        "      - uses: actions/checkout@v4",
        "      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1",
        "      - uses: actions/checkout@3d3c42e # v7.0.1",
    ],
)
def test_pin_pattern_rejects_unpinned_lines(line: str) -> None:
    match = PIN.match(line)
    assert match is not None
    assert not (SHA.match(match["ref"]) and match["tag"] and SEMVER_TAG.match(match["tag"]))
