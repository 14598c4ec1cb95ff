"""What a node of an instance type leaves for pods: capacity minus kubelet and system reserves
minus the hard eviction thresholds (Kubernetes "Reserve Compute Resources for System Daemons":
allocatable = capacity - kube-reserved - system-reserved - eviction-hard). Pure.

Where each figure comes from:

- **Max pods.** The ENI limit, ``ENIs x (IPv4 per ENI - 1) + 2`` (amazon-eks-ami
  ``nodeadm/internal/kubelet/eni_max_pods.go`` ``calculateStandardMaxPods``; per type in
  ``infra/instance_specs.json``). A managed node group without a custom AMI caps it at 110 below
  30 vCPUs and at 250 above (EKS user guide, "Choose an optimal Amazon EC2 node instance type",
  how maxPods is determined); EKS Auto Mode caps it at 110 (same page, "Considerations for EKS
  Auto Mode").
- **kube-reserved**, the same on AL2023 node groups and on Bottlerocket (EKS Auto Mode):
  memory ``11 x maxPods + 255`` MiB; CPU 6 % of the first core, 1 % of the second, 0.5 % of the
  third and fourth, 0.25 % of the rest; ephemeral storage 1 GiB. Sources: amazon-eks-ami
  ``nodeadm/internal/kubelet/config.go`` (``withDefaultReservedResources``,
  ``getCPUMillicoresToReserve``, ``getMemoryMebibytesToReserve``), and for Auto Mode, which is
  Karpenter on Bottlerocket, karpenter-provider-aws ``pkg/providers/instancetype/types.go``
  (``kubeReservedResources``, taken from Bottlerocket's own defaults). Neither sets
  system-reserved.
- **Hard eviction**: ``memory.available`` 100 MiB and ``nodefs.available`` 10 % (nodeadm's
  kubelet defaults in ``config.go``; Karpenter's ``evictionThreshold``).
- **Memory capacity**: the instance's memory less what the hypervisor and kernel keep, which the
  kubelet never sees. Karpenter (so Auto Mode) estimates it as 7.5 % of the instance's memory
  before it launches a node (``--vm-memory-overhead-percent``, default 0.075,
  ``pkg/operator/options/options.go``); the same estimate is used here for node groups.
- **Ephemeral storage**: the node's data volume, ``diskSizeGiB`` (node groups: the launch
  template's volume, which holds images and pod data; Auto Mode: the NodeClass's
  ``ephemeralStorage.size``, Bottlerocket's data volume). A node group at zero is started by the
  cluster autoscaler only for a pod that fits the template its ASG tags announce, which is
  :data:`EPHEMERAL_STORAGE_SHARE` of the disk (``infra.components.nodegroups``), so a node group
  node counts the smaller of the two.

Not counted: the requests of DaemonSets on the node (kube-proxy, aws-node, the NVIDIA device
plugin, the DCGM exporter: a few hundred millicores and MiB); leave that much headroom.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from infra import instances

SPECS_FILE = Path(__file__).with_name("instance_specs.json")
NODE_GROUPS, AUTO_MODE = "nodeGroups", "autoMode"
# Share of a node group's disk announced as ephemeral storage for scale-from-zero. The root volume
# also holds the OS, the container images (the GPU build of TF Serving is several GiB) and the
# kubelet's eviction reserve, so announcing all of it would let the autoscaler start a node that
# then cannot admit the pod; announcing nothing (no tag) makes it refuse every pod that requests
# ephemeral storage, as the sync sidecar does for the model volume.
EPHEMERAL_STORAGE_SHARE = 0.8
VM_MEMORY_OVERHEAD = 0.075
EVICTION_MEMORY_MIB = 100
EVICTION_NODEFS_SHARE = 0.10
KUBE_RESERVED_EPHEMERAL_MIB = 1024
# (start millicores, end millicores, percent in hundredths of a percent), amazon-eks-ami config.go.
_CPU_RESERVE_RANGES = ((0, 1000, 600), (1000, 2000, 100), (2000, 4000, 50), (4000, None, 25))


class UnknownInstanceType(ValueError):
    """No memory or pod-count figures for an instance type (add it to instance_specs.json)."""


@dataclass(frozen=True)
class InstanceSpec:
    name: str
    vcpus: int
    memory_mib: int
    gpus: int
    eni_max_pods: int


@cache
def _table() -> dict[str, dict[str, int]]:
    return dict(json.loads(SPECS_FILE.read_text())["types"])


def known_types() -> tuple[str, ...]:
    return tuple(_table())


def check_known(instance_type: str) -> None:
    """Raises :class:`UnknownInstanceType` for a type without figures."""
    spec(instance_type)


def spec(instance_type: str) -> InstanceSpec:
    row = _table().get(instance_type)
    if row is None:
        raise UnknownInstanceType(
            f"{instance_type}: no memory and pod-count figures for this type in "
            "infra/instance_specs.json; add its row (EC2 instance type specifications and "
            "amazon-eks-ami instance-info.jsonl) or pick a listed type"
        )
    return InstanceSpec(
        name=instance_type,
        vcpus=instances.vcpus(instance_type),
        memory_mib=int(row["memoryMiB"]),
        gpus=instances.gpu_count(instance_type) or 0,
        eni_max_pods=int(row["eniMaxPods"]),
    )


def max_pods(s: InstanceSpec, mode: str) -> int:
    cap = 110 if mode == AUTO_MODE or s.vcpus < 30 else 250
    return min(s.eni_max_pods, cap)


def kube_reserved_cpu_millicores(vcpus: int) -> int:
    total = vcpus * 1000
    reserved = 0
    for start, end, hundredths in _CPU_RESERVE_RANGES:
        if total > start:
            top = total if end is None else min(total, end)
            reserved += (top - start) * hundredths // 10000
    return reserved


def kube_reserved_memory_mib(pods: int) -> int:
    return 11 * pods + 255


@dataclass(frozen=True)
class Allocatable:
    """What a node of ``instance_type`` in ``mode`` offers pods, and how it was reached."""

    instance_type: str
    mode: str
    cpu_millicores: int
    memory_mib: int
    ephemeral_mib: int
    gpus: int
    pods: int
    memory_capacity_mib: int
    disk_mib: int

    def memory_formula(self) -> str:
        reserved = kube_reserved_memory_mib(self.pods)
        return (
            f"{self.memory_capacity_mib:,} MiB capacity - {reserved} MiB kube-reserved "
            f"(11 x {self.pods} pods + 255) - {EVICTION_MEMORY_MIB} MiB eviction"
        )


def allocatable(instance_type: str, mode: str, disk_size_gib: int) -> Allocatable:
    """Allocatable resources of one node; ``mode`` is :data:`NODE_GROUPS` or :data:`AUTO_MODE`.

    Raises :class:`UnknownInstanceType` for a type without figures."""
    s = spec(instance_type)
    pods = max_pods(s, mode)
    capacity = s.memory_mib - math.ceil(s.memory_mib * VM_MEMORY_OVERHEAD)
    memory = capacity - kube_reserved_memory_mib(pods) - EVICTION_MEMORY_MIB
    cpu = s.vcpus * 1000 - kube_reserved_cpu_millicores(s.vcpus)
    disk = disk_size_gib * 1024
    ephemeral = disk - KUBE_RESERVED_EPHEMERAL_MIB - math.ceil(disk * EVICTION_NODEFS_SHARE)
    if mode == NODE_GROUPS:
        ephemeral = min(ephemeral, ephemeral_storage_hint_gib(disk_size_gib) * 1024)
    return Allocatable(instance_type, mode, cpu, memory, ephemeral, s.gpus, pods, capacity, disk)


def ephemeral_storage_hint_gib(disk_size_gib: int) -> int:
    """Ephemeral storage a node group's node is announced with while the group is at zero."""
    return int(disk_size_gib * EPHEMERAL_STORAGE_SHARE)


def modes_of(compute_mode: str) -> tuple[str, ...]:
    """Where a stack's pods may land: node groups, Auto Mode, or (migrating) both."""
    return {"nodeGroups": (NODE_GROUPS,), "autoMode": (AUTO_MODE,)}.get(
        compute_mode, (NODE_GROUPS, AUTO_MODE)
    )
