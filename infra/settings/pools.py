"""The node pools of a stack, declared: the CPU system pool and the GPU pools by name.

Both kinds answer the same questions (``name``, ``capacity_type``, ``ami_type``,
``gpus_per_node``, ``is_gpu``); the system pool's answers are fixed, a GPU pool's come from its
settings and instance types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts import rules
from infra import allocatable, instances
from infra.settings.declare import Checks, entry_name, setting

SYSTEM_POOL = "system"


def _instance_types(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        raise ValueError("give a non-empty list of instance type names")
    return value


def _cpu_types(value: tuple[str, ...]) -> tuple[str, ...]:
    for t in _instance_types(value):
        if instances.is_known_gpu_family(t):
            raise ValueError(f"{t} is a GPU type; put GPUs in gpuNodePools")
    return value


def _gpu_types(value: tuple[str, ...]) -> tuple[str, ...]:
    counts = set()
    for t in _instance_types(value):
        count = instances.gpu_count(t)
        if count is None:
            known = ", ".join(sorted(instances.GPUS_PER_INSTANCE))
            what = "instance size" if instances.is_known_gpu_family(t) else "GPU instance family"
            raise ValueError(f"unknown {what} {t!r}; NVIDIA x86_64 families: {known}")
        counts.add(count)
    if len(counts) > 1:
        # The scale-from-zero hint is one number per node group; mixed counts would make the
        # autoscaler place pods on nodes that cannot hold them.
        raise ValueError(f"instance types have different GPU counts {sorted(counts)}")
    return value


def _pool_name(name: str) -> str:
    if not rules.is_short_dns_label(name) or name == SYSTEM_POOL:
        raise ValueError("pool names are lowercase DNS labels (max 40 chars) and not 'system'")
    return name


def _check_known(pool: SystemNodePool | GpuNodePool, c: Checks, at: str) -> None:
    # The fit check (infra.settings.fit) needs each type's memory and pod count: fail closed.
    for t in pool.instance_types:
        try:
            allocatable.check_known(t)
        except allocatable.UnknownInstanceType as exc:
            c.fail(f"{at}.instanceTypes", str(exc))


def _check_sizes(pool: SystemNodePool | GpuNodePool, c: Checks, at: str) -> None:
    low, high, desired = pool.min_size, pool.max_size, pool.desired_size
    if low > high:
        c.fail(at, f"minSize {low} is greater than maxSize {high}")
    elif not low <= desired <= high:
        c.fail(at, f"desiredSize {desired} must lie between minSize {low} and maxSize {high}")


@dataclass(frozen=True, kw_only=True)
class SystemNodePool:
    """The CPU node group (on-demand, AL2023 standard AMI). Every field is required."""

    instance_types: tuple[str, ...] = setting(
        doc="EC2 instance types; no GPU types (those go in gpuNodePools).", parse=_cpu_types
    )
    min_size: int = setting(
        doc="Fewest nodes; 1+ whenever maxSize is above 0 (CoreDNS and the autoscaler run here).",
        minimum=0,
    )
    max_size: int = setting(doc="Most nodes the autoscaler may add.", minimum=1)
    desired_size: int = setting(doc="Nodes at creation, between minSize and maxSize.", minimum=0)
    disk_size_gib: int = setting(
        "diskSizeGiB", doc="Root volume size per node.", minimum=20, maximum=16384
    )

    # Not configurable: on-demand capacity, the standard AL2023 AMI, no GPUs.
    name = SYSTEM_POOL
    capacity_type = "ON_DEMAND"
    ami_type = instances.CPU_AMI_TYPES[0]
    gpus_per_node = 0
    is_gpu = False

    def check(self, c: Checks, at: str, stack: Any) -> None:
        _check_sizes(self, c, at)
        _check_known(self, c, at)
        if self.max_size and self.min_size < 1:
            c.fail(f"{at}.minSize", "the system pool needs at least 1 node (CoreDNS, autoscaler)")


@dataclass(frozen=True, kw_only=True)
class GpuNodePool:
    """One GPU pool, tainted and labelled with its pool name: a node group (nodeGroups) or a
    NodePool (autoMode). The pool name is a lowercase DNS label (max 40 characters) other than
    "system"."""

    name: str = entry_name("pool", parse=_pool_name)
    instance_types: tuple[str, ...] = setting(
        doc="NVIDIA x86_64 instance types, all with the same GPU count per node.",
        parse=_gpu_types,
    )
    capacity_type: str = setting(
        doc="On-demand or spot capacity; in autoMode SPOT means spot first with on-demand as "
        "the fallback.",
        default="ON_DEMAND",
        choices=("ON_DEMAND", "SPOT"),
    )
    min_size: int = setting(
        doc="Fewest nodes; 0 lets the pool scale to zero. Node groups only: autoMode keeps no "
        "idle node, so it must be 0 there.",
        minimum=0,
    )
    max_size: int = setting(
        doc="Most nodes; room for every model's maxReplicas plus one rollout surge pod. In "
        "autoMode it sets the NodePool's GPU and CPU limits.",
        minimum=1,
    )
    desired_size: int = setting(doc="Nodes at creation, between minSize and maxSize.", minimum=0)
    disk_size_gib: int = setting(
        "diskSizeGiB",
        doc="Root volume size per node (the GPU build of TF Serving is several GiB).",
        minimum=50,
        maximum=16384,
    )
    ami_type: str = setting(
        doc="EKS AMI type with NVIDIA drivers (node groups; Auto Mode brings its own).",
        default=instances.GPU_AMI_TYPES[0],
        choices=instances.GPU_AMI_TYPES,
    )

    is_gpu = True

    @property
    def gpus_per_node(self) -> int:
        """GPUs of each node (the instance types all have the same count)."""
        return max((instances.gpu_count(t) or 1 for t in self.instance_types), default=1)

    def check(self, c: Checks, at: str, stack: Any) -> None:
        _check_sizes(self, c, at)
        _check_known(self, c, at)
        # Auto Mode launches nodes only for pending pods: a pool minimum would be silently
        # ignored, and the idle cost the settings suggest would be wrong.
        in_bounds = self.min_size <= self.desired_size <= self.max_size  # else reported above
        if stack.compute_mode == "autoMode" and (self.min_size or self.desired_size) and in_bounds:
            c.fail(
                f"{at}.minSize",
                f"minSize {self.min_size} / desiredSize {self.desired_size}: autoMode keeps "
                "no idle node, so set both to 0 (the models' minReplicas keep GPU nodes warm)",
            )


NodePool = SystemNodePool | GpuNodePool
