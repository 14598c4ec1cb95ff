"""What a pull request changes: the diff of two synth plans and what each change does on apply.

Pure functions over two lists of ``resources.json`` records (the base branch's plan and this
branch's, both already masked by synth) and their policy findings; nothing here reads files.
Resources are matched by URN, as the Pulumi engine matches them; components carry no inputs and
are left out (their children show). Every change gets:

- ``id``: ``<Kind>/<namespace or _cluster>/<name>`` for a Kubernetes object, else the URN;
- ``action``: ``create``, ``update`` or ``delete``;
- ``fields``: the changed input paths (``spec.template.spec.containers[name=tfserving].image``,
  ``data["models.config"]``); list items that carry a ``name`` are matched by it;
- ``impact``: one sentence saying what happens when it applies, and ``effect``, its kind
  (:data:`EFFECTS`).

What an offline diff cannot see is said, not guessed: values known only at deploy (ids, launch
template versions), drift, and changes inside secrets (both sides are ``"[secret]"``). The real
``pulumi preview --diff`` is the authority for those.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from infra.manifests import CLUSTER_DIR, CLUSTER_SCOPED_KINDS, api_version_kind

ACTIONS = ("create", "update", "delete")
# What applying a change does, from most to least disruptive.
EFFECTS = ("replace", "rollout", "config-reload", "in-place", "create", "delete", "unknown")

WORKLOAD_KINDS = frozenset({"Deployment", "DaemonSet", "StatefulSet"})
MODELS_CONFIG = "models.config"
_POLL_FLAG = "--model_config_file_poll_wait_seconds="
_POLICY_FLAG = "--policy"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_INDEX = re.compile(r"\[[^\]]*\]")

# Inputs whose change makes the provider replace the resource (create the new one, then delete
# the old), for the AWS resource types this program declares. Source: the `ForceNew: true`
# arguments of the resource schemas in hashicorp/terraform-provider-aws (internal/service/<svc>/
# <resource>.go), which pulumi-aws bridges unchanged; paths are Pulumi's camelCase input names.
# eks/node_group.go and eks/cluster.go were read for this table; the others are the arguments the
# Terraform registry docs mark "Forces new resource". A type missing here is "unknown" offline.
REPLACE_ON_CHANGE: Mapping[str, frozenset[str]] = {
    "aws:eks/cluster:Cluster": frozenset(
        {
            "name",
            "roleArn",
            "bootstrapSelfManagedAddons",
            "accessConfig.bootstrapClusterCreatorAdminPermissions",
            "kubernetesNetworkConfig.ipFamily",
            "kubernetesNetworkConfig.serviceIpv4Cidr",
            "outpostConfig",
            "remoteNetworkConfig",
        }
    ),
    "aws:eks/nodeGroup:NodeGroup": frozenset(
        {
            "amiType",
            "capacityType",
            "clusterName",
            "diskSize",
            "instanceTypes",
            "launchTemplate.id",
            "launchTemplate.name",
            "nodeGroupName",
            "nodeGroupNamePrefix",
            "nodeRoleArn",
            "remoteAccess",
            "subnetIds",
        }
    ),
    "aws:eks/addon:Addon": frozenset({"clusterName", "addonName"}),
    "aws:ec2/launchTemplate:LaunchTemplate": frozenset({"name", "namePrefix"}),
    "aws:ec2/vpc:Vpc": frozenset({"cidrBlock", "ipv4IpamPoolId", "ipv4NetmaskLength"}),
    "aws:ec2/subnet:Subnet": frozenset(
        {"vpcId", "cidrBlock", "availabilityZone", "availabilityZoneId", "outpostArn"}
    ),
    "aws:ec2/routeTable:RouteTable": frozenset({"vpcId"}),
    "aws:ec2/routeTableAssociation:RouteTableAssociation": frozenset({"subnetId", "gatewayId"}),
    "aws:ec2/natGateway:NatGateway": frozenset(
        {"allocationId", "subnetId", "connectivityType", "privateIp"}
    ),
    "aws:ec2/eip:Eip": frozenset(
        {"address", "customerOwnedIpv4Pool", "domain", "networkBorderGroup", "publicIpv4Pool"}
    ),
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": frozenset({"vpcId"}),
    "aws:iam/role:Role": frozenset({"name", "namePrefix", "path"}),
    "aws:iam/rolePolicy:RolePolicy": frozenset({"role", "name", "namePrefix"}),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": frozenset({"role", "policyArn"}),
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": frozenset({"url"}),
    "aws:kms/key:Key": frozenset(
        {"customKeyStoreId", "customerMasterKeySpec", "keySpec", "keyUsage", "multiRegion"}
    ),
    "aws:cloudwatch/logGroup:LogGroup": frozenset({"name", "namePrefix", "logGroupClass"}),
    "aws:s3/bucket:Bucket": frozenset({"bucket", "bucketPrefix", "objectLockEnabled"}),
    "aws:s3/bucketPolicy:BucketPolicy": frozenset({"bucket"}),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": frozenset({"bucket"}),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": frozenset({"bucket"}),
    "aws:s3/bucketVersioning:BucketVersioning": frozenset({"bucket", "expectedBucketOwner"}),
    "aws:s3/bucketLogging:BucketLogging": frozenset({"bucket", "expectedBucketOwner"}),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        frozenset({"bucket", "expectedBucketOwner"})
    ),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": frozenset(
        {"bucket", "expectedBucketOwner"}
    ),
    "aws:ecr/repository:Repository": frozenset({"name", "encryptionConfigurations"}),
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": frozenset({"repository"}),
    "aws:autoscaling/tag:Tag": frozenset({"autoscalingGroupName", "tag"}),
}
# Kubernetes objects pulumi-kubernetes replaces instead of patching: a new name or namespace is
# another object, and a workload's selector is immutable in the API (apps/v1 "field is
# immutable"), as is a Service's clusterIP.
K8S_REPLACE_ON_CHANGE: Mapping[str, frozenset[str]] = {
    "*": frozenset({"metadata.name", "metadata.namespace"}),
    "Deployment": frozenset({"spec.selector"}),
    "DaemonSet": frozenset({"spec.selector"}),
    "StatefulSet": frozenset({"spec.selector", "spec.volumeClaimTemplates", "spec.serviceName"}),
    "Service": frozenset({"spec.clusterIP"}),
}


@dataclass(frozen=True)
class FieldDiff:
    """One changed input: its path and the values before and after (``None`` when absent)."""

    path: str
    before: Any
    after: Any


@dataclass(frozen=True)
class Change:
    """One resource that the pull request creates, updates or deletes."""

    id: str
    urn: str
    type: str
    action: str
    diffs: tuple[FieldDiff, ...]
    effect: str
    impact: str
    policy: tuple[str, ...] = ()

    @property
    def fields(self) -> list[str]:
        return [d.path for d in self.diffs]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action,
            "fields": self.fields,
            "impact": self.impact,
            "effect": self.effect,
            "type": self.type,
            "urn": self.urn,
            "policy": list(self.policy),
            "diff": [{"path": d.path, "before": d.before, "after": d.after} for d in self.diffs],
        }


@dataclass(frozen=True)
class ChangeSet:
    """Every change, plus the policy findings this branch adds or resolves."""

    changes: tuple[Change, ...]
    compared: int
    new_findings: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)
    resolved_findings: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)

    def counts(self) -> dict[str, int]:
        return {a: sum(1 for c in self.changes if c.action == a) for a in ACTIONS}

    def as_dict(self) -> dict[str, Any]:
        return {
            "changes": [c.as_dict() for c in self.changes],
            "counts": self.counts(),
            "policy": {
                "new": [dict(f) for f in self.new_findings],
                "resolved": [dict(f) for f in self.resolved_findings],
            },
        }


# --------------------------------------------------------------------------------------------
# Diffing values


def _key_path(prefix: str, key: str) -> str:
    if _IDENT.match(key):
        return f"{prefix}.{key}" if prefix else key
    return f"{prefix}[{json.dumps(key)}]"


def _named(items: Sequence[Any]) -> dict[str, Any] | None:
    """Items keyed by their ``name`` when every item is a mapping with a distinct string name."""
    names = [i.get("name") if isinstance(i, Mapping) else None for i in items]
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        return None
    return dict(zip(names, items, strict=True))


def diff_values(before: Any, after: Any, path: str = "") -> list[FieldDiff]:
    """The leaf-level differences between two input values, in a stable order."""
    if before == after:
        return []
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        found: list[FieldDiff] = []
        for key in [*before, *(k for k in after if k not in before)]:
            found += diff_values(before.get(key), after.get(key), _key_path(path, str(key)))
        return found
    if isinstance(before, list) and isinstance(after, list):
        old, new = _named(before), _named(after)
        if (
            old is not None
            and new is not None
            and ([n for n in old if n in new] == [n for n in new if n in old])
        ):
            found = []
            for name in [*old, *(n for n in new if n not in old)]:
                found += diff_values(old.get(name), new.get(name), f"{path}[name={name}]")
            return found
        if len(before) == len(after) and (
            all(isinstance(v, Mapping) for v in (*before, *after))
            or not any(isinstance(v, Mapping | list) for v in (*before, *after))
        ):
            # Same length: item by item (a changed flag in ``args`` is one field, not the list).
            found = []
            for i, (b, a) in enumerate(zip(before, after, strict=True)):
                found += diff_values(b, a, f"{path}[{i}]")
            return found
    return [FieldDiff(path or "(inputs)", before, after)]


def _bare(path: str) -> str:
    return _INDEX.sub("", path)


def _matches(path: str, prefixes: Iterable[str]) -> list[str]:
    bare = _bare(path)
    return [p for p in prefixes if bare == p or bare.startswith(p + ".")]


# --------------------------------------------------------------------------------------------
# Identity


def change_id(record: Mapping[str, Any]) -> str:
    """``<Kind>/<namespace or _cluster>/<name>`` for a Kubernetes object, else the URN."""
    parsed = api_version_kind(str(record["type"]))
    if parsed is None:
        return str(record["urn"])
    kind = parsed[1]
    metadata = (record.get("inputs") or {}).get("metadata") or {}
    name = metadata.get("name") or record["name"]
    namespace = (
        CLUSTER_DIR if kind in CLUSTER_SCOPED_KINDS else metadata.get("namespace") or "default"
    )
    return f"{kind}/{namespace}/{name}"


def _kind(record: Mapping[str, Any]) -> str | None:
    parsed = api_version_kind(str(record["type"]))
    return parsed[1] if parsed else None


# --------------------------------------------------------------------------------------------
# Impact


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
    kind: str, ident: str, diffs: Sequence[FieldDiff], base: Mapping, head: Mapping
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


def _configmap_impact(
    diffs: Sequence[FieldDiff], head: Mapping, workloads: Sequence[Mapping[str, Any]]
) -> tuple[str, str]:
    keys = {d.path for d in diffs}
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


def _aws_impact(record_type: str, diffs: Sequence[FieldDiff]) -> tuple[str, str]:
    paths = [d.path for d in diffs]
    if record_type == "aws:eks/nodeGroup:NodeGroup":
        rolling = [
            p for p in paths if _matches(p, ("launchTemplate.version", "version", "releaseVersion"))
        ]
        if rolling:
            return "in-place", (
                f"node group updated in place, and its nodes are replaced by a rolling update "
                f"({', '.join(rolling)}): EKS drains each old node and terminates it"
            )
        if all(_matches(p, ("scalingConfig",)) for p in paths):
            return "in-place", (
                "node group scaling bounds change in place; nodes are added or removed by the "
                "cluster autoscaler, running nodes stay"
            )
    if record_type == "aws:ec2/launchTemplate:LaunchTemplate":
        return "in-place", (
            "a new launch template version; node groups on it replace their nodes by a rolling "
            "update once they point at it (the version number is known only at deploy: that "
            "node-group update shows only in the real preview)"
        )
    return "in-place", "updated in place (no replace-on-change argument changed)"


def impact_of(
    action: str,
    base: Mapping[str, Any] | None,
    head: Mapping[str, Any] | None,
    diffs: Sequence[FieldDiff],
    workloads: Sequence[Mapping[str, Any]] = (),
) -> tuple[str, str]:
    """``(effect, sentence)`` for one change."""
    record = head if head is not None else base
    assert record is not None
    rtype = str(record["type"])
    kind = _kind(record)
    ident = change_id(record)
    if action == "create":
        if kind in WORKLOAD_KINDS:
            return "create", f"created: the pods of {ident} start"
        return "create", "created"
    if action == "delete":
        if kind in WORKLOAD_KINDS:
            return "delete", f"deleted: the pods of {ident} stop"
        return "delete", "deleted"
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
        if kind == "HorizontalPodAutoscaler":
            return "in-place", (
                "autoscaler bounds or target change in place; the HPA moves the replica count "
                "into the new range at its next sync, running pods do not restart"
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
            return "replace", (
                f"replaced: AWS cannot change {', '.join(replaced)} in place (provider ForceNew), "
                "so a new one is created and the old one deleted"
            )
        return _aws_impact(rtype, diffs)
    return (
        "unknown",
        "unknown offline (no replace-on-change table for this type): see the real preview",
    )


# --------------------------------------------------------------------------------------------
# The change set


def _finding_key(f: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return (str(f.get("rule")), str(f.get("level")), str(f.get("resource")), str(f.get("message")))


def compare(
    base: Sequence[Mapping[str, Any]],
    head: Sequence[Mapping[str, Any]],
    base_findings: Sequence[Mapping[str, Any]] = (),
    head_findings: Sequence[Mapping[str, Any]] = (),
) -> ChangeSet:
    """Every change from ``base`` to ``head`` (records in ``resources.json`` shape), in the
    head's declaration order, deletions last in the base's order."""
    old = {r["urn"]: r for r in base if r.get("custom", True)}
    new = {r["urn"]: r for r in head if r.get("custom", True)}
    workloads = [r for r in head if _kind(r) in WORKLOAD_KINDS]
    old_keys = {_finding_key(f) for f in base_findings}
    new_keys = {_finding_key(f) for f in head_findings}
    ids = {str(r["urn"]): change_id(r) for r in [*base, *head]}
    # Each finding also names its resource the way changes do (``id``; "(stack)" for a rule
    # about the whole stack).
    added = tuple(
        {**f, "id": ids.get(str(f.get("resource")), "(stack)")}
        for f in head_findings
        if _finding_key(f) not in old_keys
    )
    resolved = tuple(
        {**f, "id": ids.get(str(f.get("resource")), "(stack)")}
        for f in base_findings
        if _finding_key(f) not in new_keys
    )
    by_urn: dict[str, list[str]] = {}
    for f in added:
        by_urn.setdefault(str(f.get("resource")), []).append(
            f"{f.get('level')} {f.get('rule')}: {f.get('message')}"
        )

    changes: list[Change] = []

    def add(action: str, b: Mapping | None, h: Mapping | None) -> None:
        record = h if h is not None else b
        assert record is not None
        diffs = tuple(diff_values((b or {}).get("inputs") or {}, (h or {}).get("inputs") or {}))
        if action == "update" and not diffs:
            return
        effect, impact = impact_of(action, b, h, diffs, workloads)
        urn = str(record["urn"])
        changes.append(
            Change(
                id=change_id(record),
                urn=urn,
                type=str(record["type"]),
                action=action,
                diffs=diffs,
                effect=effect,
                impact=impact,
                policy=tuple(by_urn.get(urn, ())),
            )
        )

    for urn, record in new.items():
        add("update" if urn in old else "create", old.get(urn), record)
    for urn, record in old.items():
        if urn not in new:
            add("delete", record, None)
    return ChangeSet(tuple(changes), len(set(old) | set(new)), added, resolved)


# --------------------------------------------------------------------------------------------
# Showing a field's diff


def diff_lines(d: FieldDiff) -> list[str]:
    """``-``/``+`` lines of one field for a ```` ```diff ```` block; multi-line text as a
    unified diff of its lines."""
    if isinstance(d.before, str) and isinstance(d.after, str) and "\n" in d.before + d.after:
        body = difflib.unified_diff(d.before.splitlines(), d.after.splitlines(), lineterm="", n=2)
        return [f"  {d.path}:", *(f"{line}" for line in list(body)[2:])]
    lines = [f"  {d.path}:"]
    if d.before is not None:
        lines.append(f"- {json.dumps(d.before, sort_keys=True, ensure_ascii=False)}")
    if d.after is not None:
        lines.append(f"+ {json.dumps(d.after, sort_keys=True, ensure_ascii=False)}")
    return lines
