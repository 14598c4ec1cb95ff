"""The diff of two plans built from real stack configs: what changes, and what applying it does.

Each base plan is the real program captured under mocks for the checked-in ``Pulumi.<stack>.yaml``
with the starting point the tests describe (``SCENARIO``: the compute mode, the GPU pool and the
mnist model) written over it, so a change to a stack's own values never breaks them; each head
plan is the same program on that copy changed once more. Captures are compared directly
(``infra.changes.compare``); one test runs ``python -m infra.synth --compare`` end to end. About
8 program runs in all (~3-4 s each).
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import synth
from infra.capture import capture_stack, stack_config
from infra.change_impact import change_id, impact_of, is_canary_track
from infra.changes import Change, ChangeSet, compare, diff_values
from infra.synth import findings_from, load_policy_config, mask_sensitive, run_policies
from infra.synth_report import render_changes
from ops.model_labels import move_label

ROOT = Path(__file__).resolve().parents[2]
MODELS = "tfserving-eks:models"
POOLS = "tfserving-eks:gpuNodePools"


_BATCHING = {"batchTimeoutMicros": 1000, "maxEnqueuedBatches": 100, "numBatchThreads": 2}
_MNIST = {"nodePool": "gpu", "gpus": 1, "cpuMillicores": 1000, "modelMemoryMiB": 512,
          "modelDiskMiB": 256, "allowedNamespaces": ["monitoring"]}  # fmt: skip
# dev: EKS Auto Mode, mnist idle at zero and woken on request, latest:2 without labels.
# prod: node groups, mnist warm (3 replicas, what policies/config.prod.json asks) on specific:1,2
# with a canary label on the other version.
SCENARIO = {
    "dev": {
        "tfserving-eks:computeMode": "autoMode",
        POOLS: {"gpu": {"instanceTypes": ["g5.xlarge"], "capacityType": "SPOT", "minSize": 0,
                        "maxSize": 3, "desiredSize": 0, "diskSizeGiB": 80}},
        "mnist": {**_MNIST, "versionPolicy": "latest:2", "labels": {}, "minReplicas": 0,
                  "wakeOnRequest": True, "maxReplicas": 2,
                  "batching": {"maxBatchSize": 16, **_BATCHING}},
    },
    "prod": {
        "tfserving-eks:computeMode": "nodeGroups",
        POOLS: {"gpu": {"instanceTypes": ["g5.xlarge", "g6.xlarge"], "capacityType": "ON_DEMAND",
                        "minSize": 3, "maxSize": 13, "desiredSize": 3, "diskSizeGiB": 100}},
        "mnist": {**_MNIST, "versionPolicy": "specific:1,2", "labels": {"stable": 1, "canary": 2},
                  "minReplicas": 3, "maxReplicas": 12,
                  "batching": {"maxBatchSize": 64, **_BATCHING}},
    },
}  # fmt: skip


def _records(stack: str, root: Path) -> list[dict[str, Any]]:
    return [mask_sensitive(r.as_dict()) for r in capture_stack(stack, root).resources]


def _findings(stack: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    results = run_policies(records, load_policy_config(stack, ROOT))
    return [f.as_dict() for f in findings_from(results)]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    return {
        stack: _records(stack, _project(tmp_path_factory.mktemp(stack), stack, _edited(stack)))
        for stack in ("dev", "prod")
    }


def _project(tmp: Path, stack: str, text: str) -> Path:
    root = tmp / "project"
    (root / "policies").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copy(ROOT / "policies" / f"config.{stack}.json", root / "policies")
    (root / f"Pulumi.{stack}.yaml").write_text(text)
    return root


def _edited(stack: str, edit: Callable[[dict[str, Any]], None] = lambda _: None) -> str:
    """The stack file with the scenario written over it, then ``edit``."""
    data = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    config = data["config"]
    scenario = copy.deepcopy(SCENARIO[stack])
    config[MODELS]["mnist"] = scenario.pop("mnist")
    config.update(scenario)
    edit(config)
    return yaml.safe_dump(data, sort_keys=False)


@pytest.fixture
def head(tmp_path: Path) -> Callable[[str, str], list[dict[str, Any]]]:
    def build(stack: str, text: str) -> list[dict[str, Any]]:
        return _records(stack, _project(tmp_path, stack, text))

    return build


def _by_id(changes: ChangeSet) -> dict[str, Change]:
    return {c.id: c for c in changes.changes}


# --------------------------------------------------------------------------------------------


def test_label_move_within_the_policy_is_config_only(base, head) -> None:
    # dev serves latest:2; naming version 2 `canary` touches models.config and nothing else.
    text, _ = move_label(_edited("dev"), "dev", "mnist", "canary", 2)
    changes = compare(base["dev"], head("dev", text))

    assert [(c.id, c.action, c.effect) for c in changes.changes] == [
        ("ConfigMap/mnist/mnist-tfserving", "update", "config-reload")
    ]
    change = changes.changes[0]
    assert change.fields == ['data["models.config"]']
    assert "no pod restarts" in change.impact
    assert "every 30 s" in change.impact  # the Deployment's --model_config_file_poll_wait_seconds


def test_batching_and_replica_changes(base, head) -> None:
    def edit(config: dict[str, Any]) -> None:
        mnist = config[MODELS]["mnist"]
        mnist["batching"]["maxBatchSize"] = 32
        mnist["minReplicas"] = 2
        mnist.pop("wakeOnRequest", None)  # a warm model is not woken on request

    changes = _by_id(compare(base["dev"], head("dev", _edited("dev", edit))))

    # Batching: the ConfigMap file, and the pods roll through the startup-config checksum.
    config = changes["ConfigMap/mnist/mnist-tfserving"]
    assert config.fields == ['data["batching.config"]']
    assert "only at start" in config.impact and "Deployment/mnist/mnist" in config.impact
    deployment = changes["Deployment/mnist/mnist"]
    assert deployment.effect == "rollout"
    # dev's mnist idles at zero (minReplicas 0 declares replicas: 0); from 2 KEDA owns it. A
    # warm model's pods no longer keep their node from consolidation (woken ones do).
    assert sorted(deployment.fields) == sorted([
        'spec.template.metadata.annotations["checksum/startup-config"]',
        'spec.template.metadata.annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"]',
        'spec.template.metadata.annotations["karpenter.sh/do-not-disrupt"]',
        "spec.replicas",
    ])  # fmt: skip
    assert "batching or monitoring config changed" in deployment.impact
    # Woken on request at 0, kept warm from 2: the same ScaledObject, from 2 and without the
    # HTTP add-on's trigger, its unset inFlight target following the batch capacity (32 x 2);
    # the InterceptorRoute goes.
    scaled = changes["ScaledObject/mnist/mnist"]
    assert scaled.action == "update"
    assert "spec.minReplicaCount" in scaled.fields
    assert scaled.effect == "in-place"
    assert "KEDA updates the HPA it owns in place (replicas 0-2 → 2-2; scales on " in scaled.impact
    assert "+ wake on request → inFlight, target 64; the idle time before scaling to zero)" in (
        scaled.impact
    )
    assert changes["InterceptorRoute/mnist/mnist"].action == "delete"


def test_keda_objects_say_what_their_change_moves() -> None:
    def record(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
        api = "http.keda.sh/v1beta1" if kind == "InterceptorRoute" else "keda.sh/v1alpha1"
        inputs = {"metadata": {"name": "mnist", "namespace": "mnist"}, "spec": spec}
        return {"type": f"kubernetes:{api}:{kind}", "name": "r", "inputs": inputs}

    def impact(kind: str, before: dict[str, Any], after: dict[str, Any]) -> tuple[str, str]:
        old, new = record(kind, before), record(kind, after)
        return impact_of("update", old, new, diff_values(old["inputs"], new["inputs"]))

    route = {"target": {"service": "mnist-stable", "port": 8501}, "timeouts": {"readiness": "15m"}}
    effect, sentence = impact(
        "InterceptorRoute", route, {**route, "target": {"service": "mnist", "port": 8501}}
    )
    assert effect == "in-place" and "(which requests it routes where)" in sentence
    assert "how long it holds" in impact("InterceptorRoute", route, {**route, "timeouts": {}})[1]
    effect, sentence = impact(
        "TriggerAuthentication",
        {"podIdentity": {"roleArn": "a"}},
        {"podIdentity": {"roleArn": "b"}},
    )
    assert effect == "in-place" and "the identity it now names" in sentence
    windows = {"advanced": {"horizontalPodAutoscalerConfig": {"behavior": {}}}}
    assert "the stabilization windows" in impact("ScaledObject", {}, windows)[1]


def test_new_model_and_removed_model(base, head) -> None:
    def edit(config: dict[str, Any]) -> None:
        config[MODELS]["digits"] = copy.deepcopy(config[MODELS]["mnist"])
        # Room for both models' rollouts at maximum scale (a settings rule).
        config[POOLS]["gpu"]["maxSize"] = 6

    two_models = head("dev", _edited("dev", edit))
    added = compare(base["dev"], two_models)
    created = {c.id: c for c in added.changes if c.action == "create"}
    assert {"Namespace/_cluster/digits", "ConfigMap/digits/digits-tfserving"} <= set(created)
    assert created["Deployment/digits/digits"].impact.startswith("created: the pods of")
    assert any(c.type == "aws:iam/role:Role" for c in created.values())
    others = [c for c in added.changes if c.action != "create"]
    # dev runs EKS Auto Mode: the GPU pool's maxSize is its NodePool's limits.
    assert [(c.type, c.fields, c.effect) for c in others] == [
        (
            "kubernetes:karpenter.sh/v1:NodePool",
            ["spec.limits.cpu", 'spec.limits["nvidia.com/gpu"]'],
            "in-place",
        )
    ]

    removed = compare(two_models, base["dev"])
    deleted = {c.id for c in removed.changes if c.action == "delete"}
    assert deleted == set(created)
    assert "stop" in _by_id(removed)["Deployment/digits/digits"].impact


def test_node_pool_change_replaces_the_node_group(base, head) -> None:
    # prod: the stack on node groups (dev runs EKS Auto Mode, where a pool is a NodePool).
    def edit(config: dict[str, Any]) -> None:
        config[POOLS]["gpu"]["instanceTypes"] = ["g6.xlarge"]
        config[POOLS]["gpu"]["maxSize"] = 14

    changes = compare(base["prod"], head("prod", _edited("prod", edit)))
    groups = [c for c in changes.changes if c.type == "aws:eks/nodeGroup:NodeGroup"]
    assert len(groups) == 1
    group = groups[0]
    # A short id; the URN only in the JSON.
    assert group.id == "NodeGroup/aws:eks/pool-gpu-ng"
    assert group.as_dict()["urn"].startswith("urn:pulumi:prod::")
    assert set(group.fields) == {
        "instanceTypes[0]",
        "instanceTypes[1]",
        "scalingConfig.maxSize",
    } or (set(group.fields) == {"instanceTypes", "scalingConfig.maxSize"})
    # Counted apart from updates, and said in terms of running pods.
    assert (group.action, group.effect) == ("replace", "replace")
    assert changes.counts()["replace"] == 1 and changes.counts()["update"] == 0
    assert "instanceTypes" in group.impact and "ForceNew" in group.impact
    assert "every GPU pod of pool gpu moves to new nodes (Deployment/mnist/mnist" in group.impact


def test_policy_relevant_change_names_the_new_finding(base, head) -> None:
    # prod's policy config requires 3 serving replicas at least.
    def edit(config: dict[str, Any]) -> None:
        config[MODELS]["mnist"]["minReplicas"] = 2

    records = head("prod", _edited("prod", edit))
    changes = compare(
        base["prod"], records, _findings("prod", base["prod"]), _findings("prod", records)
    )
    assert [f["rule"] for f in changes.new_findings] == ["k8s-serving-min-replicas"]
    assert changes.new_findings[0]["level"] == "mandatory"
    assert changes.resolved_findings == ()
    # The rule judges the Deployment; the change that caused it is the ScaledObject's minimum.
    assert changes.new_findings[0]["id"] == "Deployment/mnist/mnist"
    assert [c.id for c in changes.changes] == ["ScaledObject/mnist/mnist"]
    section = "\n".join(render_changes(changes, "prod"))
    assert "- ⚠️ new mandatory `k8s-serving-min-replicas` on `Deployment/mnist/mnist`: " in section
    assert "Policy: 1 new finding (1 mandatory), 0 resolved." in section


def _synth_compare(base, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    """``python -m infra.synth --stack prod --compare BASE`` with prod's scenario as the base
    and ``text`` as the head's stack file; returns the head's output directory."""
    base_dir = tmp_path / "base"
    base_dir.mkdir()
    (base_dir / "resources.json").write_text(json.dumps(base["prod"]))
    (base_dir / "policy-report.json").write_text(
        json.dumps({"results": _findings("prod", base["prod"])})
    )
    base_root = _project(tmp_path / "base-root", "prod", _edited("prod"))
    (base_dir / "stack-config.json").write_text(
        json.dumps({"stack": "prod", "config": stack_config("prod", base_root)})
    )
    monkeypatch.setattr(synth, "ROOT", _project(tmp_path, "prod", text))
    out = tmp_path / "head"
    assert synth.main(["--stack", "prod", "--out", str(out), "--compare", str(base_dir)]) in (0, 1)
    return out


def test_cli_compare_on_a_label_move_that_widens_the_policy(
    base, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # prod serves specific:1,2; moving stable to 3 adds version 3 to the policy. One more
    # version stays loaded, so the pod's memory grows and the pods roll: the diff says so.
    text, _ = move_label(_edited("prod"), "prod", "mnist", "stable", 3)
    out = _synth_compare(base, tmp_path, monkeypatch, text)

    changes = json.loads((out / "changes.json").read_text())
    assert set(changes) == {"changes", "counts", "policy", "settings", "cost"}
    # prod's canary label differs from stable: its canary track loads stable's version too, so
    # it changes with it (docs/observability.md).
    assert changes["counts"] == {"create": 0, "update": 4, "replace": 0, "delete": 0}
    # The settings that changed, and the Deployment names the one that caused its rollout.
    assert changes["settings"] == [
        {
            "scope": "model mnist",
            "key": "models.mnist.versionPolicy",
            "before": "specific:1,2",
            "after": "specific:1,2,3",
        },
        {
            "scope": "model mnist",
            "key": "models.mnist.labels",
            "before": {"stable": 1, "canary": 2},
            "after": {"stable": 3, "canary": 2},
        },
    ]
    assert set(changes["cost"]["total"]) == {"idle", "minReplicas", "maximum"}
    entries = {c["id"]: c for c in changes["changes"]}
    assert (
        "models.mnist.versionPolicy: specific:1,2 → specific:1,2,3"
        in (entries["Deployment/mnist/mnist"]["causes"])
    )
    assert set(entries) == {
        "ConfigMap/mnist/mnist-tfserving",
        "Deployment/mnist/mnist",
        "ConfigMap/mnist/mnist-tfserving-canary",
        "Deployment/mnist/mnist-canary",
    }
    for entry in entries.values():
        assert {"id", "action", "fields", "impact"} <= set(entry)
    deployment = entries["Deployment/mnist/mnist"]
    assert deployment["effect"] == "rollout"
    assert (
        "spec.template.spec.containers[name=tfserving].resources.limits.memory"
        in deployment["fields"]
    )
    assert "specific:1,2 → specific:1,2,3" in deployment["impact"]

    summary = (out / "summary.md").read_text()
    # The short cost section first, then the settings and the changes they caused.
    assert (
        summary.index("#### Cost and quota")
        < summary.index("#### Settings changed")
        < summary.index("#### Changes against the base branch")
    )
    head_lines = summary.split("#### Policy violations")[0]
    assert "#### Changes against the base branch" in head_lines
    assert "**0 to create, 4 to update, 0 to replace, 0 to delete**" in head_lines
    assert "- 🔄 **update** `Deployment/mnist/mnist`: pods of Deployment/mnist/mnist roll" in (
        head_lines
    )
    assert "+        versions: 3" in head_lines  # models.config diffed line by line
    assert "pulumi preview" in head_lines  # which plan is the authority
    # The manifest's models.config is a block scalar, readable in a diff.
    manifest = (out / "manifests" / "mnist" / "ConfigMap-mnist-tfserving.yaml").read_text()
    assert "  models.config: |" in manifest


# --------------------------------------------------------------------------------------------
# Pure parts, no program run


def test_named_list_items_are_matched_by_name() -> None:
    before = {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}]}
    after = {"containers": [{"name": "a", "image": "x:2"}, {"name": "b", "image": "y:1"}]}
    [diff] = diff_values(before, after)
    assert (diff.path, diff.before, diff.after) == ("containers[name=a].image", "x:1", "x:2")


def test_secrets_stay_masked_and_a_change_inside_one_is_invisible() -> None:
    record = {
        "urn": "urn:pulumi:dev::p::kubernetes:core/v1:Secret::s",
        "type": "kubernetes:core/v1:Secret",
        "name": "s",
        "custom": True,
        "inputs": {"metadata": {"name": "s", "namespace": "n"}, "stringData": {"token": "a"}},
    }
    changed = copy.deepcopy(record)
    changed["inputs"]["stringData"]["token"] = "b"
    assert compare([mask_sensitive(record)], [mask_sensitive(changed)]).changes == ()
    changed["inputs"]["stringData"]["password"] = "hunter2"
    [change] = compare([mask_sensitive(record)], [mask_sensitive(changed)]).changes
    assert "hunter2" not in json.dumps(change.as_dict())
    assert change.as_dict()["diff"][0]["after"] == "[secret]"


def test_an_aws_type_without_a_table_is_unknown() -> None:
    record = {
        "urn": "urn:pulumi:dev::p::aws:sqs/queue:Queue::q",
        "type": "aws:sqs/queue:Queue",
        "name": "q",
        "custom": True,
        "inputs": {"delaySeconds": 0},
    }
    changed = {**record, "inputs": {"delaySeconds": 5}}
    [change] = compare([record], [changed]).changes
    assert (change.effect, change.id) == ("unknown", "Queue/aws:sqs/q")
    assert "real preview" in change.impact


def test_forcenew_argument_set_for_the_first_time_is_a_conditional_replace() -> None:
    record = {
        "urn": "urn:pulumi:dev::p::aws:eks/cluster:Cluster::c",
        "type": "aws:eks/cluster:Cluster",
        "name": "c",
        "custom": True,
        "inputs": {"name": "c", "roleArn": "arn:a"},
    }
    newly_set = {**record, "inputs": {**record["inputs"], "bootstrapSelfManagedAddons": False}}
    [change] = compare([record], [newly_set]).changes
    assert change.effect == "replace" and change.impact.startswith("replaced if AWS holds")
    moved = {**record, "inputs": {"name": "c", "roleArn": "arn:b"}}
    [change] = compare([record], [moved]).changes
    assert change.impact.startswith("replaced: AWS cannot change roleArn in place")


def _canary_track(records: list[dict[str, Any]]) -> set[str]:
    """Ids of the canary track's objects in a plan (their ``track`` label or tag)."""
    return {change_id(r) for r in records if is_canary_track(r)}


