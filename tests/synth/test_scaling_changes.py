"""The PR diff says when a model's scaling signal or target changes: ``python -m infra.synth
--compare`` on dev's stack file with mnist's ``scaling`` edited, end to end (three synth runs).

The comment's "Settings changed" section names the setting, old -> new (infra/settings_diff.py);
each object it becomes (the ScaledObject's trigger and, for a model woken on request, the
InterceptorRoute's target) is listed with what its change moves, in plain words
(infra/change_impact.py), and caused by that setting.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import synth

ROOT = Path(__file__).resolve().parents[2]
MODELS = "tfserving-eks:models"


def _project(tmp: Path, scaling: dict[str, Any]) -> Path:
    """A copy of the project's dev stack with mnist's ``scaling`` set to `scaling`."""
    root = tmp / "project"
    (root / "policies").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copy(ROOT / "policies" / "config.dev.json", root / "policies")
    data = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    data["config"][MODELS]["mnist"]["scaling"] = scaling
    (root / "Pulumi.dev.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root


def _synth(tmp: Path, name: str, scaling: dict[str, Any], base: Path | None) -> dict[str, Any]:
    out = tmp / name
    args = ["--stack", "dev", "--out", str(out), *(["--compare", str(base)] if base else [])]
    root = _project(tmp / f"{name}-src", scaling)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(synth, "ROOT", root)
        assert synth.main(args) in (0, 1)
    changes = out / "changes.json"
    return json.loads(changes.read_text()) if changes.exists() else {"out": str(out)}


@pytest.fixture(scope="module")
def diffs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("scaling-diff")
    _synth(tmp, "base", {"signal": "inFlight", "target": 8}, None)
    base = tmp / "base"
    return {
        "target": _synth(tmp, "target", {"signal": "inFlight", "target": 12}, base),
        "signal": _synth(tmp, "signal", {"signal": "requestsPerSecond", "target": 40}, base),
        "summary": (tmp / "signal" / "summary.md").read_text(),
    }


def _changed(changes: dict[str, Any]) -> dict[str, list[str]]:
    return {c["id"]: c["fields"] for c in changes["changes"]}


def _by_id(changes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in changes["changes"]}


def test_a_new_target_is_the_triggers_threshold_and_the_routes_target(diffs) -> None:
    assert diffs["target"]["settings"] == [
        {"scope": "model mnist", "key": "models.mnist.scaling.target", "before": 8, "after": 12}
    ]
    assert _changed(diffs["target"]) == {
        # dev's mnist is woken on request: its Prometheus trigger activates from one pod's load.
        "ScaledObject/mnist/mnist": [
            "spec.triggers[name=inFlight].metadata.activationThreshold",
            "spec.triggers[name=inFlight].metadata.threshold",
        ],
        "InterceptorRoute/mnist/mnist": ["spec.scalingMetric.concurrency.targetValue"],
    }


def test_a_new_signal_is_a_new_trigger_query_and_route_metric(diffs) -> None:
    changed = _changed(diffs["signal"])
    assert set(changed) == {"ScaledObject/mnist/mnist", "InterceptorRoute/mnist/mnist"}
    assert "spec.triggers[name=inFlight]" in changed["ScaledObject/mnist/mnist"]
    assert "spec.triggers[name=requestsPerSecond]" in changed["ScaledObject/mnist/mnist"]
    assert set(changed["InterceptorRoute/mnist/mnist"]) == {
        "spec.scalingMetric.concurrency",
        "spec.scalingMetric.requestRate",
    }
    # In plain words, each caused by the settings that changed.
    by_id = _by_id(diffs["signal"])
    scaled, route = by_id["ScaledObject/mnist/mnist"], by_id["InterceptorRoute/mnist/mnist"]
    assert (
        "scales on inFlight, target 8 + wake on request → "
        "requestsPerSecond, target 40 + wake on request"
    ) in scaled["impact"]
    assert "running pods do not restart" in scaled["impact"]
    assert 'wakes and scales on {"concurrency": {"targetValue": 8}} → ' in route["impact"]
    for change in (scaled, route):
        assert change["causes"] == [
            "models.mnist.scaling.signal: inFlight → requestsPerSecond",
            "models.mnist.scaling.target: 8 → 40",
        ]
    # The PR comment's settings section says it first, old -> new.
    settings = diffs["summary"].split("#### Settings changed")[1].split("####")[0]
    assert (
        "- **model mnist**: `models.mnist.scaling.signal` inFlight → requestsPerSecond; "
        "`models.mnist.scaling.target` 8 → 40"
    ) in settings
    assert "`ScaledObject/mnist/mnist`: KEDA updates the HPA it owns in place" in diffs["summary"]
