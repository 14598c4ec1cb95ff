"""checkov finds nothing unexplained in any stack's rendered Kubernetes manifests.

``python -m infra.synth`` renders every object a stack declares; checkov (its own venv,
scripts/checkov: its pins conflict with the project's) runs its Kubernetes checks on them. A
finding must be fixed in the component, or skipped in the manifest itself with checkov's
annotation (``checkov.io/skipN: CHECK=reason``, `infra.components.k8s_common.checkov_skips`)
whose reason a reviewer can check. The two stacks are checked one by one (graph checks such as
"pod without a NetworkPolicy" would match one stack's pods with the other's policies), in
parallel.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from infra.capture import REPO_ROOT
from tests.infra.conftest import STACKS

CHECKOV = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"
# Each skip names why; the text a reviewer reads is at least a sentence.
MIN_REASON = 40


Done = dict[str, subprocess.CompletedProcess]


def _run_all(commands: dict[str, list[str]], timeout: int) -> Done:
    running = {
        key: subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for key, cmd in commands.items()
    }
    done = {}
    for key, process in running.items():
        out, err = process.communicate(timeout=timeout)
        done[key] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    return done


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: run `bash scripts/checkov` (scripts/test does)")
    root = tmp_path_factory.mktemp("checkov")
    synths = _run_all(
        {
            s: [sys.executable, "-m", "infra.synth", "--stack", s, "--out", str(root / s)]
            for s in STACKS
        },
        timeout=300,
    )
    for stack, result in synths.items():
        assert result.returncode == 0, f"synth {stack}: {result.stderr[-2000:]}"
    runs = _run_all(
        {
            s: [
                str(CHECKOV),
                *("-d", str(root / s / "manifests")),
                *("--framework", "kubernetes", "--output", "json", "--compact"),
                "--skip-download",  # no platform metadata: nothing leaves the machine
            ]
            for s in STACKS
        },
        timeout=300,
    )
    found = {}
    for stack, result in runs.items():
        # checkov exits 1 when a check fails; the JSON report says which.
        assert result.returncode in (0, 1), f"checkov {stack}: {result.stderr[-2000:]}"
        found[stack] = json.loads(result.stdout)
    return found


@pytest.mark.parametrize("stack", STACKS)
def test_no_finding_is_left_unexplained(reports, stack) -> None:
    report = reports[stack]
    results, summary = report["results"], report["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] > 10 and summary["passed"] > 100  # it did look
    failed = [
        f"{c['check_id']} {c['check_name']!r} on {c['resource']} ({Path(c['file_path']).name})"
        for c in results["failed_checks"]
    ]
    assert failed == [], "fix each, or skip it with a reason (k8s_common.checkov_skips)"
    for skip in results["skipped_checks"]:
        reason = skip["check_result"].get("suppress_comment") or ""
        assert len(reason) >= MIN_REASON, f"{skip['check_id']} on {skip['resource']}: {reason!r}"
