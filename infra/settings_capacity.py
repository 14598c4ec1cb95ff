"""Stack settings checks for capacity: the system and GPU node pools, the models they serve
(replicas, sizing, batching) and the compute mode (node groups or EKS Auto Mode)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from contracts import rules
from contracts.tfconfig import BatchingParameters, ConfigError, ModelConfig, VersionPolicy
from infra import instances
from infra.config_keys import (
    BATCHING_OBJECT,
    GPU_POOL_OBJECT,
    KEYS_BY_NAME,
    MODEL_OBJECT,
    SYSTEM_POOL_OBJECT,
)
from infra.settings_checker import (
    Checker,
    bounded,
    declared_key_range,
    field_value,
    scaling,
)
from infra.settings_types import SYSTEM_POOL, ModelSettings, NodePool

# The system pool is not configurable in these two: on-demand capacity, the standard AL2023 AMI.
_SYSTEM_POOL_CAPACITY = "ON_DEMAND"
_SYSTEM_POOL_AMI = instances.CPU_AMI_TYPES[0]


def _instance_types(c: Checker, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        c.fail(key, "give a non-empty list of instance type names")
        return ()
    return tuple(value)


def check_system_pool(c: Checker, spec: dict[str, Any]) -> NodePool:
    key = "systemNodePool"
    c.unknown_fields(key, spec, SYSTEM_POOL_OBJECT.names)
    types = _instance_types(c, f"{key}.instanceTypes", spec.get("instanceTypes"))
    for t in types:
        if instances.is_known_gpu_family(t):
            c.fail(f"{key}.instanceTypes", f"{t} is a GPU type; put GPUs in gpuNodePools")
    low, high, desired = scaling(
        c, key, spec, SYSTEM_POOL_OBJECT, "minSize", "maxSize", "desiredSize"
    )
    if high and low < 1:
        c.fail(f"{key}.minSize", "the system pool needs at least 1 node (CoreDNS, autoscaler)")
    disk = bounded(c, key, spec, SYSTEM_POOL_OBJECT, "diskSizeGiB")
    return NodePool(
        SYSTEM_POOL,
        types,
        low,
        high,
        desired,
        disk,
        capacity_type=_SYSTEM_POOL_CAPACITY,
        ami_type=_SYSTEM_POOL_AMI,
        gpus_per_node=0,
    )


def check_gpu_pool(c: Checker, name: str, spec: Any) -> NodePool | None:
    key = f"gpuNodePools.{name}"
    if not isinstance(spec, dict):
        c.fail(key, "each pool is an object of instanceTypes, capacityType, minSize, ...")
        return None
    if not rules.is_short_dns_label(name) or name == SYSTEM_POOL:
        c.fail(key, "pool names are lowercase DNS labels (max 40 chars) and not 'system'")
    c.unknown_fields(key, spec, GPU_POOL_OBJECT.names)
    types = _instance_types(c, f"{key}.instanceTypes", spec.get("instanceTypes"))
    counts = set()
    for t in types:
        count = instances.gpu_count(t)
        if count is None:
            known = ", ".join(sorted(instances.GPUS_PER_INSTANCE))
            what = "instance size" if instances.is_known_gpu_family(t) else "GPU instance family"
            c.fail(f"{key}.instanceTypes", f"unknown {what} {t!r}; NVIDIA x86_64 families: {known}")
        else:
            counts.add(count)
    if len(counts) > 1:
        # The scale-from-zero hint is one number per node group; mixed counts would make the
        # autoscaler place pods on nodes that cannot hold them.
        c.fail(f"{key}.instanceTypes", f"instance types have different GPU counts {sorted(counts)}")
    capacity = field_value(spec, GPU_POOL_OBJECT["capacityType"])
    c.one_of(f"{key}.capacityType", capacity, GPU_POOL_OBJECT["capacityType"])
    ami = field_value(spec, GPU_POOL_OBJECT["amiType"])
    c.one_of(f"{key}.amiType", ami, GPU_POOL_OBJECT["amiType"])
    low, high, desired = scaling(c, key, spec, GPU_POOL_OBJECT, "minSize", "maxSize", "desiredSize")
    disk = bounded(c, key, spec, GPU_POOL_OBJECT, "diskSizeGiB")
    gpus = max(counts) if counts else 1
    return NodePool(name, types, low, high, desired, disk, capacity, ami, gpus)


def check_model(
    c: Checker, name: str, spec: Any, pools: Mapping[str, NodePool]
) -> ModelSettings | None:
    key = f"models.{name}"
    if not isinstance(spec, dict):
        c.fail(key, "each model is an object of versionPolicy, labels, nodePool, ...")
        return None
    if not rules.is_model_name(name):
        c.fail(key, str(rules.problem(rules.validate_model_name, name)))
    m = MODEL_OBJECT
    c.unknown_fields(key, spec, m.names)
    policy = VersionPolicy.latest()
    try:
        policy = VersionPolicy.parse(str(field_value(spec, m["versionPolicy"])))
    except ConfigError as exc:
        c.fail(f"{key}.versionPolicy", str(exc))
    labels = field_value(spec, m["labels"])
    if not isinstance(labels, dict):
        c.fail(f"{key}.labels", "give a map of label -> version, e.g. {stable: 3, canary: 4}")
        labels = {}
    try:
        # TF Serving's own rules: label syntax, and a label must be a version the policy serves.
        ModelConfig(name=name, base_path=f"/models/{name}", policy=policy, labels=labels)
    except ConfigError as exc:
        c.fail(f"{key}.labels", str(exc))
    pool_name = field_value(spec, m["nodePool"])
    pool = pools.get(pool_name)
    if pool is None:
        c.fail(
            f"{key}.nodePool",
            f"{pool_name!r} is not 'system' or a gpuNodePools name "
            f"({', '.join(sorted(pools)) or 'none defined'})",
        )
    low, high, _ = scaling(c, key, spec, m, "minReplicas", "maxReplicas", None)
    gpus = bounded(c, key, spec, m, "gpus")
    if pool is not None and pool.is_gpu and not 1 <= gpus <= pool.gpus_per_node:
        c.fail(
            f"{key}.gpus",
            f"{gpus} GPUs do not fit pool {pool_name!r} "
            f"({pool.gpus_per_node} per node); use 1-{pool.gpus_per_node}",
        )
    if pool is not None and not pool.is_gpu and gpus:
        c.fail(f"{key}.gpus", f"pool {pool_name!r} has no GPUs; set gpus to 0 or pick a GPU pool")
    cpu = bounded(c, key, spec, m, "cpuMillicores")
    memory = bounded(c, key, spec, m, "modelMemoryMiB")
    disk = bounded(c, key, spec, m, "modelDiskMiB")
    target = bounded(c, key, spec, m, "targetCpuUtilization")
    canary_weight = bounded(c, key, spec, m, "canaryWeight")
    keep = field_value(spec, m["maxVersionsOnDisk"])
    if policy.kind == "all":
        keep = bounded(c, key, spec, m, "maxVersionsOnDisk")
    elif keep is not None:
        c.fail(f"{key}.maxVersionsOnDisk", f"only for the 'all' policy; {policy} already bounds it")
    namespaces = field_value(spec, m["allowedNamespaces"])
    if not isinstance(namespaces, list) or not all(rules.is_short_dns_label(n) for n in namespaces):
        c.fail(f"{key}.allowedNamespaces", "give a list of namespace names (DNS labels)")
        namespaces = []
    batching = _batching(c, f"{key}.batching", field_value(spec, m["batching"]))
    wake = field_value(spec, m["wakeOnRequest"])
    if not isinstance(wake, bool):
        c.fail(f"{key}.wakeOnRequest", "give true or false")
        wake = False
    elif wake and low != 0:
        c.fail(
            f"{key}.wakeOnRequest",
            f"only for a model idle at zero: minReplicas is {low}, set it to 0 or drop "
            "wakeOnRequest (a warm model needs no wake-up)",
        )
    return ModelSettings(
        name=name,
        version_policy=policy,
        labels=MappingProxyType(dict(labels)),
        node_pool=pool_name,
        gpus=gpus,
        min_replicas=low,
        max_replicas=high,
        target_cpu_utilization=target,
        cpu_millicores=cpu,
        model_memory_mib=memory,
        model_disk_mib=disk,
        max_versions_on_disk=keep,
        allowed_namespaces=tuple(namespaces),
        batching=batching,
        canary_weight=canary_weight,
        wake_on_request=wake,
    )


def surge_nodes(pool: NodePool, model: ModelSettings) -> int:
    """GPU nodes one model needs at ``maxReplicas`` while a rollout adds its surge pod.

    The Deployment rolls with ``maxSurge: 1, maxUnavailable: 0``: at maximum scale the new pod
    comes on top of ``maxReplicas`` running ones. A node holds ``gpus_per_node // gpus`` pods.
    """
    pods_per_node = max(1, pool.gpus_per_node // max(1, model.gpus))
    return -(-(model.max_replicas + 1) // pods_per_node)


def check_rollout_headroom(c: Checker, pools: list[NodePool], models: list[ModelSettings]) -> None:
    # A pool too small for the surge pod stalls every rollout at maximum scale: the new pod stays
    # Pending, and with maxUnavailable 0 no old pod goes away to make room. Models sharing a pool
    # may all be at their maximum at once, so their needs add up.
    for pool in pools:
        served = [
            m for m in models if m.node_pool == pool.name and 1 <= m.gpus <= pool.gpus_per_node
        ]
        if not served or pool.min_size > pool.max_size:  # no models, or bounds already reported
            continue
        needed = sum(surge_nodes(pool, m) for m in served)
        if pool.max_size < needed:
            each = ", ".join(
                f"{m.name} (maxReplicas {m.max_replicas} + 1 surge pod, {m.gpus} GPU each)"
                for m in served
            )
            c.fail(
                f"gpuNodePools.{pool.name}.maxSize",
                f"{pool.max_size} nodes cannot hold a rollout at maximum scale: {each} "
                f"{'needs' if len(served) == 1 else 'together need'} {needed} "
                f"{pool.gpus_per_node}-GPU nodes; raise maxSize to {needed} or lower maxReplicas",
            )


# NVIDIA x86_64 families EKS Auto Mode launches (EKS user guide, "EKS Auto Mode supported
# instance reference"; p3 is absent there, p3dn listed), of the families instances.py knows.
AUTO_MODE_GPU_FAMILIES = frozenset(instances.GPUS_PER_INSTANCE) - {"p3"}


def _pool_key(pool: NodePool) -> str:
    return "systemNodePool" if pool.name == SYSTEM_POOL else f"gpuNodePools.{pool.name}"


def check_compute_mode(
    c: Checker, v: Mapping[str, Any], system: NodePool, gpu_pools: list[NodePool]
) -> None:
    c.one_of("computeMode", v["computeMode"], KEYS_BY_NAME["computeMode"])
    declared_key_range(c, v, "nodeConsolidateAfterMinutes")
    declared_key_range(c, v, "nodeExpireAfterHours")
    if v["computeMode"] != "nodeGroups":
        # NodePool CPU limits come from vCPUs, and Auto Mode launches nothing with one vCPU or
        # less (EKS user guide, "EKS Auto Mode supported instance reference").
        for pool in (system, *gpu_pools):
            for t in pool.instance_types:
                if pool.is_gpu and instances.gpu_count(t) is None:
                    continue  # reported as an unknown GPU type
                try:
                    enough = instances.vcpus(t) > 1
                except ValueError as exc:
                    c.fail(
                        f"{_pool_key(pool)}.instanceTypes",
                        f"{exc}; a NodePool's CPU limit needs its vCPUs (use medium, large, "
                        "xlarge or Nxlarge)",
                    )
                    continue
                if not enough:
                    c.fail(
                        f"{_pool_key(pool)}.instanceTypes",
                        f"{t}: EKS Auto Mode launches only types with more than 1 vCPU",
                    )
        for pool in gpu_pools:
            for t in pool.instance_types:
                known = instances.gpu_count(t) is not None  # else reported as unknown
                if known and t.partition(".")[0] not in AUTO_MODE_GPU_FAMILIES:
                    c.fail(
                        f"gpuNodePools.{pool.name}.instanceTypes",
                        f"{t}: EKS Auto Mode does not launch this family; use one of "
                        f"{', '.join(sorted(AUTO_MODE_GPU_FAMILIES))}",
                    )
    if v["computeMode"] != "autoMode":
        return
    # Auto Mode launches nodes only for pending pods: a pool minimum would be silently ignored,
    # and the idle cost the settings suggest would be wrong. Warm capacity is minReplicas.
    for pool in gpu_pools:
        in_bounds = pool.min_size <= pool.desired_size <= pool.max_size  # else reported already
        if in_bounds and (pool.min_size or pool.desired_size):
            c.fail(
                f"gpuNodePools.{pool.name}.minSize",
                f"minSize {pool.min_size} / desiredSize {pool.desired_size}: autoMode keeps no "
                "idle node, so set both to 0 (the models' minReplicas keep GPU nodes warm)",
            )


_FALLBACK_BATCHING = BatchingParameters(1, 0, 1, 1)
_REQUIRED_BATCHING = [f.name for f in BATCHING_OBJECT.fields if f.required]


def _snake_case(camel: str) -> str:
    """``maxBatchSize`` -> ``max_batch_size``: config fields to BatchingParameters' names."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", camel).lower()


