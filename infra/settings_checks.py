"""Validation of one stack's config: a pure function from a dict of bare keys to Settings.

Every rule appends a :class:`Problem` instead of raising, so one run reports everything that is
wrong; :func:`parse_settings` raises a single :class:`InvalidSettingsError` at the end.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from datetime import date
from types import MappingProxyType
from typing import Any

from contracts import rules
from contracts.tfconfig import (
    BatchingParameters,
    ConfigError,
    ModelConfig,
    VersionPolicy,
)
from infra import instances
from infra.config_keys import (
    BATCHING_OBJECT,
    GPU_POOL_OBJECT,
    KEYS,
    KEYS_BY_NAME,
    MODEL_OBJECT,
    SYSTEM_POOL_OBJECT,
    ConfigKey,
    NestedObject,
)
from infra.settings_types import (
    SYSTEM_POOL,
    InvalidSettingsError,
    ModelSettings,
    NodePool,
    Problem,
    Settings,
)

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")  # DNS-1123 label, short enough for AWS
_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
_PRINCIPAL_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$")
_ADDON_VERSION = re.compile(r"^v\d+\.\d+\.\d+-eksbuild\.\d+$")
_SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_VPC_ID = re.compile(r"^vpc-[0-9a-f]{8,17}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
# The system pool is not configurable in these two: on-demand capacity, the standard AL2023 AMI.
_SYSTEM_POOL_CAPACITY = "ON_DEMAND"
_SYSTEM_POOL_AMI = instances.CPU_AMI_TYPES[0]

# ---------------------------------------------------------------------------------------------
# Type checks: a value's JSON type must match its declaration before any rule looks at it.

_PY_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def _type_ok(key: ConfigKey, value: Any) -> bool:
    if not _PY_TYPES[key.type](value):
        return False
    return key.items is None or all(_PY_TYPES[key.items](v) for v in value)


class _Checker:
    """Collects problems instead of stopping at the first one."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def fail(self, key: str, message: str) -> None:
        self.problems.append(Problem(key, message))

    def int_range(self, key: str, value: Any, low: int, high: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"{value!r} is not an integer")
            return low
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            self.fail(key, f"{value} is out of range: use a value {bound}")
        return value

    def cidr(self, key: str, value: str) -> None:
        try:
            ipaddress.IPv4Network(value, strict=True)
        except ValueError as exc:
            self.fail(key, f"{value!r} is not an IPv4 CIDR ({exc})")

    def declared_range(self, key: str, value: Any, declared: ConfigKey) -> int:
        """``int_range`` with the bounds declared in :mod:`infra.config_keys`."""
        return self.int_range(key, value, declared.minimum or 0, declared.maximum)

    def one_of(self, key: str, value: Any, declared: ConfigKey) -> None:
        if value not in declared.choices:
            *first, last = (str(c) for c in declared.choices)
            self.fail(key, f"{value!r}: use {', '.join(first)} or {last}")

    def unknown_fields(self, key: str, given: Mapping[str, Any], allowed: set[str]) -> None:
        for extra in sorted(set(given) - allowed):
            self.fail(key, f"unknown field {extra!r}; known fields: {', '.join(sorted(allowed))}")


def _field(spec: Mapping[str, Any], declared: ConfigKey) -> Any:
    """A nested field's value, or its declared default (``None`` when it is required)."""
    return spec.get(declared.name, None if declared.required else declared.default)


def _bounded(
    c: _Checker, key: str, spec: Mapping[str, Any], declared: NestedObject, name: str
) -> int:
    """The integer field ``name`` of the object at ``key``, within its declared bounds."""
    return c.declared_range(f"{key}.{name}", _field(spec, declared[name]), declared[name])


def _scaling(
    c: _Checker,
    key: str,
    spec: Mapping[str, Any],
    declared: NestedObject,
    min_field: str,
    max_field: str,
    desired_field: str | None,
) -> tuple[int, int, int]:
    low = _bounded(c, key, spec, declared, min_field)
    high = _bounded(c, key, spec, declared, max_field)
    desired = low
    if desired_field is not None:
        desired = _bounded(c, key, spec, declared, desired_field)
    if low > high:
        c.fail(key, f"{min_field} {low} is greater than {max_field} {high}")
    elif desired_field is not None and not low <= desired <= high:
        c.fail(
            key,
            f"{desired_field} {desired} must lie between {min_field} {low} and {max_field} {high}",
        )
    return low, high, desired


