"""Karpenter NodePool rules (EKS Auto Mode capacity): limits, the GPU taint, an on-demand
fallback for spot, and disruption that keeps serving pods within their PodDisruptionBudgets.

A NodePool is `kubernetes:karpenter.sh/v1:NodePool`; its inputs are the object's own fields.
A NodePool is a GPU pool when its requirements pick GPU instance types or families or a GPU
count, or when it limits or taints `nvidia.com/gpu`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from ._helpers import as_list, get, judge, of_type
from ._k8s import GPU_RESOURCE, PDB, pod_labels, pod_spec, selector_matches
from .kubernetes_stack import serving_deployments
from .nodes import NODE_GROUP, NODE_POOL, is_gpu_instance_type

CAPACITY_TYPE = "karpenter.sh/capacity-type"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"
GPU_SELECTING_LABELS = (
    "eks.amazonaws.com/instance-gpu-count",
    "eks.amazonaws.com/instance-gpu-name",
    "eks.amazonaws.com/instance-gpu-manufacturer",
    "karpenter.k8s.aws/instance-gpu-count",
    "karpenter.k8s.aws/instance-gpu-name",
)
FAMILY_LABELS = ("eks.amazonaws.com/instance-family", "karpenter.k8s.aws/instance-family")
DEFAULT_MAX_GPUS = 10
_QUANTITY = re.compile(r"^\d+$")


def _requirements(props: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = get(props, "spec", "template", "spec", "requirements")
    return [r for r in as_list(found) if isinstance(r, Mapping)]


def _values(requirement: Mapping[str, Any]) -> list[str]:
    return [str(v) for v in as_list(get(requirement, "values"))]


def _taints(props: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = get(props, "spec", "template", "spec", "taints")
    return [t for t in as_list(found) if isinstance(t, Mapping)]


def _limits(props: Mapping[str, Any]) -> Mapping[str, Any]:
    found = get(props, "spec", "limits", default={})
    return found if isinstance(found, Mapping) else {}


def is_gpu_node_pool(props: Mapping[str, Any], *, by_taint: bool = True) -> bool:
    """A NodePool that launches GPU nodes (requirements or limits say so; optionally its taint)."""
    for requirement in _requirements(props):
        key = get(requirement, "key")
        if get(requirement, "operator") != "In":
            continue
        values = _values(requirement)
        if key == INSTANCE_TYPE and any(is_gpu_instance_type(v) for v in values):
            return True
        if key in FAMILY_LABELS and any(is_gpu_instance_type(f"{v}.x") for v in values):
            return True
        if key in GPU_SELECTING_LABELS and any(v not in ("0", "none") for v in values):
            return True
    if GPU_RESOURCE in _limits(props):
        return True
    return by_taint and any(get(t, "key") == GPU_RESOURCE for t in _taints(props))


def _quantity(value: Any) -> int | None:
    """A whole-number limit (`"12"` or 12); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, str) and _QUANTITY.match(value) else None


