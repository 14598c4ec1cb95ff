"""The canary's share of requests is moved the way labels are: ``python -m ops.model_labels
--share``, a one-line change in the stack file, which the pull request's plan shows as the
weights of the model endpoint's listener rules. The canary gate's decisions go through the same
command (promote: stable to the canary and the share to 100; roll back: the share to 0). Values
come from the committed stack files."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from infra.capture import capture_stack, stack_config
from infra.changes import compare
from infra.settings import settings_from_config
from infra.synth import mask_sensitive
from infra.synth_report import render_changes
from ops import model_labels
from tests.ops.test_model_labels import changed_lines

ROOT = Path(__file__).resolve().parents[2]
PROD = settings_from_config("prod", stack_config("prod"))
MNIST = next(m for m in PROD.models if m.name == "mnist")


def _model(text: str, stack: str = "prod"):
    import yaml

    config = yaml.safe_load(text)["config"]
    settings = settings_from_config(stack, config)
    return next(m for m in settings.models if m.name == "mnist")


def test_a_share_move_is_one_line(stack_root: Path) -> None:
    before = (stack_root / "Pulumi.prod.yaml").read_text()
    after, change = model_labels.move_label(before, "prod", "mnist", None, None, share=25)
    diff = changed_lines(before, after)
    assert [d[0] + d[1:].strip() for d in diff] == [
        f"-canaryTrafficPercent: {MNIST.canary_traffic_percent}",
        "+canaryTrafficPercent: 25",
    ]
    assert change == (
        f"Pulumi.prod.yaml: mnist canaryTrafficPercent {MNIST.canary_traffic_percent} -> 25"
    )


def test_the_gates_promote_and_rollback_go_through_the_same_path(stack_root: Path) -> None:
    text = (stack_root / "Pulumi.prod.yaml").read_text()
    canary = MNIST.canary_version
    assert canary is not None  # prod runs a canary track
    promoted, change = model_labels.move_label(text, "prod", "mnist", "stable", canary, share=100)
    model = _model(promoted)
    assert model.labels["stable"] == canary and model.canary_traffic_percent == 100
    assert model.canary_version is None  # stable now serves it: no canary track left
    assert change.endswith(f"mnist canaryTrafficPercent {MNIST.canary_traffic_percent} -> 100")
    rolled_back, change = model_labels.move_label(text, "prod", "mnist", None, None, share=0)
    model = _model(rolled_back)
    assert model.canary_traffic_percent == 0 and model.canary_version is None
    assert model.labels == MNIST.labels  # the rejected version stays named, with no traffic


@pytest.mark.parametrize(("left", "start"), [(0, 10), (100, 10), (20, 20)])
def test_a_new_canary_starts_at_the_default_share_unless_one_was_chosen(
    stack_root: Path, left: int, start: int
) -> None:
    text = (stack_root / "Pulumi.prod.yaml").read_text()
    text, _ = model_labels.move_label(text, "prod", "mnist", None, None, share=left)
    # The model pipeline proposes the next version as canary without a share.
    after, change = model_labels.move_label(text, "prod", "mnist", "canary", 3)
    model = _model(after)
    assert model.canary_version == 3 and model.canary_traffic_percent == start
    assert (f"canaryTrafficPercent {left} -> {start}" in change) is (left != start)


def test_cli_share_flags(stack_root: Path, capsys: pytest.CaptureFixture) -> None:
    path = stack_root / "Pulumi.prod.yaml"
    before = path.read_text()
    base = ["--stack", "prod", "--model", "mnist"]
    for bad in (["--share", "101"], ["--share", "-1"], ["--label", "canary"], []):
        with pytest.raises(SystemExit) as caught:
            model_labels.main([*base, *bad])
        assert caught.value.code == 2
    assert path.read_text() == before
    assert model_labels.main([*base, "--share", "30"]) == 0
    assert "mnist canaryTrafficPercent" in capsys.readouterr().out
    assert _model(path.read_text()).canary_traffic_percent == 30
    assert model_labels.main([*base, "--share", "30"]) == 2  # nothing to change
    assert "nothing to change" in capsys.readouterr().err


@pytest.mark.slow
def test_the_plan_diff_says_what_share_moves(stack_root: Path) -> None:
    # What `python -m infra.synth --compare` puts in the pull request: the listener rules'
    # weights move from (100 - old, old) to (100 - new, new), and both tracks' ScaledObjects follow.
    shutil.copytree(ROOT / "policies", stack_root / "policies")
    base = [mask_sensitive(r.as_dict()) for r in capture_stack("prod", stack_root).resources]
    assert model_labels.main(["--stack", "prod", "--model", "mnist", "--share", "40"]) == 0
    head = [mask_sensitive(r.as_dict()) for r in capture_stack("prod", stack_root).resources]
    changes = compare(base, head)
    old = MNIST.canary_traffic_percent
    by_id = {c.id: c for c in changes.changes}
    for protocol in ("grpc", "rest"):
        rule = by_id[f"ListenerRule/aws:lb/endpoint-mnist-{protocol}"]
        assert rule.action == "update"
        moved = {(d.before, d.after) for d in rule.diffs if d.path.endswith(".weight")}
        assert moved == {(100 - old, 60), (old, 40)}
        assert f"from {100 - old} % / {old} % to 60 % / 40 %" in rule.impact
    # Each track's ScaledObject follows: the canary's bounds are its share of min and
    # maxReplicas, the stable track's ceiling the rest of maxReplicas.
    moved = dataclasses.replace(MNIST, canary_traffic_percent=40)
    canary = by_id["ScaledObject/mnist/mnist-canary"]
    assert {d.path: (d.before, d.after) for d in canary.diffs} == {
        "spec.maxReplicaCount": (MNIST.canary_max_replicas, moved.canary_max_replicas),
        "spec.minReplicaCount": (MNIST.canary_min_replicas, moved.canary_min_replicas),
    }
    assert moved.canary_min_replicas == -(-MNIST.min_replicas * 40 // 100)
    stable = by_id["ScaledObject/mnist/mnist"]
    assert {d.path: (d.before, d.after) for d in stable.diffs} == {
        "spec.maxReplicaCount": (MNIST.stable_max_replicas, moved.stable_max_replicas),
    }
    summary = "\n".join(render_changes(changes, "prod"))
    assert f"- {old}" in summary and "+ 40" in summary and "endpoint-mnist-rest" in summary


def test_the_gates_decisions_become_moves() -> None:
    canary = MNIST.canary_version
    assert model_labels.gate_move("promote", MNIST) == {
        "label": "stable",
        "version": canary,
        "share": 100,
    }
    assert model_labels.gate_move("rollback", MNIST) == {"label": "", "version": "", "share": 0}
    assert model_labels.gate_move("hold", MNIST) is None
    with pytest.raises(model_labels.LabelError, match="unknown decision 'maybe'"):
        model_labels.gate_move("maybe", MNIST)
    import dataclasses

    without = dataclasses.replace(MNIST, canary_traffic_percent=0)
    with pytest.raises(model_labels.LabelError, match="runs no canary track"):
        model_labels.gate_move("promote", without)