def _instance_types(c: _Checker, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        c.fail(key, "give a non-empty list of instance type names")
        return ()
    return tuple(value)


def _system_pool(c: _Checker, spec: dict[str, Any]) -> NodePool:
    key = "systemNodePool"
    c.unknown_fields(key, spec, SYSTEM_POOL_OBJECT.names)
    types = _instance_types(c, f"{key}.instanceTypes", spec.get("instanceTypes"))
    for t in types:
        if instances.is_known_gpu_family(t):
            c.fail(f"{key}.instanceTypes", f"{t} is a GPU type; put GPUs in gpuNodePools")
    low, high, desired = _scaling(
        c, key, spec, SYSTEM_POOL_OBJECT, "minSize", "maxSize", "desiredSize"
    )
    if high and low < 1:
        c.fail(f"{key}.minSize", "the system pool needs at least 1 node (CoreDNS, autoscaler)")
    disk = _bounded(c, key, spec, SYSTEM_POOL_OBJECT, "diskSizeGiB")
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


def _gpu_pool(c: _Checker, name: str, spec: Any) -> NodePool | None:
    key = f"gpuNodePools.{name}"
    if not isinstance(spec, dict):
        c.fail(key, "each pool is an object of instanceTypes, capacityType, minSize, ...")
        return None
    if not _NAME.match(name) or name == SYSTEM_POOL:
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
    capacity = _field(spec, GPU_POOL_OBJECT["capacityType"])
    c.one_of(f"{key}.capacityType", capacity, GPU_POOL_OBJECT["capacityType"])
    ami = _field(spec, GPU_POOL_OBJECT["amiType"])
    c.one_of(f"{key}.amiType", ami, GPU_POOL_OBJECT["amiType"])
    low, high, desired = _scaling(
        c, key, spec, GPU_POOL_OBJECT, "minSize", "maxSize", "desiredSize"
    )
    disk = _bounded(c, key, spec, GPU_POOL_OBJECT, "diskSizeGiB")
    gpus = max(counts) if counts else 1
    return NodePool(name, types, low, high, desired, disk, capacity, ami, gpus)


def _model(
    c: _Checker, name: str, spec: Any, pools: Mapping[str, NodePool]
) -> ModelSettings | None:
    key = f"models.{name}"
    if not isinstance(spec, dict):
        c.fail(key, "each model is an object of versionPolicy, labels, nodePool, ...")
        return None
    if not rules.is_model_name(name):
        c.fail(key, str(_rule_message(rules.validate_model_name, name)))
    m = MODEL_OBJECT
    c.unknown_fields(key, spec, m.names)
    policy = VersionPolicy.latest()
    try:
        policy = VersionPolicy.parse(str(_field(spec, m["versionPolicy"])))
    except ConfigError as exc:
        c.fail(f"{key}.versionPolicy", str(exc))
    labels = _field(spec, m["labels"])
    if not isinstance(labels, dict):
        c.fail(f"{key}.labels", "give a map of label -> version, e.g. {stable: 3, canary: 4}")
        labels = {}
    try:
        # TF Serving's own rules: label syntax, and a label must be a version the policy serves.
        ModelConfig(name=name, base_path=f"/models/{name}", policy=policy, labels=labels)
    except ConfigError as exc:
        c.fail(f"{key}.labels", str(exc))
    pool_name = _field(spec, m["nodePool"])
    pool = pools.get(pool_name)
    if pool is None:
        c.fail(
            f"{key}.nodePool",
            f"{pool_name!r} is not 'system' or a gpuNodePools name "
            f"({', '.join(sorted(pools)) or 'none defined'})",
        )
    low, high, _ = _scaling(c, key, spec, m, "minReplicas", "maxReplicas", None)
    gpus = _bounded(c, key, spec, m, "gpus")
    if pool is not None and pool.is_gpu and not 1 <= gpus <= pool.gpus_per_node:
        c.fail(
            f"{key}.gpus",
            f"{gpus} GPUs do not fit pool {pool_name!r} "
            f"({pool.gpus_per_node} per node); use 1-{pool.gpus_per_node}",
        )
    if pool is not None and not pool.is_gpu and gpus:
        c.fail(f"{key}.gpus", f"pool {pool_name!r} has no GPUs; set gpus to 0 or pick a GPU pool")
    cpu = _bounded(c, key, spec, m, "cpuMillicores")
    memory = _bounded(c, key, spec, m, "modelMemoryMiB")
    disk = _bounded(c, key, spec, m, "modelDiskMiB")
    target = _bounded(c, key, spec, m, "targetCpuUtilization")
    canary_weight = _bounded(c, key, spec, m, "canaryWeight")
    keep = _field(spec, m["maxVersionsOnDisk"])
    if policy.kind == "all":
        keep = _bounded(c, key, spec, m, "maxVersionsOnDisk")
    elif keep is not None:
        c.fail(f"{key}.maxVersionsOnDisk", f"only for the 'all' policy; {policy} already bounds it")
    namespaces = _field(spec, m["allowedNamespaces"])
    if not isinstance(namespaces, list) or not all(
        isinstance(n, str) and _NAME.match(n) for n in namespaces
    ):
        c.fail(f"{key}.allowedNamespaces", "give a list of namespace names (DNS labels)")
        namespaces = []
    batching = _batching(c, f"{key}.batching", _field(spec, m["batching"]))
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
    )


