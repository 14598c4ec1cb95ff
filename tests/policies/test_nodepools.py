"""Karpenter NodePool rules: start from the GPU NodePool the program declares for Auto Mode,
change one field, assert the exact message."""

from __future__ import annotations

import pytest

from infra.components.auto_mode import node_pool_spec
from infra.instances import GPU_AMI_TYPES
from infra.settings import GpuNodePool, SystemNodePool
from policies.rules import nodepools
from tests.policies.support import mutate, record, run

NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
POOL_LABEL = "tfserving-eks/pool"
GPU = GpuNodePool(
    name="gpu",
    instance_types=("g5.xlarge", "g6.xlarge"),
    capacity_type="SPOT",
    min_size=0,
    max_size=3,
    desired_size=0,
    disk_size_gib=100,
    ami_type=GPU_AMI_TYPES[0],
)
GPU_POOL = record(NODE_POOL, "auto-mode-gpu-pool", {
    "metadata": {"name": "tfserving-gpu"},
    "spec": node_pool_spec(GPU, "tfserving-gpu", POOL_LABEL, 10, 336),
})  # fmt: skip
LABELS = {"app.kubernetes.io/name": "tfserving", "app.kubernetes.io/instance": "mnist"}
SERVING = record(DEPLOYMENT, "mnist", {
    "metadata": {"name": "mnist", "namespace": "mnist"},
    "spec": {"selector": {"matchLabels": LABELS}, "template": {
        "metadata": {"labels": LABELS},
        "spec": {"nodeSelector": {POOL_LABEL: "gpu"}, "containers": [
            {"name": "tfserving", "image": "tensorflow/serving:2.20.0-gpu"}]}}},
})  # fmt: skip
BUDGET = record(PDB, "mnist-pdb", {
    "metadata": {"name": "mnist", "namespace": "mnist"},
    "spec": {"maxUnavailable": 1, "selector": {"matchLabels": LABELS}},
})  # fmt: skip


def pool_with(change) -> dict:
    return mutate(GPU_POOL, lambda r: change(r["inputs"]["spec"]))


def messages(policy, records, settings=None) -> list[tuple[str | None, str]]:
    return [(r.urn, r.message) for r in run(policy, records, settings)]


@pytest.mark.parametrize("policy", nodepools.POLICIES, ids=lambda p: p.name)
def test_the_programs_gpu_node_pool_passes_every_rule(policy) -> None:
    settings = {"requireOnDemandFallback": True} if policy.name.endswith("fallback") else None
    assert run(policy, [GPU_POOL, SERVING, BUDGET], settings) == []


def test_limits() -> None:
    no_cpu = pool_with(lambda s: s["limits"].pop("cpu"))
    assert messages(nodepools.karpenter_nodepool_limits, [no_cpu]) == [
        (no_cpu["urn"], "The NodePool sets no spec.limits.cpu: nothing stops it from launching "
         "nodes without end (a crash-looping or mis-sized workload would). Set limits for cpu.")
    ]  # fmt: skip
    no_gpus = pool_with(lambda s: s["limits"].pop("nvidia.com/gpu"))
    assert messages(nodepools.karpenter_nodepool_limits, [no_gpus]) == [
        (no_gpus["urn"], "The GPU NodePool sets no spec.limits['nvidia.com/gpu']: cap its GPUs.")
    ]
    assert messages(nodepools.karpenter_nodepool_limits, [GPU_POOL], {"maxGpus": 2}) == [
        (GPU_POOL["urn"], "The NodePool may launch 3 GPUs, above this stack's cap of 2 (maxGpus).")
    ]
    fuzzy = pool_with(lambda s: s["limits"].update({"nvidia.com/gpu": "3k"}))
    assert messages(nodepools.karpenter_nodepool_limits, [fuzzy]) == [
        (fuzzy["urn"], "spec.limits['nvidia.com/gpu'] is '3k': give a whole number.")
    ]


def test_gpu_node_pools_must_taint() -> None:
    untainted = pool_with(lambda s: s["template"]["spec"].pop("taints"))
    expected = [
        (untainted["urn"], "The GPU NodePool does not taint its nodes nvidia.com/gpu:NoSchedule: "
         "any pod could land on a GPU node and keep it (and its cost) alive. Add the taint to "
         "spec.template.spec.taints.")
    ]  # fmt: skip
    assert messages(nodepools.karpenter_gpu_nodepool_taint, [untainted]) == expected
    # Found by family or GPU count as well as by instance type.
    for requirement in (
        {"key": "eks.amazonaws.com/instance-family", "operator": "In", "values": ["g6e"]},
        {"key": "eks.amazonaws.com/instance-gpu-count", "operator": "In", "values": ["1"]},
    ):
        by_family = mutate(untainted, lambda r, q=requirement: r["inputs"]["spec"]["template"][
            "spec"].update(requirements=[q]))  # fmt: skip
        by_family["inputs"]["spec"]["limits"].pop("nvidia.com/gpu")
        assert len(run(nodepools.karpenter_gpu_nodepool_taint, [by_family])) == 1
    cpu = SystemNodePool(
        instance_types=("m6i.large",), min_size=1, max_size=3, desired_size=1, disk_size_gib=50
    )
    cpu_pool = record(NODE_POOL, "cpu", {"spec": node_pool_spec(cpu, "c", POOL_LABEL, 10, 336)})
    assert run(nodepools.karpenter_gpu_nodepool_taint, [cpu_pool]) == []


