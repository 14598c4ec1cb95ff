"""synth on the real program and policy pack, for every stack file in the repository.

Each stack is synthesized once per session through `infra.synth.main` in this process (the
program's imports are paid once, not per stack); the tests then read what it wrote. The command
prints its own wall time (shown with `pytest -s`).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts import tfconfig
from infra import synth
from infra.capture import stack_config
from infra.manifests import api_version_kind

ROOT = Path(__file__).resolve().parents[2]
STACKS = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml"))
RECORD_KEYS = ["urn", "type", "name", "parent", "custom", "provider", "inputs"]

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Run:
    stack: str
    out: Path
    returncode: int
    stdout: str
    stderr: str

    def read_json(self, name: str) -> Any:
        return json.loads((self.out / name).read_text())


@pytest.fixture(scope="session", params=STACKS)
def stack_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    stack = request.param
    out = tmp_path_factory.mktemp("synth") / stack
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = synth.main(["--stack", stack, "--out", str(out)])
    print(stdout.getvalue().splitlines()[0] if stdout.getvalue() else stderr.getvalue())
    return Run(stack, out, code, stdout.getvalue(), stderr.getvalue())


def test_stacks_exist() -> None:
    assert STACKS, "no Pulumi.<stack>.yaml files"


def test_module_entry_point_exits_2_on_an_unknown_stack(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "infra.synth", "--stack", "nope", "--out", str(tmp_path / "o")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert f"synth: no stack 'nope': expected Pulumi.nope.yaml in {ROOT}" in proc.stderr
    assert ", ".join(STACKS) in proc.stderr
    assert not (tmp_path / "o").exists()


def test_stack_synthesizes_clean(stack_run: Run) -> None:
    assert stack_run.returncode == 0, stack_run.stdout + stack_run.stderr


def test_resources_json_is_every_resource_in_order(stack_run: Run) -> None:
    records = stack_run.read_json("resources.json")
    assert records, "no resources"
    assert all(list(r) == RECORD_KEYS for r in records)
    urns = [r["urn"] for r in records]
    assert len(set(urns)) == len(urns)
    # Registration order: a parent is always registered before its children.
    position = {urn: i for i, urn in enumerate(urns)}
    for r in records:
        if r["parent"] in position:
            assert position[r["parent"]] < position[r["urn"]], r["urn"]
    (cluster,) = [r for r in records if r["type"] == "aws:eks/cluster:Cluster"]
    wanted = stack_config(stack_run.stack).get("tfserving-eks:kubernetesVersion", "1.32")
    assert cluster["inputs"]["version"] == wanted


def test_secrets_are_masked(stack_run: Run) -> None:
    records = stack_run.read_json("resources.json")
    providers = [r for r in records if r["type"] == "pulumi:providers:kubernetes"]
    assert providers and all(p["inputs"]["kubeconfig"] == "[secret]" for p in providers)

    def passwords(value: Any) -> list[Any]:
        if isinstance(value, dict):
            return [v for k, v in value.items() if k == "password"] + [
                x for v in value.values() for x in passwords(v)
            ]
        if isinstance(value, list):
            return [x for v in value for x in passwords(v)]
        return []

    assert set(passwords(records)) <= {"[secret]"}
    assert "| `kubeconfig` | [secret] |" in (stack_run.out / "summary.md").read_text()


def test_every_kubernetes_object_has_a_valid_manifest(stack_run: Run) -> None:
    records = stack_run.read_json("resources.json")
    objects = [r for r in records if api_version_kind(r["type"])]
    files = sorted((stack_run.out / "manifests").rglob("*.yaml"))
    assert len(files) == len(objects) > 0
    by_urn = {}
    for path in files:
        text = path.read_text()
        by_urn[text.splitlines()[0].removeprefix("# ")] = (path, yaml.safe_load(text))
    for r in objects:
        path, body = by_urn[r["urn"]]
        api_version, kind = api_version_kind(r["type"])
        assert (body["apiVersion"], body["kind"]) == (api_version, kind)
        assert path.name == f"{kind}-{body['metadata'].get('name', r['name'])}.yaml"
        namespace = path.parent.name
        assert namespace == body["metadata"].get("namespace", namespace)
    summary = (stack_run.out / "summary.md").read_text()
    assert f"**{len(objects)} Kubernetes objects** ({len(objects)} schema-checked" in summary
    assert "#### Schema errors\n\nNone." in summary


def test_tfserving_files_match_the_stack_config(stack_run: Run) -> None:
    models = stack_config(stack_run.stack)["tfserving-eks:models"]
    assert sorted(p.name for p in (stack_run.out / "tfserving").iterdir()) == sorted(models)
    for name, spec in models.items():
        directory = stack_run.out / "tfserving" / name
        (parsed,) = tfconfig.parse_models_config((directory / "models.config").read_text())
        assert parsed.name == name
        assert dict(parsed.labels) == spec.get("labels", {})
        assert str(parsed.policy) == spec["versionPolicy"]
        assert {"models.config"} < {p.name for p in directory.iterdir()}


def test_policy_report_has_no_mandatory_violation(stack_run: Run) -> None:
    report = stack_run.read_json("policy-report.json")
    assert report["stack"] == stack_run.stack
    assert set(report["counts"]) >= {"mandatory", "advisory"}
    assert report["counts"]["mandatory"] == 0, report["results"]
    assert sum(report["counts"].values()) == len(report["results"])
    for result in report["results"]:
        assert list(result) == ["rule", "level", "resource", "message"]
    summary = (stack_run.out / "summary.md").read_text()
    assert summary.startswith(f"<!-- synth:{stack_run.stack} -->\n")


def test_invalid_stack_config_exits_2_with_the_settings_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The real program and settings, on a copy of the dev stack with two mistakes.
    root = tmp_path / "project"
    (root / "policies").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    config = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    config["config"]["tfserving-eks:models"]["mnist"]["minReplicas"] = -1
    config["config"]["tfserving-eks:replicaCount"] = 3
    (root / "Pulumi.broken.yaml").write_text(yaml.safe_dump(config))
    (root / "policies" / "config.broken.json").write_text("{}")
    monkeypatch.setattr(synth, "ROOT", root)
    out = tmp_path / "synth"

    assert synth.main(["--stack", "broken", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "stack 'broken' has" in err
    assert "tfserving-eks:replicaCount: unknown config key" in err
    assert "tfserving-eks:models.mnist.minReplicas" in err
    assert not out.exists()