def surge_nodes(pool: NodePool, model: ModelSettings) -> int:
    """GPU nodes one model needs at ``maxReplicas`` while a rollout adds its surge pod.

    The Deployment rolls with ``maxSurge: 1, maxUnavailable: 0``: at maximum scale the new pod
    comes on top of ``maxReplicas`` running ones. A node holds ``gpus_per_node // gpus`` pods.
    """
    pods_per_node = max(1, pool.gpus_per_node // max(1, model.gpus))
    return -(-(model.max_replicas + 1) // pods_per_node)


def _rollout_headroom(c: _Checker, pools: list[NodePool], models: list[ModelSettings]) -> None:
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


def _compute_mode(
    c: _Checker, v: Mapping[str, Any], system: NodePool, gpu_pools: list[NodePool]
) -> None:
    c.one_of("computeMode", v["computeMode"], KEYS_BY_NAME["computeMode"])
    _declared_range(c, v, "nodeConsolidateAfterMinutes")
    _declared_range(c, v, "nodeExpireAfterHours")
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


def _batching(c: _Checker, key: str, spec: Any) -> BatchingParameters:
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


def _network(c: _Checker, v: Mapping[str, Any]) -> None:
    if v["existingVpcId"]:
        if not _VPC_ID.match(v["existingVpcId"]):
            c.fail("existingVpcId", f"{v['existingVpcId']!r} is not a VPC id (vpc-...)")
        subnets = v["existingPrivateSubnetIds"]
        if len(subnets) < 2:
            c.fail("existingPrivateSubnetIds", "EKS needs private subnets in at least 2 AZs")
        for s in subnets:
            if not _SUBNET_ID.match(s):
                c.fail("existingPrivateSubnetIds", f"{s!r} is not a subnet id (subnet-...)")
    elif v["existingPrivateSubnetIds"]:
        c.fail("existingPrivateSubnetIds", "only used with existingVpcId; set both or neither")
    _scraper_subnets(c, v)
    c.cidr("vpcCidr", v["vpcCidr"])
    if _is_net(v["vpcCidr"]) and ipaddress.IPv4Network(v["vpcCidr"]).prefixlen > 20:
        c.fail("vpcCidr", "use a /20 or larger block: each AZ gets a /22 or larger private subnet")
    _declared_range(c, v, "availabilityZoneCount")


def _scraper_subnets(c: _Checker, v: Mapping[str, Any]) -> None:
    """In an existing VPC the managed scraper needs subnets of its own: the serving
    NetworkPolicy admits their CIDRs, so they must hold nothing else (docs/observability.md)."""
    key, given = "existingScraperSubnets", v["existingScraperSubnets"]
    if not (v["existingVpcId"] and v["managedPrometheus"]):
        if given:
            c.fail(key, "only used with existingVpcId and managedPrometheus: true")
        return
    if len(given) < 2:
        c.fail(
            key,
            "give the managed Prometheus scraper 2+ subnets of its own (distinct AZs) as "
            "{subnet id: CIDR}: one small subnet per AZ that holds no nodes or pods",
        )
    nets = []
    for subnet, cidr in given.items():
        if not _SUBNET_ID.match(str(subnet)):
            c.fail(key, f"{subnet!r} is not a subnet id (subnet-...)")
        try:
            nets.append(ipaddress.IPv4Network(cidr))
        except (TypeError, ValueError):
            c.fail(f"{key}.{subnet}", f"{cidr!r} is not an IPv4 CIDR (the subnet's CIDR block)")
    if any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :]):
        c.fail(key, "the scraper subnets' CIDRs overlap: give each subnet's own CIDR block")


