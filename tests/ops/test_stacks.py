"""python -m ops.stacks: the facts the workflows read, from each stack's validated settings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from infra.capture import REPO_ROOT, stack_config
from infra.settings import settings_from_config
from ops import stacks


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for path in REPO_ROOT.glob("Pulumi*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def test_committed_stacks(capsys) -> None:
    assert stacks.main([]) == 0
    found = json.loads(capsys.readouterr().out)
    assert sorted(found) == stacks.stack_names(REPO_ROOT)
    for stack, facts in found.items():
        settings = settings_from_config(stack, stack_config(stack))
        assert facts["region"] == settings.region
        assert facts["runner"] == list(settings.deploy_runner.labels)
        # Neither committed endpoint admits GitHub's shared ranges (the policy pack forbids
        # 0.0.0.0/0), so previews need a runner of their own.
        assert facts["hostedReach"] is False
        # A canary track runs where the labels differ and the canary has a share of requests.
        assert facts["canaries"] == sorted(
            m.name for m in settings.models
            if m.labels.get("canary") not in (None, m.labels.get("stable"))
            and m.canary_traffic_percent > 0
        )  # fmt: skip


@pytest.mark.parametrize(("share", "judged"), [(0, []), (25, ["mnist"])])
def test_a_canary_at_share_0_is_no_canary(root: Path, share: int, judged: list[str]) -> None:
    path = root / "Pulumi.dev.yaml"
    doc = yaml.safe_load(path.read_text())
    mnist = doc["config"]["tfserving-eks:models"]["mnist"]
    mnist["labels"] = {"stable": 1, "canary": 2}
    mnist["canaryTrafficPercent"] = share
    path.write_text(yaml.safe_dump(doc))
    assert stacks.facts("dev", root)["canaries"] == judged


def test_an_open_endpoint_is_reached_by_hosted_runners(root: Path) -> None:
    path = root / "Pulumi.dev.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["config"]["tfserving-eks:publicAccessCidrs"] = ["0.0.0.0/0"]
    doc["config"]["tfserving-eks:deployRunner"] = {"labels": ["ubuntu-24.04"]}
    path.write_text(yaml.safe_dump(doc))
    assert stacks.facts("dev", root)["hostedReach"] is True


def test_writes_a_github_output_line(root: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    assert stacks.main(["--github-output", "stacks"], root=root) == 0
    name, _, value = out.read_text().strip().partition("=")
    assert name == "stacks" and json.loads(value) == json.loads(capsys.readouterr().out)


def test_an_invalid_stack_exits_2_and_writes_nothing(
    root: Path, tmp_path: Path, monkeypatch, capsys
):
    path = root / "Pulumi.dev.yaml"
    path.write_text(path.read_text().replace("cidrs: [203.0.113.0/24]", "cidrs: [192.0.2.0/24]"))
    out = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    assert stacks.main(["--github-output", "stacks"], root=root) == 2
    assert "deployRunner.cidrs: 192.0.2.0/24 is in neither" in capsys.readouterr().err
    assert not out.exists()
