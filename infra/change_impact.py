"""What applying one change does, in plain words: which pods restart or move, and why. Pure.

`impact_of` returns ``(effect, sentence)`` for one change of `infra.changes.compare`; the effects
are `infra.changes.EFFECTS`. The sentence speaks of running pods: a rolling update, a config
reload without restart, or nodes replaced so that every pod on them moves (a node group
replaced, a launch template or NodePool change that renews its nodes). A canary track that a
promotion or rollback ends is named as such, every object of it (its Deployment, ConfigMap,
Service, KEDA ScaledObject, and the model endpoint's target groups and bindings), a listener
rule whose weights move says what share of requests goes where, and a KEDA object (ScaledObject,
InterceptorRoute, TriggerAuthentication) says what its change moves: bounds, signal and target,
routing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from infra.forcenew import K8S_REPLACE_ON_CHANGE, REPLACE_ON_CHANGE
from infra.forcenew import matches as _matches
from infra.manifests import CLUSTER_DIR, CLUSTER_SCOPED_KINDS, api_version_kind
from infra.naming import POOL_LABEL_KEY

WORKLOAD_KINDS = frozenset({"Deployment", "DaemonSet", "StatefulSet"})
MODELS_CONFIG = "models.config"
TRACK_LABEL = "track"
# The tag the model endpoint's target groups carry their track in (infra.components.endpoint).
TRACK_TAG = "tfserving-eks/track"
LISTENER_RULE = "aws:lb/listenerRule:ListenerRule"
# What each object of a canary track is, for the sentence of its deletion.
_CANARY_PARTS = {
    "ConfigMap": "TF Serving config",
    "Service": "Service (what its target groups bind to)",
    "ScaledObject": "autoscaler (KEDA ScaledObject)",
    "TargetGroupBinding": "binding of its pods to the model endpoint's target group",
    "TargetGroup": "target group on the model endpoint",
}
_POLL_FLAG = "--model_config_file_poll_wait_seconds="
_POLICY_FLAG = "--policy"
# Names of the pool resources the program declares (infra.components.nodegroups, auto_mode).
_POOL_NAME = re.compile(r"^(?:pool-(?P<a>.+)-(?:ng|lt|asg-.+)|auto-mode-(?P<b>.+)-(?:class|pool))$")
NODE_POOL_TYPES = frozenset(
    {
        "aws:eks/nodeGroup:NodeGroup",
        "aws:ec2/launchTemplate:LaunchTemplate",
        "kubernetes:karpenter.sh/v1:NodePool",
        "kubernetes:eks.amazonaws.com/v1:NodeClass",
    }
)


def change_id(record: Mapping[str, Any]) -> str:
    """``<Kind>/<namespace or _cluster>/<name>`` for a Kubernetes object; for any other
    resource ``<Class>/<package:module>/<name>`` from its type token (a
    ``aws:eks/nodeGroup:NodeGroup`` named ``pool-gpu-ng`` is ``NodeGroup/aws:eks/pool-gpu-ng``)."""
    rtype = str(record["type"])
    parsed = api_version_kind(rtype)
    if parsed is None:
        package, _, rest = rtype.partition(":")
        module, _, cls = rest.partition(":")
        return f"{cls or rtype}/{package}:{module.split('/')[0]}/{record.get('name', '')}"
    kind = parsed[1]
    metadata = (record.get("inputs") or {}).get("metadata") or {}
    name = metadata.get("name") or record["name"]
    namespace = (
        CLUSTER_DIR if kind in CLUSTER_SCOPED_KINDS else metadata.get("namespace") or "default"
    )
    return f"{kind}/{namespace}/{name}"


def kind_of(record: Mapping[str, Any]) -> str | None:
    parsed = api_version_kind(str(record["type"]))
    return parsed[1] if parsed else None


def _find_label(value: Any, key: str) -> str | None:
    if isinstance(value, Mapping):
        found = value.get(key)
        if isinstance(found, str):
            return found
        for v in value.values():
            hit = _find_label(v, key)
            if hit is not None:
                return hit
    elif isinstance(value, list):
        for v in value:
            hit = _find_label(v, key)
            if hit is not None:
                return hit
    return None


def pool_of(record: Mapping[str, Any]) -> str | None:
    """The node pool a node group, launch template, NodePool or NodeClass belongs to."""
    if record.get("type") not in NODE_POOL_TYPES:
        return None
    match = _POOL_NAME.match(str(record.get("name", "")))
    if match:
        return match["a"] or match["b"]
    return _find_label(record.get("inputs") or {}, POOL_LABEL_KEY)


def pool_workloads(pool: str, workloads: Sequence[Mapping[str, Any]]) -> list[str]:
    """Ids of the workloads whose pods are placed on ``pool`` (their node selector)."""
    found = []
    for w in workloads:
        spec = (((w.get("inputs") or {}).get("spec") or {}).get("template") or {}).get("spec")
        if ((spec or {}).get("nodeSelector") or {}).get(POOL_LABEL_KEY) == pool:
            found.append(change_id(w))
    return found


def _moves(pool: str, workloads: Sequence[Mapping[str, Any]]) -> str:
    which = pool_workloads(pool, workloads)
    what = "GPU pod" if pool != "system" else "pod"
    named = f" ({', '.join(which)})" if which else ""
    return f"every {what} of pool {pool} moves to new nodes{named}"


def _show(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    if text is None or value is None:
        return "(none)"
    text = text.replace("\n", "⏎")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _containers(inputs: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spec = ((inputs.get("spec") or {}).get("template") or {}).get("spec") or {}
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def _arg_after(inputs: Mapping[str, Any], flag: str) -> str | None:
    for container in _containers(inputs):
        args = [str(a) for a in container.get("args") or []]
        for i, arg in enumerate(args):
            if arg == flag and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(flag) and flag.endswith("="):
                return arg[len(flag) :]
    return None


def _rollout_impact(
    kind: str, ident: str, diffs: Sequence[Any], base: Mapping, head: Mapping
) -> tuple[str, str]:
    template = [d for d in diffs if d.path.startswith("spec.template.")]
    if not template:
        replicas = [d for d in diffs if d.path == "spec.replicas"]
        if replicas:
            return "in-place", (
                f"scales {ident} from {_show(replicas[0].before)} to "
                f"{_show(replicas[0].after)} replicas; running pods do not restart"
            )
        return (
            "in-place",
            f"{kind} updated in place; the pod template is unchanged, no pod restarts",
        )
    shown = "; ".join(
        f"{d.path.removeprefix('spec.template.')}: {_show(d.before, 30)} → {_show(d.after, 30)}"
        for d in template[:3]
    )
    more = f" and {len(template) - 3} more" if len(template) > 3 else ""
    why = []
    old_policy, new_policy = _arg_after(base, _POLICY_FLAG), _arg_after(head, _POLICY_FLAG)
    if old_policy != new_policy and old_policy and new_policy:
        why.append(
            f"the version policy {old_policy} → {new_policy} changes how many versions stay "
            "loaded, and memory and the model volume are sized for every one of them plus one "
            "being swapped in"
        )
    if any(d.path.endswith('annotations["checksum/startup-config"]') for d in template):
        why.append(
            "the batching or monitoring config changed, and TF Serving reads those only at start"
        )
    because = f" Why: {'; '.join(why)}." if why else ""
    return "rollout", (
        f"pods of {ident} roll (a rolling update replaces every pod; pod template: "
        f"{shown}{more}).{because}"
    )


def _bounds(inputs: Mapping[str, Any]) -> str:
    spec = inputs.get("spec") or {}
    return f"{_show(spec.get('minReplicaCount', 0))}-{_show(spec.get('maxReplicaCount'))}"


def _triggers(inputs: Mapping[str, Any]) -> str:
    """``inFlight, target 32`` for each trigger of a ScaledObject (the HTTP add-on's own shown
    as waking on request)."""
    shown = []
    for trigger in (inputs.get("spec") or {}).get("triggers") or []:
        meta = trigger.get("metadata") or {}
        if trigger.get("type") == "external-push":
            shown.append("wake on request")
            continue
        target = meta.get("threshold", meta.get("value"))
        shown.append(f"{trigger.get('name') or trigger.get('type')}, target {_show(target)}")
    return " + ".join(shown) or "(none)"


def _scaled_object_impact(diffs: Sequence[Any], base: Mapping, head: Mapping) -> str:
    """What a ScaledObject change moves: KEDA updates the HPA it owns, in place, and queries its
    triggers every ``pollingInterval`` (30 s unless set: keda.sh docs, "ScaledObject
    specification")."""
    paths = [d.path for d in diffs]
    what = []
    if any(p in ("spec.minReplicaCount", "spec.maxReplicaCount") for p in paths):
        what.append(f"replicas {_bounds(base)} → {_bounds(head)}")
    if any(p.startswith("spec.triggers") for p in paths):
        what.append(f"scales on {_triggers(base)} → {_triggers(head)}")
    if any(p.startswith("spec.advanced") for p in paths):
        what.append("the stabilization windows")
    if "spec.cooldownPeriod" in paths:
        what.append("the idle time before scaling to zero")
    if not what:
        what.append(", ".join(paths[:3]) or "metadata")
    return (
        f"KEDA updates the HPA it owns in place ({'; '.join(what)}); the replica count follows "
        "at its next poll (pollingInterval, 30 s by default), running pods do not restart"
    )


def _route_impact(diffs: Sequence[Any], base: Mapping, head: Mapping) -> str:
    """What an InterceptorRoute change moves: the KEDA interceptor's routing, in place."""
    paths = [d.path for d in diffs]
    what = []
    if any(p.startswith("spec.scalingMetric") for p in paths):
        before, after = (
            dict((i.get("spec") or {}).get("scalingMetric") or {}) for i in (base, head)
        )
        what.append(f"wakes and scales on {_show(before)} → {_show(after)}")
    if any(p.startswith(("spec.target", "spec.rules")) for p in paths):
        what.append("which requests it routes where")
    if any(p.startswith("spec.timeouts") for p in paths):
        what.append("how long it holds a request for a model at zero")
    if not what:
        what.append(", ".join(paths[:3]) or "metadata")
    return (
        f"the KEDA interceptor routes by the new route in place ({'; '.join(what)}); "
        "no pod restarts"
    )


def _configmap_impact(
    diffs: Sequence[Any], head: Mapping, workloads: Sequence[Mapping[str, Any]]
) -> tuple[str, str]:
    keys = {d.path for d in diffs if d.path.startswith("data")}
    if not keys:
        return "in-place", "ConfigMap metadata updated in place; the files are unchanged"
    name = ((head.get("metadata") or {}).get("name")) or ""
    users = [
        w
        for w in workloads
        if any(
            (v.get("configMap") or {}).get("name") == name
            for v in (((w.get("inputs") or {}).get("spec") or {}).get("template") or {})
            .get("spec", {})
            .get("volumes")
            or []
        )
    ]
    models_key = f'data["{MODELS_CONFIG}"]'
    if keys == {models_key}:
        polls = [p for p in (_arg_after(w.get("inputs") or {}, _POLL_FLAG) for w in users) if p]
        every = f"every {polls[0]} s" if polls else "at its next poll"
        return "config-reload", (
            "config only, no pod restarts: the kubelet refreshes the mounted models.config "
            "(within its sync period, about a minute), then TF Serving re-reads it on its next "
            f"poll ({every}, --model_config_file_poll_wait_seconds)"
        )
    others = sorted(k for k in keys if k != models_key)
    files = ", ".join(others)
    if users:
        names = ", ".join(change_id(w) for w in users)
        return "in-place", (
            f"{files} changed; TF Serving reads the batching and monitoring files only at start, "
            f"so they take effect when the pods of {names} roll (see that change)"
        )
    return "in-place", f"{files} updated in place; no workload of this plan mounts it"


def _forwarded(record: Mapping[str, Any]) -> Any:
    """The target groups (with their weights) a listener rule's forward action names."""
    for action in (record.get("inputs") or {}).get("actions") or []:
        groups = ((action or {}).get("forward") or {}).get("targetGroups")
        if groups:
            return groups
    return None


def _aws_impact(
    base: Mapping[str, Any],
    record: Mapping[str, Any],
    diffs: Sequence[Any],
    workloads: Sequence[Mapping[str, Any]],
) -> tuple[str, str]:
    record_type = str(record["type"])
    pool = pool_of(record)
    paths = [d.path for d in diffs]
    if record_type == "aws:eks/nodeGroup:NodeGroup":
        rolling = [
            p for p in paths if _matches(p, ("launchTemplate.version", "version", "releaseVersion"))
        ]
        if rolling:
            return "rollout", (
                f"node group updated in place, and its nodes are replaced by a rolling update "
                f"({', '.join(rolling)}): EKS drains each old node and terminates it, so "
                f"{_moves(pool or '?', workloads)}"
            )
        if all(_matches(p, ("scalingConfig",)) for p in paths):
            return "in-place", (
                "node group scaling bounds change in place; nodes are added or removed by the "
                "cluster autoscaler, running nodes stay"
            )
    if (
        record_type == LISTENER_RULE
        and paths
        and all(p.startswith("actions") and ".forward.targetGroups" in p for p in paths)
    ):
        return "in-place", (
            "the rule's weights change in place: the share of this host's requests per target "
            f"group moves from {_weights(_forwarded(base))} to {_weights(_forwarded(record))} "
            "(per request, whatever the pod counts; no pod restarts)"
        )
    if record_type == "aws:ec2/launchTemplate:LaunchTemplate":
        return "in-place", (
            f"a new launch template version; the node group of pool {pool or '?'} replaces its "
            f"nodes by a rolling update once it points at it, so {_moves(pool or '?', workloads)} "
            "(the version number is known only at deploy: that node-group update shows only in "
            "the real preview)"
        )
    return "in-place", "updated in place (no replace-on-change argument changed)"


def impact_of(
    action: str,
    base: Mapping[str, Any] | None,
    head: Mapping[str, Any] | None,
    diffs: Sequence[Any],
    workloads: Sequence[Mapping[str, Any]] = (),
) -> tuple[str, str]:
    """``(effect, sentence)`` for one change."""
    record = head if head is not None else base
    assert record is not None
    rtype = str(record["type"])
    kind = kind_of(record)
    ident = change_id(record)
    if action == "create":
        if kind in WORKLOAD_KINDS:
            return "create", f"created: the pods of {ident} start"
        return "create", "created"
    if action == "delete":
        return "delete", _deleted(record, kind, ident)
    assert base is not None and head is not None
    if kind is not None:
        forced = K8S_REPLACE_ON_CHANGE["*"] | K8S_REPLACE_ON_CHANGE.get(kind, frozenset())
        replaced = sorted({m for d in diffs for m in _matches(d.path, forced)})
        if replaced:
            return "replace", (
                f"replaced: {', '.join(replaced)} cannot change in place, so pulumi-kubernetes "
                "deletes the object and creates it again"
            )
        if kind in WORKLOAD_KINDS:
            return _rollout_impact(kind, ident, diffs, base["inputs"], head["inputs"])
        if kind == "ConfigMap":
            return _configmap_impact(diffs, head["inputs"], workloads)
        if kind == "NodePool" and any(d.path.startswith("spec.template.") for d in diffs):
            pool = pool_of(record) or "?"
            return "rollout", (
                f"the NodePool's node template changes: Auto Mode marks the nodes of pool {pool} "
                "that no longer match as drifted and replaces them within the pool's disruption "
                f"budget, so {_moves(pool, workloads)}"
            )
        if kind == "ScaledObject":
            return "in-place", _scaled_object_impact(diffs, base["inputs"], head["inputs"])
        if kind == "InterceptorRoute":
            return "in-place", _route_impact(diffs, base["inputs"], head["inputs"])
        if kind == "TriggerAuthentication":
            return "in-place", (
                "KEDA authenticates its next metric queries with the identity it now names; "
                "no pod restarts"
            )
        return "in-place", f"{kind} updated in place; no pod restarts"
    if rtype in REPLACE_ON_CHANGE:
        forcing = [d for d in diffs if _matches(d.path, REPLACE_ON_CHANGE[rtype])]
        replaced = sorted({m for d in forcing for m in _matches(d.path, REPLACE_ON_CHANGE[rtype])})
        if forcing and all(d.before is None for d in forcing):
            # Newly set: the provider compares with the value AWS holds, which may already be
            # this one (a default); only the real preview knows.
            return "replace", (
                f"replaced if AWS holds another value: {', '.join(replaced)} was not set before "
                "and cannot change in place (provider ForceNew); the real preview decides"
            )
        if replaced:
            why = (
                f"replaced: AWS cannot change {', '.join(replaced)} in place (provider ForceNew), "
                "so a new one is created and the old one deleted"
            )
            pool = pool_of(record)
            if rtype == "aws:eks/nodeGroup:NodeGroup" and pool:
                why += (
                    f": {_moves(pool, workloads)} (the new group's nodes join, then EKS drains "
                    "and terminates the old group's, respecting PodDisruptionBudgets)"
                )
            return "replace", why
        return _aws_impact(base, record, diffs, workloads)
    return (
        "unknown",
        "unknown offline (no replace-on-change table for this type): see the real preview",
    )


def _weights(groups: Any) -> str:
    """``90 % / 10 %`` from a forward action's target groups (their weights, in order)."""
    if not isinstance(groups, list) or not groups:
        return _show(groups)
    weights = [g.get("weight", 1) if isinstance(g, Mapping) else 1 for g in groups]
    total = sum(w for w in weights if isinstance(w, int)) or 1
    return " / ".join(
        f"{round(100 * w / total)} %" if isinstance(w, int) else _show(w) for w in weights
    )


def is_canary_track(record: Mapping[str, Any]) -> bool:
    """Whether an object belongs to a model's canary track: its ``track`` label (Kubernetes) or
    tag (the model endpoint's target groups)."""
    inputs = record.get("inputs") or {}
    metadata = inputs.get("metadata")
    labels = (metadata.get("labels") if isinstance(metadata, Mapping) else None) or {}
    tags = inputs.get("tags")  # a map on AWS resources; other types may use the name otherwise
    track_tag = tags.get(TRACK_TAG) if isinstance(tags, Mapping) else None
    return labels.get(TRACK_LABEL) == "canary" or track_tag == "canary"


def _deleted(record: Mapping[str, Any], kind: str | None, ident: str) -> str:
    canary = is_canary_track(record)
    if kind in WORKLOAD_KINDS and canary:
        return (
            f"deleted: the canary track ends, its pods stop ({ident}); the stable Deployment "
            "serves every request (a promotion made canary equal stable, or a rollback set "
            "canaryTrafficPercent to 0)"
        )
    if kind in WORKLOAD_KINDS:
        return f"deleted: the pods of {ident} stop"
    if canary:
        part = str(record["type"]).rpartition(":")[2] if kind is None else kind
        what = _CANARY_PARTS.get(part, part)
        return f"deleted: the canary track's {what}, with the canary Deployment"
    return "deleted"