def _is_net(value: str) -> bool:
    try:
        ipaddress.IPv4Network(value, strict=False)
    except ValueError:
        return False
    return True


def _cluster(c: _Checker, v: Mapping[str, Any]) -> str:
    version = v["kubernetesVersion"]
    supported_versions = KEYS_BY_NAME["kubernetesVersion"].choices
    if version not in supported_versions:
        c.fail(
            "kubernetesVersion",
            f"{version!r} is not a supported EKS version; use one of "
            f"{', '.join(supported_versions)}",
        )
    name = v["clusterName"] or f"tfserving-{v['__stack']}"
    if not _CLUSTER_NAME.match(name):
        c.fail("clusterName", f"{name!r}: 1-100 letters, digits, '-' or '_', starting alphanumeric")
    if v["endpointPublicAccess"] and not v["publicAccessCidrs"]:
        c.fail("publicAccessCidrs", "the public endpoint is on: list the CIDRs allowed to reach it")
    if not v["endpointPublicAccess"] and v["publicAccessCidrs"]:
        c.fail("publicAccessCidrs", "set only when endpointPublicAccess is true")
    for cidr in v["publicAccessCidrs"]:
        c.cidr("publicAccessCidrs", cidr)
    for cidr in v["apiAccessCidrs"]:
        c.cidr("apiAccessCidrs", cidr)
        if _is_net(cidr) and ipaddress.IPv4Network(cidr, strict=False).prefixlen == 0:
            c.fail("apiAccessCidrs", f"{cidr} admits every address; list the runner/VPN ranges")
    if len(set(v["apiAccessCidrs"])) != len(v["apiAccessCidrs"]):
        c.fail("apiAccessCidrs", "lists a CIDR twice (each one becomes one security group rule)")
    allowed = KEYS_BY_NAME["clusterLogTypes"].choices
    for log_type in v["clusterLogTypes"]:
        if log_type not in allowed:
            c.fail("clusterLogTypes", f"{log_type!r}: use any of {', '.join(sorted(allowed))}")
    if v["clusterLogRetentionDays"] not in KEYS_BY_NAME["clusterLogRetentionDays"].choices:
        c.fail(
            "clusterLogRetentionDays",
            f"{v['clusterLogRetentionDays']} is not a CloudWatch "
            "retention (1, 3, 5, 7, 14, 30, 60, 90, 120, ...)",
        )
    _access(c, v)
    _reachability(c, v)
    addons = v["addonVersions"]
    c.unknown_fields("addonVersions", addons, set(instances.CORE_ADDONS))
    for addon in instances.CORE_ADDONS:
        pinned = addons.get(addon)
        if not isinstance(pinned, str) or not _ADDON_VERSION.match(pinned):
            c.fail(
                f"addonVersions.{addon}",
                f"{pinned!r}: pin an EKS add-on version like v1.19.2-eksbuild.5",
            )
    proxy = addons.get("kube-proxy")
    supported = version in supported_versions
    if supported and isinstance(proxy, str) and not proxy.startswith(f"v{version}."):
        # kube-proxy must run the cluster's minor version (Kubernetes version-skew policy).
        c.fail("addonVersions.kube-proxy", f"{proxy} does not match kubernetesVersion {version}")
    _declared_range(c, v, "kmsDeletionWindowDays")
    return name


def _access(c: _Checker, v: Mapping[str, Any]) -> None:
    # The cluster creator gets no implicit admin (changing that later replaces the cluster), so
    # whoever runs `pulumi up` must be listed: without an access entry every Kubernetes object
    # of the first `up` fails with 401.
    for key in ("deployerPrincipalArns", "adminPrincipalArns"):
        for arn in v[key]:
            if not _PRINCIPAL_ARN.match(arn):
                c.fail(key, f"{arn!r} is not an IAM role or user ARN")
            elif ":assumed-role/" in arn or ":sts::" in arn:
                c.fail(key, f"{arn!r} is a session; list the IAM role ARN (arn:aws:iam::...)")
    if not v["deployerPrincipalArns"]:
        c.fail(
            "deployerPrincipalArns",
            "list the IAM role(s) that run pulumi up (e.g. the CI role): the cluster creator "
            "gets no implicit access",
        )
    listed = [*v["deployerPrincipalArns"], *v["adminPrincipalArns"]]
    for arn in sorted({a for a in listed if listed.count(a) > 1}):
        c.fail("adminPrincipalArns", f"{arn} is listed twice (EKS allows one access entry each)")
    # Access entries are named after the role or user name (stable when others change).
    names = [a.rsplit("/", 1)[-1] for a in set(listed)]
    for name in sorted({n for n in names if names.count(n) > 1}):
        c.fail(
            "adminPrincipalArns",
            f"two principals are named {name!r} (other paths or accounts): give them "
            "distinct names",
        )


