"""Does a model's pod fit the nodes of its pool? The settings refuse one that cannot be scheduled.

Every pod shape the model runs (`infra.settings.sizing.pod_sizes`: the stable track, and the canary
track while it exists) is held against the allocatable CPU, memory, GPUs and ephemeral storage of
every instance type its pool may launch, in every compute mode the stack uses
(`infra.allocatable`). A pool with several types may launch any of them, so the pod must fit each.
A failure names the setting to change, the pod's figure and how it is made, the node's and how it
is made, and the largest value that would fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra import allocatable
from infra.settings.declare import Checks
from infra.settings.models import ModelSettings
from infra.settings.pools import NodePool
from infra.settings.sizing import (
    OVERHEAD_MIB,
    SYNC_CPU_MILLICORES,
    SYNC_MEMORY_MIB,
    PodSizing,
    pod_sizes,
)


@dataclass(frozen=True)
class Misfit:
    """One resource of one pod shape that a node cannot hold."""

    key: str  # the model's setting that sizes it
    message: str


def _fmt(n: int) -> str:
    return f"{n:,}"


def _nodes(pool: NodePool, compute_mode: str) -> list[allocatable.Allocatable]:
    return [
        allocatable.allocatable(t, mode, pool.disk_size_gib)
        for mode in allocatable.modes_of(compute_mode)
        for t in pool.instance_types
    ]


def _node_words(node: allocatable.Allocatable, pool: NodePool) -> str:
    where = "an Auto Mode" if node.mode == allocatable.AUTO_MODE else "a node-group"
    return f"{where} {node.instance_type} node of pool {pool.name!r}"


def misfits(model: ModelSettings, pool: NodePool, compute_mode: str) -> list[Misfit]:
    """Every resource the model's pods ask more of than the tightest node of ``pool`` offers."""
    found: list[Misfit] = []
    nodes = _nodes(pool, compute_mode)
    shapes: dict[int, list[str]] = {}
    sizes = pod_sizes(model)
    for track, size in sizes.items():  # tracks with the same pod are reported once
        shapes.setdefault(size.versions_on_disk, []).append(track)
    for tracks in shapes.values():
        size = sizes[tracks[0]]
        who = f"the {model.name} pod" + (
            f" ({' and '.join(tracks)} tracks)" if len(sizes) > 1 else ""
        )
        found += _memory(who, size, nodes, pool)
        found += _cpu(who, size, nodes, pool)
        found += _ephemeral(who, size, nodes, pool)
    return found


def _memory(who: str, size: PodSizing, nodes, pool) -> list[Misfit]:
    node = min(nodes, key=lambda n: n.memory_mib)
    need = size.memory_request_mib
    if need <= node.memory_mib:
        return []
    room = (node.memory_mib - OVERHEAD_MIB - SYNC_MEMORY_MIB) // (size.versions_on_disk + 1)
    advice = f"use modelMemoryMiB {_fmt(room)} or less" if room > 0 else "pick larger types"
    return [
        Misfit(
            "modelMemoryMiB",
            f"{who} requests {_fmt(need)} MiB of memory ({size.memory_formula()}), more than "
            f"{_node_words(node, pool)} leaves for pods: {_fmt(node.memory_mib)} MiB "
            f"({node.memory_formula()}); {advice}, keep fewer versions, or pick larger "
            "instance types",
        )
    ]


def _cpu(who: str, size: PodSizing, nodes, pool) -> list[Misfit]:
    node = min(nodes, key=lambda n: n.cpu_millicores)
    need = size.cpu_request_millicores
    if need <= node.cpu_millicores:
        return []
    vcpus = allocatable.spec(node.instance_type).vcpus
    room = node.cpu_millicores - SYNC_CPU_MILLICORES
    return [
        Misfit(
            "cpuMillicores",
            f"{who} requests {_fmt(need)}m CPU (TF Serving {size.model.cpu_millicores}m, "
            f"model-sync {SYNC_CPU_MILLICORES}m), more than {_node_words(node, pool)} leaves "
            f"for pods: {_fmt(node.cpu_millicores)}m ({vcpus} vCPUs less "
            f"{vcpus * 1000 - node.cpu_millicores}m kube-reserved); use cpuMillicores "
            f"{_fmt(room)} or less, or pick larger instance types",
        )
    ]


def _ephemeral(who: str, size: PodSizing, nodes, pool) -> list[Misfit]:
    node = min(nodes, key=lambda n: n.ephemeral_mib)
    need = size.ephemeral_request_mib
    if need <= node.ephemeral_mib:
        return []
    room = node.ephemeral_mib // (size.versions_on_disk + 1)
    how = f"{_fmt(node.disk_mib)} MiB disk less 1 GiB kube-reserved and 10 % eviction" + (
        ", and at most the 80 % a node group at zero announces"
        if node.mode == allocatable.NODE_GROUPS
        else ""
    )
    return [
        Misfit(
            "modelDiskMiB",
            f"{who} requests {_fmt(need)} MiB of ephemeral storage for its model volume "
            f"(({size.versions_on_disk} + 1) x {size.model.model_disk_mib} MiB), more than "
            f"{_node_words(node, pool)} leaves for pods: {_fmt(node.ephemeral_mib)} MiB ({how}); "
            f"use modelDiskMiB {_fmt(room)} or less, or raise the pool's diskSizeGiB",
        )
    ]


def check_fit(model: ModelSettings, pool: NodePool, stack: Any, c: Checks, at: str) -> None:
    """Reports every misfit of ``model`` on ``pool`` under ``at`` (``models.<name>``)."""
    try:
        found = misfits(model, pool, stack.compute_mode)
    except allocatable.UnknownInstanceType:
        return  # the pool's own check names the type
    for m in found:
        c.fail(f"{at}.{m.key}", m.message)