@pytest.mark.parametrize(
    ("decision", "label", "version", "share"),
    [("promote", "stable", 2, 100), ("rollback", None, None, 0)],
)
def test_a_gate_move_says_what_it_removes_and_the_docs_agree(
    base, head, decision: str, label: str | None, version: int | None, share: int
) -> None:
    # prod's canary (version 2, 10 % of requests) is promoted (stable to 2, share 100) or
    # rolled back (share 0), as ops.model_labels.gate_move applies the gate's decision: either
    # way the canary track ends, and every object of it goes.
    text, _ = move_label(_edited("prod"), "prod", "mnist", label, version, share)
    changes = compare(base["prod"], head("prod", text))
    by_id = _by_id(changes)
    track = _canary_track(base["prod"])
    kinds = {i.split("/", 1)[0] for i in track}
    assert {"Deployment", "ConfigMap", "Service", "ScaledObject"} <= kinds
    assert {"TargetGroup", "TargetGroupBinding"} <= kinds  # the model endpoint's, per track
    assert {c.id for c in changes.changes if c.action == "delete"} == track
    assert "the canary track ends" in by_id["Deployment/mnist/mnist-canary"].impact
    for ident in track:
        assert "canary track" in by_id[ident].impact, ident
    # The listener rules send every request to the stable track, in place.
    rules = [c for c in changes.changes if c.type == "aws:lb/listenerRule:ListenerRule"]
    assert {c.id for c in rules} == {
        "ListenerRule/aws:lb/endpoint-mnist-grpc",
        "ListenerRule/aws:lb/endpoint-mnist-rest",
    }
    for rule in rules:
        assert (rule.action, rule.effect) == ("update", "in-place")
        assert "from 90 % / 10 % to 100 %" in rule.impact
    # Only a promotion touches the stable track's models.config (stable now names 2).
    config = by_id.get("ConfigMap/mnist/mnist-tfserving")
    assert (config.effect if config else None) == (
        "config-reload" if decision == "promote" else None
    )
    section = "\n".join(render_changes(changes, "prod"))
    removes = (
        "this removes `ConfigMap/mnist/mnist-tfserving-canary`, `Deployment/mnist/mnist-canary`, "
        "`Service/mnist/mnist-canary`, `ScaledObject/mnist/mnist-canary`, "
        "`TargetGroup/aws:lb/endpoint-mnist-canary-grpc-lbc`"
    )
    assert "**A canary track ends**" in section and removes in section
    assert "(the listener rules send them all to it)" in section
    # Both pages quote what the comment says.
    for page in ("gitops.md", "observability.md"):
        text = " ".join((ROOT / "docs" / page).read_text().split())
        assert "A canary track ends" in text, page
        assert "`ConfigMap/mnist/mnist-tfserving-canary`, `Deployment/mnist/mnist-canary`" in text
        assert "`Service/mnist/mnist-canary`, `ScaledObject/mnist/mnist-canary`" in text