def _reachability(c: _Checker, v: Mapping[str, Any]) -> None:
    # A private-only endpoint answers only inside the VPC. A VPC this `up` creates holds no runner
    # before the cluster exists, so the Kubernetes half of the first `up` could never connect.
    # The supported path: a self-hosted runner in an existing VPC (existingVpcId) whose subnets
    # are listed in apiAccessCidrs.
    if v["endpointPublicAccess"]:
        return
    if not v["existingVpcId"]:
        c.fail(
            "endpointPublicAccess",
            "a private-only endpoint needs existingVpcId: no runner can be inside a VPC this "
            "up creates; set existingVpcId/existingPrivateSubnetIds to the VPC of your "
            "self-hosted runner, or turn the public endpoint on with publicAccessCidrs",
        )
    if not v["apiAccessCidrs"]:
        c.fail(
            "apiAccessCidrs",
            "the endpoint is private-only: list the deploy runner's subnet (and your VPN range)",
        )


def _kubernetes_support(c: _Checker, v: Mapping[str, Any], today: date) -> list[str]:
    status = instances.support_status(v["kubernetesVersion"], today)
    if status is None:
        return []
    level, why = status
    if level == "refuse":
        c.fail("kubernetesVersion", why)
        return []
    return [why]


def _monitoring(c: _Checker, v: Mapping[str, Any]) -> None:
    """The DCGM image, unless turned off (empty), is pinned (the mirror fixes its digest);
    alert e-mails look like addresses."""
    image = v["dcgmExporterImage"]
    if image and (problem := _rule_message(rules.validate_image_reference, image)) is not None:
        c.fail("dcgmExporterImage", problem)
    for email in v["alertEmails"]:
        if not isinstance(email, str) or "@" not in email.strip("@"):
            c.fail("alertEmails", f"{email!r} is not an e-mail address")


_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+$")


def _images(c: _Checker, v: Mapping[str, Any]) -> None:
    """Third-party images are pinned (the stack's mirror copies them and fixes each digest); a
    given syncImage is not mirrored, so it must carry its digest itself."""
    for key in ("servingImage", "servingGpuImage"):
        if (problem := _rule_message(rules.validate_image_reference, v[key])) is not None:
            c.fail(key, problem)
    sync = v["syncImage"]
    if sync != "":
        try:
            rules.validate_image_reference(sync, require_digest=True)
        except rules.RuleError as exc:
            c.fail("syncImage", f"{exc}; or leave it empty to build the image here")
    secret = v["dockerHubCredentialArn"]
    if secret and not _SECRET_ARN.match(secret):
        c.fail(
            "dockerHubCredentialArn",
            f"{secret!r}: give the ARN of a Secrets Manager secret (JSON username and "
            "accessToken of a Docker Hub account), or leave it empty",
        )


def _declared_range(c: _Checker, v: Mapping[str, Any], key_name: str) -> None:
    c.declared_range(key_name, v[key_name], KEYS_BY_NAME[key_name])


def _rule_message(check: Callable[[Any], Any], value: Any) -> str | None:
    """What a shared rule (contracts.rules) says is wrong with ``value``, or None."""
    try:
        check(value)
    except rules.RuleError as exc:
        return str(exc)
    return None


# Keys that existed once, with what replaced them (a plain "unknown key" would not say).
REMOVED_KEYS = {
    "clusterCreatorAdmin": "removed: the cluster creator never gets implicit admin (changing "
    "bootstrapClusterCreatorAdminPermissions replaces the cluster); list the role that runs "
    "pulumi up in deployerPrincipalArns and delete this key",
}


