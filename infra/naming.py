"""Names, tags and the node-pool label/taint contract, from one place.

Children of a component are named ``f"{name}-{role}"`` (:func:`child`); Pulumi auto-names the
physical resources. Tags merge base -> component -> caller (later layers win), the order
terraform-aws-modules/eks uses, so a caller can always override what a component sets.
"""

from __future__ import annotations

from collections.abc import Mapping

# The Pulumi project; stack config keys live in its namespace (``tfserving-eks:<key>``).
PROJECT = "tfserving-eks"
# Node label every managed node group carries; GPU pods select their pool by it.
POOL_LABEL_KEY = f"{PROJECT}/pool"
# Taint on every GPU node group so only pods that ask for GPUs (and tolerate it) land there.
GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_TAINT_VALUE = "true"
GPU_TAINT_EFFECT = "NoSchedule"  # Kubernetes spelling; the EKS API spells it NO_SCHEDULE
# The label cluster-autoscaler's AWS provider reads to know a node has GPUs (its GPULabel). Without
# it a new GPU node counts as GPU-less until the device plugin registers `nvidia.com/gpu`, and the
# autoscaler keeps adding nodes for the still-pending pods.
GPU_ACCELERATOR_LABEL_KEY = "k8s.amazonaws.com/accelerator"
GPU_ACCELERATOR_LABEL_VALUE = "nvidia"
# The node label Auto Mode puts on its own nodes (EKS user guide, "Auto Mode supported labels").
COMPUTE_TYPE_LABEL_KEY = "eks.amazonaws.com/compute-type"
AUTO_COMPUTE_TYPE = "auto"


def child(name: str, role: str) -> str:
    """Logical name of a component's child resource."""
    return f"{name}-{role}"


def base_tags(stack: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Tags every AWS resource of the stack carries; ``extra`` (stack config) wins on clashes."""
    return merge_tags({"project": PROJECT, "stack": stack, "managed-by": "pulumi"}, extra)


def merge_tags(*layers: Mapping[str, str] | None) -> dict[str, str]:
    """Merges tag layers left to right; a later layer overrides an earlier one."""
    merged: dict[str, str] = {}
    for layer in layers:
        merged.update(layer or {})
    return merged


def autoscaler_discovery_tags(cluster_name: str) -> dict[str, str]:
    """The ASG tags cluster-autoscaler's auto-discovery and its IAM condition look for."""
    return {
        "k8s.io/cluster-autoscaler/enabled": "true",
        f"k8s.io/cluster-autoscaler/{cluster_name}": "owned",
    }