def _limits_rule(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != NODE_POOL:
        return
    limits = _limits(args.props)
    if "cpu" not in limits:
        report(
            "The NodePool sets no spec.limits.cpu: nothing stops it from launching nodes without "
            "end (a crash-looping or mis-sized workload would). Set limits for cpu."
        )
    if not is_gpu_node_pool(args.props):
        return
    if GPU_RESOURCE not in limits:
        report(f"The GPU NodePool sets no spec.limits[{GPU_RESOURCE!r}]: cap its GPUs.")
        return
    gpus = _quantity(limits[GPU_RESOURCE])
    cap = int(args.get_config().get("maxGpus", DEFAULT_MAX_GPUS))
    if gpus is None:
        report(f"spec.limits[{GPU_RESOURCE!r}] is {limits[GPU_RESOURCE]!r}: give a whole number.")
    elif gpus > cap:
        report(f"The NodePool may launch {gpus} GPUs, above this stack's cap of {cap} (maxGpus).")


karpenter_nodepool_limits = ResourceValidationPolicy(
    name="karpenter-nodepool-limits",
    description="NodePools cap their CPU, and GPU NodePools their GPUs within the stack's cap.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_limits_rule,
    config_schema=PolicyConfigSchema(
        properties={
            "maxGpus": {
                "type": "integer",
                "minimum": 1,
                "default": DEFAULT_MAX_GPUS,
                "description": "Most GPUs one NodePool may launch (cost guard).",
            }
        }
    ),
)


def _taint_rule(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != NODE_POOL or not is_gpu_node_pool(args.props, by_taint=False):
        return
    if not any(
        get(t, "key") == GPU_RESOURCE and get(t, "effect") == "NoSchedule"
        for t in _taints(args.props)
    ):
        report(
            f"The GPU NodePool does not taint its nodes {GPU_RESOURCE}:NoSchedule: any pod could "
            "land on a GPU node and keep it (and its cost) alive. Add the taint to "
            "spec.template.spec.taints."
        )


karpenter_gpu_nodepool_taint = ResourceValidationPolicy(
    name="karpenter-gpu-nodepool-taint",
    description="GPU NodePools taint their nodes nvidia.com/gpu:NoSchedule.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_taint_rule,
)


def _capacity_types(props: Mapping[str, Any]) -> set[str]:
    """Capacity types a NodePool may launch. No requirement means on-demand only (Karpenter's
    default); NotIn removes from spot and on-demand."""
    allowed = {"on-demand"}
    for requirement in _requirements(props):
        if get(requirement, "key") != CAPACITY_TYPE:
            continue
        operator = get(requirement, "operator")
        if operator == "In":
            allowed = set(_values(requirement))
        elif operator == "NotIn":
            allowed = {"spot", "on-demand"} - set(_values(requirement))
        elif operator == "Exists":
            allowed = {"spot", "on-demand"}
    return allowed


def _pool_label(props: Mapping[str, Any]) -> Mapping[str, Any]:
    labels = get(props, "labels", default={})
    return labels if isinstance(labels, Mapping) else {}


def _capacity_and_labels(group: PolicyResource) -> tuple[str, Mapping[str, Any]]:
    return str(get(group.props, "capacityType", default="")), _pool_label(group.props)


def _fallback(args: StackValidationArgs, report: ReportViolation) -> None:
    if not args.get_config().get("requireOnDemandFallback", False):
        return
    for pool in of_type(args.resources, NODE_POOL):
        types = judge(lambda p=pool: _capacity_types(p.props))
        if types is not None and "spot" in types and "on-demand" not in types:
            report(
                f"NodePool {pool.name} launches spot capacity only: when spot runs out its pods "
                'stay Pending. Allow "on-demand" in its karpenter.sh/capacity-type requirement '
                "(Karpenter prefers spot and falls back to on-demand).",
                pool.urn,
            )
    groups = [
        (g, judge(lambda g=g: _capacity_and_labels(g))) for g in of_type(args.resources, NODE_GROUP)
    ]
    on_demand = [dict(seen[1]) for _, seen in groups if seen is not None and seen[0] != "SPOT"]
    for group, seen in groups:
        if seen is None or seen[0] != "SPOT":
            continue
        if dict(seen[1]) not in on_demand:
            report(
                f"Node group {group.name} is spot-only and no on-demand node group carries the "
                f"same labels ({dict(seen[1])}): when spot runs out its pods stay Pending. Use "
                "ON_DEMAND, add an on-demand group for the pool, or move to computeMode "
                "autoMode (spot with on-demand fallback).",
                group.urn,
            )


karpenter_spot_fallback = StackValidationPolicy(
    name="karpenter-spot-on-demand-fallback",
    description="Where the stack requires it, spot capacity always has an on-demand fallback.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_fallback,
    config_schema=PolicyConfigSchema(
        properties={
            "requireOnDemandFallback": {
                "type": "boolean",
                "default": False,
                "description": "Spot NodePools must allow on-demand, and spot node groups need "
                "an on-demand group for the same pool.",
            }
        }
    ),
)


def _placed_on(deployment: PolicyResource, pool: PolicyResource) -> bool:
    """The Deployment's pods select this NodePool's node labels (its nodeSelector agrees with
    every label the NodePool sets and names at least one)."""
    selector = get(pod_spec(deployment.resource_type, deployment.props), "nodeSelector")
    labels = get(pool.props, "spec", "template", "metadata", "labels", default={})
    if not isinstance(selector, Mapping) or not isinstance(labels, Mapping):
        return False
    shared = [k for k in selector if k in labels]
    return bool(shared) and all(str(selector[k]) == str(labels[k]) for k in shared)


def _allowed_unavailable(budget: PolicyResource) -> int:
    """Pods a PDB lets go at once, when it says so as a number; 1 otherwise (a percentage or
    minAvailable depends on the replica count, which the HPA owns)."""
    value = _quantity(get(budget.props, "spec", "maxUnavailable"))
    return value if value is not None else 1


def _budget_nodes(pool: PolicyResource) -> list[Any]:
    budgets = get(pool.props, "spec", "disruption", "budgets")
    return [get(b, "nodes") for b in as_list(budgets) if isinstance(b, Mapping)]


def _covering_pdbs(resources: list[PolicyResource], deployment: PolicyResource):
    labels = pod_labels(deployment.resource_type, deployment.props)
    namespace = get(deployment.props, "metadata", "namespace")
    return [
        r
        for r in of_type(resources, PDB)
        if get(r.props, "metadata", "namespace") == namespace
        and selector_matches(get(r.props, "spec", "selector"), labels)
    ]


def _disruption(args: StackValidationArgs, report: ReportViolation) -> None:
    serving = serving_deployments(args.resources)
    for pool in of_type(args.resources, NODE_POOL):
        placed = [d for d in serving if judge(lambda d=d, p=pool: _placed_on(d, p))]
        if not placed:
            continue
        pdbs = {d.urn: judge(lambda d=d: _covering_pdbs(args.resources, d)) for d in placed}
        for deployment in placed:
            if pdbs[deployment.urn] == []:
                report(
                    f"Deployment {deployment.name} runs on NodePool {pool.name} without a "
                    "PodDisruptionBudget: consolidation and expiry could evict all its pods at "
                    "once.",
                    deployment.urn,
                )
        allowed = min(
            (_allowed_unavailable(b) for found in pdbs.values() if found for b in found),
            default=1,
        )
        nodes = judge(lambda p=pool: _budget_nodes(p))
        if nodes is None:
            continue
        if not nodes:
            report(
                f"NodePool {pool.name} sets no spec.disruption.budgets; Auto Mode's default lets "
                f"10% of its nodes go at once. Set budgets with nodes at most {allowed} (the "
                "serving PodDisruptionBudgets' maxUnavailable).",
                pool.urn,
            )
        for value in nodes:
            count = _quantity(value)
            if count is None or count > allowed:
                report(
                    f"NodePool {pool.name} lets {value!r} nodes be disrupted at once; serving "
                    f"pods on it allow {allowed} unavailable (PodDisruptionBudget). Use an "
                    f"absolute nodes budget of at most {allowed}.",
                    pool.urn,
                )


karpenter_disruption_respects_pdb = StackValidationPolicy(
    name="karpenter-disruption-respects-pdb",
    description="NodePools that run serving pods disrupt no more nodes at once than the pods' "
    "PodDisruptionBudgets allow.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_disruption,
)

POLICIES = [
    karpenter_nodepool_limits,
    karpenter_gpu_nodepool_taint,
    karpenter_spot_fallback,
    karpenter_disruption_respects_pdb,
]
