"""python -m ops.model_labels: label moves are one-line, validated config changes."""

from __future__ import annotations

import difflib
import json
import shutil
from pathlib import Path

import pytest

from infra.settings import InvalidSettingsError
from ops import model_labels

ROOT = Path(__file__).resolve().parents[2]


def changed_lines(before: str, after: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="")
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def test_moving_a_label_changes_only_that_value(stack_root: Path) -> None:
    before = (stack_root / "Pulumi.dev.yaml").read_text()
    after, change = model_labels.move_label(before, "dev", "mnist", "canary", 7)
    # Comments and every other line stay as they were.
    assert [line for line in before.splitlines() if line.lstrip().startswith("#")] == [
        line for line in after.splitlines() if line.lstrip().startswith("#")
    ]
    diff = changed_lines(before, after)
    assert [d[1:].strip() for d in diff if d.startswith("+") and "canary" in d] == ["canary: 7"]
    assert all("labels" in d or "canary" in d for d in diff), diff
    assert change.startswith("Pulumi.dev.yaml: mnist canary")
    assert change.endswith("-> 7")


def test_specific_policy_is_widened_to_serve_the_new_version(stack_root: Path) -> None:
    before = (stack_root / "Pulumi.prod.yaml").read_text()
    after, change = model_labels.move_label(before, "prod", "mnist", "canary", 3)
    removed = [d for d in changed_lines(before, after) if d.startswith("-")]
    added = [d for d in changed_lines(before, after) if d.startswith("+")]
    assert any("versionPolicy: specific:" in d for d in removed)
    assert any(d.strip().endswith(",3") and "versionPolicy: specific:" in d for d in added)
    assert any(d.endswith("canary: 3") for d in added)
    assert "versionPolicy specific:" in change


def test_remove_a_label(stack_root: Path) -> None:
    text = (stack_root / "Pulumi.dev.yaml").read_text()
    with_canary, _ = model_labels.move_label(text, "dev", "mnist", "canary", 4)
    without, change = model_labels.move_label(with_canary, "dev", "mnist", "canary", None)
    assert "canary" not in without
    assert change == "Pulumi.dev.yaml: mnist canary 4 -> (removed)"
    with pytest.raises(model_labels.LabelError, match="has no label 'canary'"):
        model_labels.move_label(without, "dev", "mnist", "canary", None)


def test_unknown_model_is_refused(stack_root: Path) -> None:
    text = (stack_root / "Pulumi.dev.yaml").read_text()
    with pytest.raises(model_labels.LabelError, match="model 'resnet' is not in"):
        model_labels.move_label(text, "dev", "resnet", "canary", 2)


@pytest.mark.parametrize(("label", "version"), [("canary", 0), ("not a label!", 2)])
def test_an_invalid_result_is_a_settings_error(stack_root: Path, label: str, version: int) -> None:
    text = (stack_root / "Pulumi.dev.yaml").read_text()
    with pytest.raises(InvalidSettingsError, match=r"tfserving-eks:models\.mnist\.labels"):
        model_labels.move_label(text, "dev", "mnist", label, version)


def test_cli_writes_the_file_or_nothing(stack_root: Path, capsys: pytest.CaptureFixture) -> None:
    path = stack_root / "Pulumi.dev.yaml"
    before = path.read_text()
    argv = ["--stack", "dev", "--model", "mnist", "--label", "canary"]
    assert model_labels.main([*argv, "--version", "0"]) == 2
    assert "invalid config value" in capsys.readouterr().err
    assert path.read_text() == before
    assert model_labels.main([*argv, "--version", "5"]) == 0
    assert "mnist canary" in capsys.readouterr().out
    assert "canary: 5" in path.read_text()
    assert sorted(p.name for p in stack_root.iterdir()) == sorted(
        p.name for p in ROOT.glob("Pulumi*.yaml")
    )  # no temporary files left behind
    assert model_labels.main(["--stack", "qa", "--model", "mnist", "--label", "x", "--remove"]) == 2


def test_a_bad_version_under_a_specific_policy_is_refused_not_a_crash(
    stack_root: Path, capsys: pytest.CaptureFixture
) -> None:
    path = stack_root / "Pulumi.prod.yaml"  # prod serves `specific:...`
    before = path.read_text()
    argv = ["--stack", "prod", "--model", "mnist", "--label", "stable", "--version", "0"]
    assert model_labels.main(argv) == 2
    assert "0 is not a positive integer version" in capsys.readouterr().err
    assert path.read_text() == before


@pytest.mark.slow
def test_a_label_move_reaches_the_tf_serving_config(
    stack_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # End to end offline: the moved label is in the models.config that synth renders for dev.
    from infra import synth

    shutil.copytree(ROOT / "policies", stack_root / "policies")
    assert model_labels.main(["--stack", "dev", "--model", "mnist", "--label", "canary",
                              "--version", "9"]) == 0  # fmt: skip
    monkeypatch.setattr(synth, "ROOT", stack_root)
    out = tmp_path / "synth"
    assert synth.main(["--stack", "dev", "--out", str(out)]) == 0
    models_config = (out / "tfserving" / "mnist" / "models.config").read_text()
    assert 'key: "canary"' in models_config and "value: 9" in models_config
    report = json.loads((out / "policy-report.json").read_text())
    assert report["counts"]["mandatory"] == 0