def parse_settings(
    stack: str, values: Mapping[str, Any], region: str | None, today: date | None = None
) -> Settings:
    """Validates one stack's config (bare keys, defaults not yet applied) into :class:`Settings`.

    ``today`` dates the Kubernetes support check (default: the real date). Raises
    :class:`InvalidSettingsError` naming every problem at once.
    """
    c = _Checker()
    if not isinstance(region, str) or not _REGION.match(region):
        c.fail("aws:region", f"{region!r}: set the stack's AWS region (e.g. eu-west-1)")
    for key in sorted(set(values) - set(KEYS_BY_NAME)):
        c.fail(
            key, REMOVED_KEYS.get(key, "unknown config key; the declared keys are in Pulumi.yaml")
        )
    v: dict[str, Any] = {}
    for key in KEYS:
        value = values.get(key.name, key.default)
        if not _type_ok(key, value):
            of = f" of {key.items}" if key.items else ""
            c.fail(key.name, f"expected {key.type}{of}, got {json.dumps(value)}")
            value = key.default
        v[key.name] = value
    v["__stack"] = stack
    _network(c, v)
    cluster_name = _cluster(c, v)
    c.one_of("upgradeSupportType", v["upgradeSupportType"], KEYS_BY_NAME["upgradeSupportType"])
    warnings = _kubernetes_support(c, v, today or date.today())
    system = _system_pool(c, v["systemNodePool"])
    gpu_pools = [p for n, s in v["gpuNodePools"].items() if (p := _gpu_pool(c, n, s))]
    pools = {SYSTEM_POOL: system, **{p.name: p for p in gpu_pools}}
    models = [m for n, s in v["models"].items() if (m := _model(c, n, s, pools))]
    if not models:
        c.fail("models", "list at least one model to serve")
    _rollout_headroom(c, gpu_pools, models)
    _compute_mode(c, v, system, gpu_pools)
    _images(c, v)
    _monitoring(c, v)
    for key_name in (
        "noncurrentVersionRetentionDays",
        "abortIncompleteUploadDays",
        "accessLogRetentionDays",
        "s3PollSeconds",
    ):
        _declared_range(c, v, key_name)
    if v["protectData"] and v["bucketForceDestroy"]:
        c.fail(
            "bucketForceDestroy",
            "contradicts protectData: a protected bucket is never force-destroyed; turn one off",
        )
    for tag_key, tag_value in v["tags"].items():
        if not isinstance(tag_value, str) or tag_key.lower().startswith("aws:"):
            c.fail(f"tags.{tag_key}", "tag values are strings and keys may not start with aws:")
    if c.problems:
        raise InvalidSettingsError(stack, c.problems)
    return Settings(
        stack=stack,
        region=str(region),
        vpc_cidr=v["vpcCidr"],
        availability_zone_count=v["availabilityZoneCount"],
        nat_gateway_per_az=v["natGatewayPerAz"],
        existing_vpc_id=v["existingVpcId"],
        existing_private_subnet_ids=tuple(v["existingPrivateSubnetIds"]),
        existing_scraper_subnets=MappingProxyType(dict(v["existingScraperSubnets"])),
        cluster_name=cluster_name,
        kubernetes_version=v["kubernetesVersion"],
        endpoint_public_access=v["endpointPublicAccess"],
        public_access_cidrs=tuple(v["publicAccessCidrs"]),
        api_access_cidrs=tuple(v["apiAccessCidrs"]),
        cluster_log_types=tuple(v["clusterLogTypes"]),
        cluster_log_retention_days=v["clusterLogRetentionDays"],
        upgrade_support_type=v["upgradeSupportType"],
        deployer_principal_arns=tuple(v["deployerPrincipalArns"]),
        admin_principal_arns=tuple(v["adminPrincipalArns"]),
        addon_versions=MappingProxyType(dict(v["addonVersions"])),
        kms_deletion_window_days=v["kmsDeletionWindowDays"],
        compute_mode=v["computeMode"],
        node_consolidate_after_minutes=v["nodeConsolidateAfterMinutes"],
        node_expire_after_hours=v["nodeExpireAfterHours"],
        system_node_pool=system,
        gpu_node_pools=tuple(gpu_pools),
        protect_data=v["protectData"],
        bucket_force_destroy=v["bucketForceDestroy"],
        noncurrent_version_retention_days=v["noncurrentVersionRetentionDays"],
        abort_incomplete_upload_days=v["abortIncompleteUploadDays"],
        access_log_retention_days=v["accessLogRetentionDays"],
        serving_image=v["servingImage"],
        serving_gpu_image=v["servingGpuImage"],
        sync_image=v["syncImage"],
        docker_hub_credential_arn=v["dockerHubCredentialArn"],
        models=tuple(models),
        await_serving_rollout=v["awaitServingRollout"],
        s3_poll_seconds=v["s3PollSeconds"],
        tags=MappingProxyType(dict(v["tags"])),
        warnings=tuple(warnings),
        managed_prometheus=v["managedPrometheus"],
        dcgm_exporter_image=v["dcgmExporterImage"],
        alert_emails=tuple(v["alertEmails"]),
    )