def _batching(c: Checker, key: str, spec: Any) -> BatchingParameters:
    if not isinstance(spec, dict):
        c.fail(key, f"give {', '.join(_REQUIRED_BATCHING)}")
        return _FALLBACK_BATCHING
    c.unknown_fields(key, spec, BATCHING_OBJECT.names)
    known = {_snake_case(k): v for k, v in spec.items() if k in BATCHING_OBJECT.names}
    if "allowed_batch_sizes" in known and isinstance(known["allowed_batch_sizes"], list):
        known["allowed_batch_sizes"] = tuple(known["allowed_batch_sizes"])
    missing = [k for k in _REQUIRED_BATCHING if k not in spec]
    if missing:
        c.fail(key, f"missing {', '.join(missing)}")
        return _FALLBACK_BATCHING
    try:
        # TF Serving's own rules for the batching file, from the one renderer.
        batching = BatchingParameters(**known)
    except ConfigError as exc:
        c.fail(key, str(exc))
        return _FALLBACK_BATCHING
    smallest = BATCHING_OBJECT["maxBatchSize"].minimum or 1  # the largest warmup batch
    if batching.max_batch_size < smallest:
        c.fail(
            f"{key}.maxBatchSize",
            f"{batching.max_batch_size} is below {smallest}, the largest warmup batch the "
            "model stage exports: TF Serving would refuse the warmup and never load the model",
        )
    return batching


# ---------------------------------------------------------------------------------------------