def test_spot_needs_an_on_demand_fallback_where_required() -> None:
    def capacity(values):
        def change(spec):
            spec["template"]["spec"]["requirements"][1]["values"] = values

        return pool_with(change)

    spot_only = capacity(["spot"])
    required = {"requireOnDemandFallback": True}
    assert messages(nodepools.karpenter_spot_fallback, [spot_only], required) == [
        (spot_only["urn"], "NodePool auto-mode-gpu-pool launches spot capacity only: when spot "
         'runs out its pods stay Pending. Allow "on-demand" in its karpenter.sh/capacity-type '
         "requirement (Karpenter prefers spot and falls back to on-demand).")
    ]  # fmt: skip
    assert run(nodepools.karpenter_spot_fallback, [spot_only]) == []  # dev: not required
    assert run(nodepools.karpenter_spot_fallback, [capacity(["on-demand"])], required) == []
    not_on_demand = pool_with(
        lambda s: s["template"]["spec"]["requirements"].__setitem__(
            1, {"key": "karpenter.sh/capacity-type", "operator": "NotIn", "values": ["on-demand"]}
        )
    )
    assert len(run(nodepools.karpenter_spot_fallback, [not_on_demand], required)) == 1


def test_spot_node_groups_need_an_on_demand_group_for_their_pool() -> None:
    labels = {POOL_LABEL: "gpu", "k8s.amazonaws.com/accelerator": "nvidia"}
    spot = record(NODE_GROUP, "pool-gpu-ng", {"capacityType": "SPOT", "labels": labels})
    required = {"requireOnDemandFallback": True}
    assert messages(nodepools.karpenter_spot_fallback, [spot], required) == [
        (spot["urn"], "Node group pool-gpu-ng is spot-only and no on-demand node group carries "
         "the same labels ({'tfserving-eks/pool': 'gpu', 'k8s.amazonaws.com/accelerator': "
         "'nvidia'}): when spot runs out its pods stay Pending. Use ON_DEMAND, add an on-demand "
         "group for the pool, or move to computeMode autoMode (spot with on-demand fallback).")
    ]  # fmt: skip
    fallback = record(NODE_GROUP, "pool-gpu-od", {"capacityType": "ON_DEMAND", "labels": labels})
    assert run(nodepools.karpenter_spot_fallback, [spot, fallback], required) == []


def test_disruption_stays_within_the_serving_pdbs() -> None:
    policy = nodepools.karpenter_disruption_respects_pdb
    percent = pool_with(lambda s: s["disruption"].update(budgets=[{"nodes": "10%"}]))
    assert messages(policy, [percent, SERVING, BUDGET]) == [
        (percent["urn"], "NodePool auto-mode-gpu-pool lets '10%' nodes be disrupted at once; "
         "serving pods on it allow 1 unavailable (PodDisruptionBudget). Use an absolute nodes "
         "budget of at most 1.")
    ]  # fmt: skip
    unset = pool_with(lambda s: s["disruption"].pop("budgets"))
    assert messages(policy, [unset, SERVING, BUDGET]) == [
        (unset["urn"], "NodePool auto-mode-gpu-pool sets no spec.disruption.budgets; Auto Mode's "
         "default lets 10% of its nodes go at once. Set budgets with nodes at most 1 (the "
         "serving PodDisruptionBudgets' maxUnavailable).")
    ]  # fmt: skip
    assert messages(policy, [GPU_POOL, SERVING]) == [
        (SERVING["urn"], "Deployment mnist runs on NodePool auto-mode-gpu-pool without a "
         "PodDisruptionBudget: consolidation and expiry could evict all its pods at once.")
    ]  # fmt: skip
    # A looser PDB allows a looser budget; pools that run no serving pod are not judged.
    two = mutate(BUDGET, lambda r: r["inputs"]["spec"].update(maxUnavailable=2))
    wide = pool_with(lambda s: s["disruption"].update(budgets=[{"nodes": "2"}]))
    assert run(policy, [wide, SERVING, two]) == []
    elsewhere = mutate(SERVING, lambda r: r["inputs"]["spec"]["template"]["spec"].update(
        nodeSelector={POOL_LABEL: "other"}))  # fmt: skip
    assert run(policy, [percent, elsewhere, BUDGET]) == []
