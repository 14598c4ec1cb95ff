"""What a stack keeps running when nobody sends a request, computed from its settings.

Pure: no Pulumi, no AWS. docs/cost.md quotes :func:`describe` for every committed stack in both
compute modes, and a test keeps the page equal to what this computes.

- ``nodeGroups`` (and ``migrating``, which still has the node groups): the cluster autoscaler
  never takes a node group below its ``minSize``, and a GPU pool keeps enough nodes for the
  serving pods that ``minReplicas`` holds up.
- ``autoMode``: a NodePool keeps no idle node. GPU nodes run only for the ``minReplicas`` of the
  models on them (0 when every model idles at zero); CPU models need room for their requests;
  and Auto Mode's ``general-purpose`` pool starts one node for metrics-server, the one add-on
  that runs as a pod (Auto Mode picks its instance type).
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.instances import vcpus
from infra.settings import SYSTEM_POOL, NodePool, Settings

AUTO_MODE_ADD_ON_NODES = 1


@dataclass(frozen=True)
class IdleNodes:
    """``count`` nodes of one pool, from ``instance_types`` (None: the cloud's choice)."""

    pool: str
    count: int
    instance_types: tuple[str, ...] | None
    capacity_type: str


def _serving_nodes(settings: Settings, pool: NodePool) -> int:
    """Nodes the models on a GPU pool hold up at ``minReplicas`` (no rollout surge)."""
    nodes = 0
    for model in settings.models:
        if model.node_pool == pool.name and model.min_replicas:
            nodes += -(-model.min_replicas // model.pods_per_node(pool))
    return nodes


def _cpu_nodes(settings: Settings) -> int:
    """Nodes the CPU models' requests need at ``minReplicas``, on the largest listed type."""
    pool = settings.system_node_pool
    millicores = sum(
        m.cpu_millicores * m.min_replicas for m in settings.models if m.node_pool == SYSTEM_POOL
    )
    per_node = 1000 * max(vcpus(t) for t in pool.instance_types)
    return -(-millicores // per_node)


def idle_nodes(settings: Settings, mode: str | None = None) -> list[IdleNodes]:
    """Nodes running while idle, per pool, for ``mode`` (default: the stack's own)."""
    mode = mode or settings.compute_mode
    system = settings.system_node_pool
    found: list[IdleNodes] = []
    if mode in ("nodeGroups", "migrating"):
        found.append(IdleNodes(SYSTEM_POOL, system.min_size, system.instance_types, "ON_DEMAND"))
        for pool in settings.gpu_node_pools:
            count = max(pool.min_size, _serving_nodes(settings, pool))
            found.append(IdleNodes(pool.name, count, pool.instance_types, pool.capacity_type))
        return found
    found.append(IdleNodes("general-purpose", AUTO_MODE_ADD_ON_NODES, None, "ON_DEMAND"))
    found.append(IdleNodes(SYSTEM_POOL, _cpu_nodes(settings), system.instance_types, "ON_DEMAND"))
    for pool in settings.gpu_node_pools:
        count = _serving_nodes(settings, pool)
        found.append(IdleNodes(pool.name, count, pool.instance_types, pool.capacity_type))
    return found


def describe(nodes: list[IdleNodes]) -> str:
    """One line for the cost table, e.g. ``2 x t3.large (system), 0 (gpu)``."""
    parts = []
    for n in nodes:
        if n.instance_types is None:
            parts.append(f"{n.count} Auto Mode-chosen ({n.pool})")
        elif n.count == 0:
            parts.append(f"0 ({n.pool})")
        else:
            kind = "/".join(n.instance_types)
            spot = " spot" if n.capacity_type == "SPOT" else ""
            parts.append(f"{n.count} x{spot} {kind} ({n.pool})")
    return ", ".join(parts)
