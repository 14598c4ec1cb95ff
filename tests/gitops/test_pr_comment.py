"""The pull-request workflow's synth comment script, run for real under node with a fake GitHub.

actions/github-script runs the script as the body of an async function given `require`,
`github` and `context`; the harness below does the same, with a GitHub client that records its
calls and artifacts laid out as actions/download-artifact (pattern: synth-*) writes them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "pull-request.yml"
MARKER = "<!-- synth-plan -->"

HARNESS = r"""
const fs = require("fs");
const [scriptPath, existingPath] = process.argv.slice(2);
const script = fs.readFileSync(scriptPath, "utf8");
const existing = JSON.parse(fs.readFileSync(existingPath, "utf8"));
const calls = [];
const github = {
  paginate: async (method, args) => { calls.push(["list", args]); return existing; },
  rest: { issues: {
    listComments: "listComments",
    updateComment: async (args) => { calls.push(["update", args]); },
    createComment: async (args) => { calls.push(["create", args]); },
  } },
};
const context = {
  sha: "0123456789abcdef", repo: { owner: "org", repo: "infra" },
  payload: { pull_request: { number: 42 } },
};
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
new AsyncFunction("require", "github", "context", script)(require, github, context)
  .then(() => console.log(JSON.stringify(calls)))
  .catch((err) => { console.error(err); process.exit(1); });
"""

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


def comment_step() -> dict[str, Any]:
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    (step,) = [s for s in jobs["comment"]["steps"] if "github-script" in s.get("uses", "")]
    return step


def run_script(tmp_path: Path, existing: list[dict[str, Any]]) -> list[list[Any]]:
    step = comment_step()
    (tmp_path / "script.js").write_text(step["with"]["script"])
    (tmp_path / "existing.json").write_text(json.dumps(existing))
    (tmp_path / "harness.js").write_text(HARNESS)
    env = {"PATH": "/usr/bin:/bin", "STACKS": step["env"]["STACKS"], "RUN_URL": "https://run/1"}
    result = subprocess.run(
        ["node", "harness.js", "script.js", "existing.json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def write_artifacts(tmp_path: Path, summaries: dict[str, str], stderr: dict[str, str]) -> None:
    for stack, text in summaries.items():
        path = tmp_path / "synth" / f"synth-{stack}" / "synth" / stack / "summary.md"
        path.parent.mkdir(parents=True)
        path.write_text(text)
    for stack, text in stderr.items():
        path = tmp_path / "synth" / f"synth-{stack}" / f"synth-{stack}.stderr"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_one_new_comment_holds_every_stack(tmp_path: Path) -> None:
    write_artifacts(
        tmp_path,
        {"dev": "### Changes to `dev`\n2 updates\n", "prod": "### Changes to `prod`\nnone\n"},
        {},
    )
    calls = run_script(tmp_path, existing=[])
    assert [c[0] for c in calls] == ["list", "create"]
    body = calls[1][1]["body"]
    assert body.startswith(MARKER)
    assert body.index("Changes to `dev`") < body.index("Changes to `prod`")
    assert "commit 0123456" in body and "https://run/1" in body
    assert calls[1][1]["issue_number"] == 42


def test_the_existing_comment_is_edited_and_a_failed_stack_shows_its_error(
    tmp_path: Path,
) -> None:
    write_artifacts(
        tmp_path,
        {"dev": "### Changes to `dev`\n"},
        {"prod": "tfserving-eks:minReplicas: -1 is out of range\n"},
    )
    existing = [
        {"id": 7, "user": {"type": "User"}, "body": f"{MARKER} quoted by a person"},
        {"id": 9, "user": {"type": "Bot"}, "body": f"{MARKER}\nold plan"},
    ]
    calls = run_script(tmp_path, existing)
    assert [c[0] for c in calls] == ["list", "update"]
    assert calls[1][1]["comment_id"] == 9
    body = calls[1][1]["body"]
    assert "### synth `prod` failed" in body
    assert "minReplicas: -1 is out of range" in body


def test_a_huge_plan_is_cut_to_fit_githubs_limit(tmp_path: Path) -> None:
    write_artifacts(tmp_path, {"dev": "x" * 70_000, "prod": "y" * 70_000}, {})
    body = run_script(tmp_path, existing=[])[1][1]["body"]
    assert len(body) < 65_536
    assert "truncated; see the synth-dev artifact" in body
    assert "truncated; see the synth-prod artifact" in body


def test_each_stacks_cost_and_quota_section_survives_the_cut(tmp_path: Path) -> None:
    # synth puts the short "Cost and quota" section right after the headline, so a plan cut to
    # fit GitHub's limit still says what the change costs; the diff details are what gets cut.
    from infra.synth_report import comment_marker

    def summary(stack: str) -> str:
        return (
            f"{comment_marker(stack)}\n### ✅ synth `{stack}`: clean\n\n#### Cost and quota\n\n"
            f"| eu-west-1, USD | idle |\n|---|--:|\n| per month | $1 |\n\n"
            + "#### Changes against the base branch\n"
            + "- 🔄 **update** x\n" * 5_000
        )

    write_artifacts(tmp_path, {"dev": summary("dev"), "prod": summary("prod")}, {})
    body = run_script(tmp_path, existing=[])[1][1]["body"]
    assert len(body) < 65_536
    for stack in ("dev", "prod"):
        section = body.split(comment_marker(stack))[1]
        assert "#### Cost and quota" in section.split("#### Changes against the base branch")[0]
        assert f"truncated; see the synth-{stack} artifact" in section
