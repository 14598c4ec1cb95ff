"""How many nodes of each pool a stack runs, at idle, at minReplicas and at maximum scale,
computed from its settings.

Pure: no Pulumi, no AWS. synth's cost report (`infra.cost`) prices these counts, and docs/cost.md
shows them for every committed stack in both compute modes (a test keeps the page equal).

- ``idle``: nobody sends a request. ``nodeGroups`` (and ``migrating``, which still has the node
  groups): the cluster autoscaler never takes a node group below its ``minSize``, and a GPU pool
  keeps enough nodes for the serving pods that ``minReplicas`` holds up. ``autoMode``: a NodePool
  keeps no idle node. GPU nodes run only for the ``minReplicas`` of the models on them and their
  canary tracks' floors (0 when every model idles at zero without a canary); CPU models need
  room for their requests; and Auto Mode's ``general-purpose`` pool starts one node for
  metrics-server, the one add-on that runs as a pod (Auto Mode picks its instance type).
- ``minReplicas``: every model awake at its floor: ``minReplicas`` pods, at least one (a model
  idle at zero, woken), plus its canary track's floor.
- ``maximum``: every pool at ``maxSize`` (the node groups' ceiling; in autoMode the NodePool's
  limits are ``maxSize`` nodes of its largest type).

Pods per node come from the pod's own requests against the node's allocatable resources
(`infra.settings.sizing`, `infra.allocatable`), and on a GPU pool from the GPUs each pod takes.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra import allocatable
from infra.settings import SYSTEM_POOL, ModelSettings, NodePool, Settings
from infra.settings.sizing import pod_sizes

AUTO_MODE_ADD_ON_NODES = 1
SCENARIOS = ("idle", "minReplicas", "maximum")


@dataclass(frozen=True)
class IdleNodes:
    """``count`` nodes of one pool, from ``instance_types`` (None: the cloud's choice)."""

    pool: str
    count: int
    instance_types: tuple[str, ...] | None
    capacity_type: str
    disk_size_gib: int = 0


def _pods(model: ModelSettings, scenario: str) -> int:
    """Serving pods of a model at its floor: the stable track's ``minReplicas`` (at least one
    once awake) and the canary track's own floor (`ModelSettings.canary_min_replicas`: its share
    of ``minReplicas``, at least one pod while its share of requests is above 0, even for a model
    idle at zero; none without a canary track)."""
    stable = model.min_replicas if scenario == "idle" else max(1, model.min_replicas)
    return stable + model.canary_min_replicas


def _serving_nodes(settings: Settings, pool: NodePool, scenario: str) -> int:
    """Nodes of a GPU pool the models on it hold up (no rollout surge)."""
    nodes = 0
    for model in settings.models:
        if model.node_pool == pool.name:
            pods = _pods(model, scenario)
            nodes += -(-pods // model.pods_per_node(pool)) if pods else 0
    return nodes


def _cpu_nodes(settings: Settings, scenario: str, mode: str) -> int:
    """Nodes the CPU models' requests need, on the system pool's largest listed type."""
    pool = settings.system_node_pool
    node = max(
        (allocatable.allocatable(t, mode, pool.disk_size_gib) for t in pool.instance_types),
        key=lambda n: n.cpu_millicores,
    )
    cpu = memory = 0
    for model in settings.models:
        if model.node_pool == SYSTEM_POOL:
            size = pod_sizes(model)["stable"]
            pods = _pods(model, scenario)
            cpu += size.cpu_request_millicores * pods
            memory += size.memory_request_mib * pods
    return max(-(-cpu // node.cpu_millicores), -(-memory // node.memory_mib))


def nodes(settings: Settings, scenario: str = "idle", mode: str | None = None) -> list[IdleNodes]:
    """Nodes running in ``scenario``, per pool, for ``mode`` (default: the stack's own)."""
    mode = mode or settings.compute_mode
    system = settings.system_node_pool
    gpu_pools = settings.gpu_node_pools
    sys_args = (system.instance_types, "ON_DEMAND", system.disk_size_gib)
    found: list[IdleNodes] = []
    if scenario == "maximum":
        if mode not in ("nodeGroups", "migrating"):
            found.append(IdleNodes("general-purpose", AUTO_MODE_ADD_ON_NODES, None, "ON_DEMAND"))
        found.append(IdleNodes(SYSTEM_POOL, system.max_size, *sys_args))
        for pool in gpu_pools:
            found.append(IdleNodes(pool.name, pool.max_size, *_gpu_args(pool)))
        return found
    if mode in ("nodeGroups", "migrating"):
        count = max(system.min_size, _cpu_nodes(settings, scenario, allocatable.NODE_GROUPS))
        found.append(IdleNodes(SYSTEM_POOL, count, *sys_args))
        for pool in gpu_pools:
            count = max(pool.min_size, _serving_nodes(settings, pool, scenario))
            found.append(IdleNodes(pool.name, count, *_gpu_args(pool)))
        return found
    found.append(IdleNodes("general-purpose", AUTO_MODE_ADD_ON_NODES, None, "ON_DEMAND"))
    count = _cpu_nodes(settings, scenario, allocatable.AUTO_MODE)
    found.append(IdleNodes(SYSTEM_POOL, count, *sys_args))
    for pool in gpu_pools:
        found.append(
            IdleNodes(pool.name, _serving_nodes(settings, pool, scenario), *_gpu_args(pool))
        )
    return found


def _gpu_args(pool: NodePool) -> tuple[tuple[str, ...], str, int]:
    return pool.instance_types, pool.capacity_type, pool.disk_size_gib


def idle_nodes(settings: Settings, mode: str | None = None) -> list[IdleNodes]:
    """Nodes running while idle, per pool, for ``mode`` (default: the stack's own)."""
    return nodes(settings, "idle", mode)


def describe(found: list[IdleNodes]) -> str:
    """One line for the cost table, e.g. ``2 x t3.large (system), 0 (gpu)``."""
    parts = []
    for n in found:
        if n.instance_types is None:
            parts.append(f"{n.count} Auto Mode-chosen ({n.pool})")
        elif n.count == 0:
            parts.append(f"0 ({n.pool})")
        else:
            kind = "/".join(n.instance_types)
            spot = " spot" if n.capacity_type == "SPOT" else ""
            parts.append(f"{n.count} x{spot} {kind} ({n.pool})")
    return ", ".join(parts)
