"""EKS Auto Mode capacity: the node IAM role, and per pool a NodeClass and a Karpenter NodePool.

`AutoModeNodeRole` creates the IAM role Auto Mode gives its EC2 instances, with the two managed
policies the EKS user guide lists for it (AmazonEKSWorkerNodeMinimalPolicy,
AmazonEC2ContainerRegistryPullOnly). The cluster names it in ``compute_config``, which makes EKS
create its EC2 access entry (AmazonEKSAutoNodePolicy); the NodeClasses below use the same role, so
no further access entry is needed ("Create a Node Class", EKS user guide).

`AutoModeNodePools` declares, on the cluster, for every pool:

- a ``NodeClass`` (``eks.amazonaws.com/v1``): the node role, the cluster's private subnets and
  security group by id, the root volume size of the pool (the GPU build of TF Serving is several
  GiB), and NetworkPolicy enforcement left on (``DefaultAllow``: policies apply, traffic without
  one is allowed);
- a ``NodePool`` (``karpenter.sh/v1``): the pool label every serving pod selects, the instance
  types of the pool's settings, capacity type(s) (spot pools allow on-demand too: Karpenter
  prefers spot and falls back to on-demand when spot has no capacity), for GPU pools the
  ``nvidia.com/gpu=true:NoSchedule`` taint, limits on CPU (and GPUs) derived from the pool's
  ``maxSize``, consolidation and expiry, and a disruption budget of one node at a time (the
  serving PodDisruptionBudgets allow one unavailable pod, and a 1-GPU node holds one pod);

and, once, the ``amazon-vpc-cni`` ConfigMap that turns on Auto Mode's network policy controller
("Use Network Policies with EKS Auto Mode"): every model declares a NetworkPolicy.

Auto Mode ships the NVIDIA driver and device plugin on its GPU nodes (user guide, "Deploy an
accelerated workload"), so no DaemonSet is needed. A NodePool keeps no idle node: a node starts
when a pod is pending and goes when it has been empty for ``consolidate_after_minutes``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.components.cluster import service_trust_policy
from infra.components.k8s_common import Manifest, metadata
from infra.instances import vcpus
from infra.naming import GPU_TAINT_EFFECT, GPU_TAINT_KEY, GPU_TAINT_VALUE, child
from infra.settings import NodePool, Settings

ROLE_TYPE_TOKEN = "tfserving-eks:automode:AutoModeNodeRole"
TYPE_TOKEN = "tfserving-eks:automode:AutoModeNodePools"
AUTO_NODE_ROLE_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodeMinimalPolicy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPullOnly",
)
NODE_CLASS_API = ("eks.amazonaws.com/v1", "NodeClass")
NODE_POOL_API = ("karpenter.sh/v1", "NodePool")
# Karpenter's well-known labels (karpenter.sh/v1 NodePool requirements).
CAPACITY_TYPE_LABEL = "karpenter.sh/capacity-type"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
ARCH_LABEL = "kubernetes.io/arch"
# EC2/EKS spelling -> Karpenter spelling.
CAPACITY_TYPES = {"ON_DEMAND": ("on-demand",), "SPOT": ("spot", "on-demand")}
# Auto Mode's default, set explicitly so the policy pack and readers see it: how long a draining
# node may wait for its pods before they are deleted regardless of their PDB.
TERMINATION_GRACE_PERIOD = "24h"
NODE_NAME_PREFIX = "tfserving"


def node_pool_name(pool: NodePool) -> str:
    # Prefixed so a pool called "system" never collides with Auto Mode's built-in pools.
    return f"{NODE_NAME_PREFIX}-{pool.name}"


def node_pool_limits(pool: NodePool) -> dict[str, str]:
    """Capacity ceiling of a NodePool: ``maxSize`` nodes of its largest instance type."""
    limits = {"cpu": str(pool.max_size * max(vcpus(t) for t in pool.instance_types))}
    if pool.gpus_per_node:
        limits[GPU_TAINT_KEY] = str(pool.max_size * pool.gpus_per_node)
    return limits


def node_class_spec(
    pool: NodePool, role_name: Any, subnet_ids: Sequence[Any], security_group_id: Any
) -> Manifest:
    """``NodeClass`` spec (EKS user guide, "Node Class Specification")."""
    return {
        "role": role_name,
        "subnetSelectorTerms": [{"id": s} for s in subnet_ids],
        "securityGroupSelectorTerms": [{"id": security_group_id}],
        "snatPolicy": "Random",
        "networkPolicy": "DefaultAllow",
        "networkPolicyEventLogs": "Disabled",
        "ephemeralStorage": {"size": f"{pool.disk_size_gib}Gi"},
    }


def node_pool_spec(
    pool: NodePool,
    node_class_name: str,
    pool_label_key: str,
    consolidate_after_minutes: int,
    expire_after_hours: int,
) -> Manifest:
    """``NodePool`` spec (Karpenter v1 API, as EKS Auto Mode reads it)."""
    template: Manifest = {
        "nodeClassRef": {
            "group": NODE_CLASS_API[0].split("/")[0],
            "kind": NODE_CLASS_API[1],
            "name": node_class_name,
        },
        "requirements": [
            {"key": INSTANCE_TYPE_LABEL, "operator": "In", "values": list(pool.instance_types)},
            {
                "key": CAPACITY_TYPE_LABEL,
                "operator": "In",
                "values": list(CAPACITY_TYPES[pool.capacity_type]),
            },
            {"key": ARCH_LABEL, "operator": "In", "values": ["amd64"]},
        ],
        "expireAfter": f"{expire_after_hours}h",
        "terminationGracePeriod": TERMINATION_GRACE_PERIOD,
    }
    if pool.gpus_per_node:
        template["taints"] = [
            {"key": GPU_TAINT_KEY, "value": GPU_TAINT_VALUE, "effect": GPU_TAINT_EFFECT}
        ]
    return {
        "template": {"metadata": {"labels": {pool_label_key: pool.name}}, "spec": template},
        "disruption": {
            "consolidationPolicy": "WhenEmptyOrUnderutilized",
            "consolidateAfter": f"{consolidate_after_minutes}m",
            # One node at a time: with one serving pod per GPU node this never takes more than
            # the PDBs' one unavailable pod; Karpenter also evicts through the PDBs themselves.
            "budgets": [{"nodes": "1"}],
        },
        "limits": node_pool_limits(pool),
    }


class AutoModeNodeRole(pulumi.ComponentResource):
    """Outputs: ``arn``, ``name`` (wait on ``attachments`` before enabling Auto Mode)."""

    def __init__(
        self, name: str, tags: Mapping[str, str], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(ROLE_TYPE_TOKEN, name, None, opts)
        here = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            child(name, "role"),
            assume_role_policy=service_trust_policy("ec2.amazonaws.com"),
            tags=dict(tags),
            opts=here,
        )
        self.attachments = [
            aws.iam.RolePolicyAttachment(
                child(name, arn.rsplit("/", 1)[-1]), role=role.name, policy_arn=arn, opts=here
            )
            for arn in AUTO_NODE_ROLE_POLICIES
        ]
        self.arn = role.arn
        self.name = role.name
        self.register_outputs({"arn": self.arn, "name": self.name})


@dataclass(frozen=True)
class AutoModeNodePoolsArgs:
    """Every pool of ``settings`` (with its nodeConsolidateAfterMinutes, nodeExpireAfterHours)
    and where its nodes go."""

    settings: Settings
    node_role_name: pulumi.Input[str]
    subnet_ids: pulumi.Input[Sequence[str]]
    security_group_id: pulumi.Input[str]
    pool_label_key: str
    labels: Mapping[str, str]


class AutoModeNodePools(pulumi.ComponentResource):
    """Output: ``node_pool_names`` (pool name -> NodePool name)."""

    def __init__(
        self, name: str, args: AutoModeNodePoolsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        here = pulumi.ResourceOptions(parent=self)
        labels = dict(args.labels)
        # Auto Mode's network policy controller is off until this ConfigMap says otherwise. The
        # vpc-cni add-on (kept while migrating) manages the same object: patchForce lets both
        # write the same value instead of failing on a field conflict.
        k8s.core.v1.ConfigMap(
            child(name, "network-policy"),
            metadata=metadata(
                "amazon-vpc-cni", labels, "kube-system", {"pulumi.com/patchForce": "true"}
            ),
            data={"enable-network-policy-controller": "true"},
            opts=here,
        )
        placement = pulumi.Output.all(args.node_role_name, args.subnet_ids, args.security_group_id)
        names = {}
        for pool in args.settings.pools.values():
            node_class = k8s.apiextensions.CustomResource(
                child(name, f"{pool.name}-class"),
                api_version=NODE_CLASS_API[0],
                kind=NODE_CLASS_API[1],
                metadata=metadata(node_pool_name(pool), labels),
                spec=placement.apply(lambda p, pool=pool: node_class_spec(pool, *p)),
                opts=here,
            )
            k8s.apiextensions.CustomResource(
                child(name, f"{pool.name}-pool"),
                api_version=NODE_POOL_API[0],
                kind=NODE_POOL_API[1],
                metadata=metadata(node_pool_name(pool), labels),
                spec=node_pool_spec(
                    pool,
                    node_pool_name(pool),
                    args.pool_label_key,
                    args.settings.node_consolidate_after_minutes,
                    args.settings.node_expire_after_hours,
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[node_class]),
            )
            names[pool.name] = node_pool_name(pool)
        self.node_pool_names = names
        self.register_outputs({"node_pool_names": names})
