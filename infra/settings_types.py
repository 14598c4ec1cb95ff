"""Typed, frozen stack settings and the settings error hierarchy (no logic, no Pulumi).

:mod:`infra.settings` builds these from config; components receive plain values taken from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from contracts.tfconfig import BatchingParameters, VersionPolicy
from infra.config_keys import full_name

SYSTEM_POOL = "system"


class SettingsError(Exception):
    """Base class of every settings failure."""


@dataclass(frozen=True)
class Problem:
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class InvalidSettingsError(SettingsError):
    """The stack's config is invalid; ``problems`` lists every problem found, by key."""

    def __init__(self, stack: str, problems: list[Problem]) -> None:
        self.stack = stack
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {_display(p.key)}: {p.message}" for p in problems)
        super().__init__(
            f"stack {stack!r} has {len(problems)} invalid config value(s); fix them in "
            f"Pulumi.{stack}.yaml (keys are declared in Pulumi.yaml):\n{lines}"
        )


@dataclass(frozen=True)
class NodePool:
    """One managed node group. ``gpus_per_node`` is 0 for the CPU system pool."""

    name: str
    instance_types: tuple[str, ...]
    min_size: int
    max_size: int
    desired_size: int
    disk_size_gib: int
    capacity_type: str
    ami_type: str
    gpus_per_node: int

    @property
    def is_gpu(self) -> bool:
        return self.gpus_per_node > 0


@dataclass(frozen=True)
class ModelSettings:
    """One model to serve; ``node_pool`` is a GPU pool name or ``"system"`` (CPU)."""

    name: str
    version_policy: VersionPolicy
    labels: Mapping[str, int]
    node_pool: str
    gpus: int
    min_replicas: int
    max_replicas: int
    target_cpu_utilization: int
    cpu_millicores: int
    model_memory_mib: int
    model_disk_mib: int
    max_versions_on_disk: int | None
    allowed_namespaces: tuple[str, ...]
    batching: BatchingParameters
    # Percent of serving pods in the canary track (infra.config_keys "canaryWeight").
    canary_weight: int = 10
    # The first REST request scales the model up from zero (infra.components.keda).
    wake_on_request: bool = False


@dataclass(frozen=True)
class Settings:
    """Everything the program needs from one stack's config, validated."""

    stack: str
    region: str
    vpc_cidr: str
    availability_zone_count: int
    nat_gateway_per_az: bool
    existing_vpc_id: str
    existing_private_subnet_ids: tuple[str, ...]
    existing_scraper_subnets: Mapping[str, str]
    cluster_name: str
    kubernetes_version: str
    endpoint_public_access: bool
    public_access_cidrs: tuple[str, ...]
    api_access_cidrs: tuple[str, ...]
    cluster_log_types: tuple[str, ...]
    cluster_log_retention_days: int
    upgrade_support_type: str
    deployer_principal_arns: tuple[str, ...]
    admin_principal_arns: tuple[str, ...]
    addon_versions: Mapping[str, str]
    kms_deletion_window_days: int
    # nodeGroups, migrating or autoMode (infra.config_keys "computeMode").
    compute_mode: str
    node_consolidate_after_minutes: int
    node_expire_after_hours: int
    system_node_pool: NodePool
    gpu_node_pools: tuple[NodePool, ...]
    protect_data: bool
    bucket_force_destroy: bool
    noncurrent_version_retention_days: int
    abort_incomplete_upload_days: int
    access_log_retention_days: int
    serving_image: str
    serving_gpu_image: str
    sync_image: str
    docker_hub_credential_arn: str
    models: tuple[ModelSettings, ...]
    await_serving_rollout: bool
    s3_poll_seconds: int
    tags: Mapping[str, str]
    # Non-fatal findings (e.g. Kubernetes version near end of standard support), shown on `up`.
    warnings: tuple[str, ...] = ()
    # Monitoring (infra.config_keys "managedPrometheus", "dcgmExporterImage", "alertEmails").
    managed_prometheus: bool = True
    dcgm_exporter_image: str = ""
    alert_emails: tuple[str, ...] = ()

    @property
    def node_groups(self) -> bool:
        """Managed node groups exist (nodeGroups, and migrating while pods move)."""
        return self.compute_mode in ("nodeGroups", "migrating")

    @property
    def auto_mode(self) -> bool:
        """EKS Auto Mode is on and the NodePools exist (autoMode, and migrating)."""
        return self.compute_mode in ("autoMode", "migrating")

    def pool(self, name: str) -> NodePool:
        if name == SYSTEM_POOL:
            return self.system_node_pool
        return next(p for p in self.gpu_node_pools if p.name == name)


def _display(key: str) -> str:
    # Project keys are shown as written in the stack file; foreign ones (aws:region) as given.
    return key if ":" in key.split(".", 1)[0] else full_name(key)