def test_a_share_move_shows_in_the_comment(
    base, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The canary's share of requests moves 10 -> 25 (python -m ops.model_labels --share 25):
    # the comment names the setting, old -> new, and the listener rules' weights it moves.
    text, _ = move_label(_edited("prod"), "prod", "mnist", None, None, 25)
    out = _synth_compare(base, tmp_path, monkeypatch, text)

    changes = json.loads((out / "changes.json").read_text())
    assert changes["settings"] == [
        {
            "scope": "model mnist",
            "key": "models.mnist.canaryTrafficPercent",
            "before": 10,
            "after": 25,
        }
    ]
    summary = (out / "summary.md").read_text()
    settings = summary.split("#### Settings changed")[1].split("####")[0]
    assert "- **model mnist**: `models.mnist.canaryTrafficPercent` 10 → 25" in settings
    assert "moves from 90 % / 10 % to 75 % / 25 %" in summary
    # The canary's ScaledObject follows its share (ceil of the share of min and maxReplicas),
    # and the stable track's gives it the room (both together within maxReplicas 12).
    scalers = {c["id"]: c for c in changes["changes"] if c["id"].startswith("ScaledObject/")}
    canary, stable = scalers["ScaledObject/mnist/mnist-canary"], scalers["ScaledObject/mnist/mnist"]
    assert canary["action"] == stable["action"] == "update"
    assert "replicas 1-2 → 1-3" in canary["impact"] and "replicas 3-10 → 3-9" in stable["impact"]


def test_memory_and_stack_wide_changes_name_their_settings(base, head) -> None:
    def edit(config: dict[str, Any]) -> None:
        config[MODELS]["mnist"]["modelMemoryMiB"] *= 2
        config["tfserving-eks:s3PollSeconds"] = 45

    changed = _edited("prod", edit)
    from infra.settings import settings_from_config
    from infra.settings_diff import settings_changes

    def parsed(text: str):
        return settings_from_config("prod", yaml.safe_load(text)["config"])

    settings = settings_changes(parsed(_edited("prod")), parsed(changed))
    changes = compare(
        base["prod"], head("prod", changed), settings=settings, models={"mnist": "gpu"}
    )
    deployment = _by_id(changes)["Deployment/mnist/mnist"]
    memory = SCENARIO["prod"]["mnist"]["modelMemoryMiB"]
    assert deployment.causes == (
        f"models.mnist.modelMemoryMiB: {memory} → {2 * memory}",
        f"s3PollSeconds: {stack_config('prod')['tfserving-eks:s3PollSeconds']} → 45",
    )
    # Nothing of pool gpu changed: its node group names no cause (and does not change).
    assert all(c.causes == () for c in changes.changes if c.type.startswith("aws:eks"))
