"""The inputs of `infra.components.model_serving.ModelServing`: placement, sizing and every
argument, each checked on construction (all problems reported together)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import pulumi

from contracts import rules, tfconfig
from infra.components import serving_pod
from infra.components.k8s_common import (
    WorkloadArgsError,
    dns_label_problem,
    label_value_problem,
    model_name_problem,
    pinned_image_problem,
    positive_problem,
)
from infra.naming import GPU_TAINT_KEY, POOL_LABEL_KEY

STABLE, CANARY = "stable", "canary"  # the two serving tracks


def _cidr_problem(cidr: str) -> str | None:
    try:
        ipaddress.IPv4Network(cidr)
    except ValueError:
        return f"scraper_cidrs entry {cidr!r} is not an IPv4 network (a.b.c.d/n, no host bits)"
    return None


@dataclass(frozen=True)
class NodePlacement:
    """Which node pool the pods run on (by the pool label every node group carries).

    With ``gpus_per_pod > 0`` the pod also asks for that many ``nvidia.com/gpu``, tolerates the GPU
    pools' taint and runs the GPU build of TF Serving.
    """

    pool: str
    gpus_per_pod: int
    pool_label_key: str = POOL_LABEL_KEY
    taint_key: str = GPU_TAINT_KEY

    @property
    def gpu(self) -> bool:
        return self.gpus_per_pod > 0


@dataclass(frozen=True)
class ServingResources:
    """Sizing inputs. Memory = (versions resident + 1) x model_memory_mib + overhead_mib: every
    version the policy serves stays loaded, and a swap loads the new one beside them."""

    model_memory_mib: int
    model_disk_mib: int
    cpu_request_millicores: int
    overhead_mib: int = 1024
    cpu_limit_millicores: int = 2000
    sync_memory_mib: int = 256
    sync_cpu_millicores: int = 100


@dataclass(frozen=True)
class ModelServingArgs:
    """Inputs of `ModelServing`. Plain values except where typed `pulumi.Input`."""

    model_name: str
    namespace: str
    bucket_name: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]
    sync_image: pulumi.Input[str]
    resources: ServingResources
    batching: tfconfig.BatchingParameters
    version_policy: tfconfig.VersionPolicy
    version_labels: Mapping[str, int]
    placement: NodePlacement
    allowed_namespaces: tuple[str, ...]
    sync_interval_seconds: int
    # Versions kept on disk; only needed (and only allowed) with the "all" policy, where the
    # policy itself gives no bound.
    max_versions_on_disk: int | None
    model_prefix: str
    min_replicas: int
    max_replicas: int
    target_cpu_utilization: int
    tfserving_image: str
    tfserving_gpu_image: str
    # Wait for the Deployment's rollout and the Service's endpoints on `pulumi up`; off for a
    # stack whose bucket has no model version yet (the pods cannot become ready).
    await_rollout: bool
    tags: Mapping[str, str]
    # Percent of the serving pods (at min_replicas) that run the canary track; 0: no track.
    canary_weight: int
    # Upstream reference -> what the pods pull instead: the stack's copy by digest
    # (infra.components.image_mirror). An image not listed is pulled as given.
    pull_images: Mapping[str, pulumi.Input[str]]
    # CIDRs of the managed Prometheus scraper's own subnets: admitted on the metrics ports only.
    scraper_cidrs: tuple[str, ...]
    # Scale up from zero on the first REST request (infra.components.keda): an HTTPScaledObject
    # instead of the HPA, the interceptor's namespace admitted on the REST port, and the REST
    # endpoint is the interceptor's proxy (`interceptor_endpoint`).
    wake_on_request: bool
    # Below: TF Serving and pod timings the stack does not expose as settings.
    model_config_poll_seconds: int = 30
    file_system_poll_seconds: int = 2
    grpc_max_connection_age_seconds: int = 60
    startup_timeout_seconds: int = 600
    pre_stop_seconds: int = 15
    termination_grace_seconds: int = 60
    zone_spread: Literal["ScheduleAnyway", "DoNotSchedule"] = "ScheduleAnyway"
    service_account_name: str = "tfserving"
    # The interceptor's namespace and proxy URL, for a model woken on request.
    interceptor_namespace: str = "keda"
    interceptor_endpoint: str = ""
    # Idle time after the last request before KEDA scales the model back to zero.
    scaledown_period_seconds: int = 900
    # How long the interceptor holds a request while the first pod starts.
    cold_start_wait: str = "15m"

    def __post_init__(self) -> None:
        problems = [
            model_name_problem("model_name", self.model_name),
            dns_label_problem("namespace", self.namespace),
            dns_label_problem("service_account_name", self.service_account_name),
            pinned_image_problem("tfserving_image", self.tfserving_image),
            pinned_image_problem("tfserving_gpu_image", self.tfserving_gpu_image),
            label_value_problem("placement.pool", self.placement.pool),
            positive_problem("placement.gpus_per_pod", self.placement.gpus_per_pod, 0),
            # 0 is scale to zero (docs/gpu-capacity.md).
            positive_problem("min_replicas", self.min_replicas, 0),
            positive_problem("max_replicas", self.max_replicas),
            positive_problem("target_cpu_utilization", self.target_cpu_utilization),
            positive_problem("sync_interval_seconds", self.sync_interval_seconds),
            positive_problem("model_config_poll_seconds", self.model_config_poll_seconds),
            positive_problem("file_system_poll_seconds", self.file_system_poll_seconds),
            positive_problem(
                "grpc_max_connection_age_seconds", self.grpc_max_connection_age_seconds
            ),
            positive_problem("startup_timeout_seconds", self.startup_timeout_seconds, 5),
            positive_problem("pre_stop_seconds", self.pre_stop_seconds),
            positive_problem("resources.model_memory_mib", self.resources.model_memory_mib),
            positive_problem("resources.model_disk_mib", self.resources.model_disk_mib),
            positive_problem("resources.overhead_mib", self.resources.overhead_mib, 0),
            positive_problem(
                "resources.cpu_request_millicores", self.resources.cpu_request_millicores
            ),
            positive_problem("resources.cpu_limit_millicores", self.resources.cpu_limit_millicores),
            positive_problem("resources.sync_memory_mib", self.resources.sync_memory_mib, 64),
            positive_problem("resources.sync_cpu_millicores", self.resources.sync_cpu_millicores),
            positive_problem("canary_weight", self.canary_weight, 0),
            positive_problem("scaledown_period_seconds", self.scaledown_period_seconds),
        ]
        if self.wake_on_request:
            if self.min_replicas != 0:
                problems.append(f"wake_on_request needs min_replicas 0 (it is {self.min_replicas})")
            problems.append(dns_label_problem("interceptor_namespace", self.interceptor_namespace))
            if not self.interceptor_endpoint.startswith("http://"):
                problems.append(
                    f"interceptor_endpoint {self.interceptor_endpoint!r}: give the interceptor "
                    "proxy's http:// URL"
                )
        if isinstance(self.canary_weight, int) and self.canary_weight > 50:
            problems.append(
                f"canary_weight {self.canary_weight}: a canary takes at most half (0-50 percent)"
            )
        problems += [
            dns_label_problem("allowed_namespaces entry", n) for n in self.allowed_namespaces
        ]
        problems += [p for p in map(_cidr_problem, self.scraper_cidrs) if p]
        if self.max_replicas < self.min_replicas:
            problems.append(
                f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})"
            )
        if self.target_cpu_utilization > 100:
            problems.append(
                f"target_cpu_utilization {self.target_cpu_utilization} is a percentage: use 1-100"
            )
        if self.termination_grace_seconds <= self.pre_stop_seconds:
            problems.append(
                f"termination_grace_seconds ({self.termination_grace_seconds}) must exceed "
                f"pre_stop_seconds ({self.pre_stop_seconds}) to leave time to finish requests"
            )
        limit = self.resources.cpu_limit_millicores
        if isinstance(limit, int) and limit < self.resources.cpu_request_millicores:
            problems.append(
                f"resources.cpu_limit_millicores ({limit}) is below cpu_request_millicores "
                f"({self.resources.cpu_request_millicores})"
            )
        if self.zone_spread not in ("ScheduleAnyway", "DoNotSchedule"):
            problems.append(
                f"zone_spread {self.zone_spread!r}: use ScheduleAnyway or DoNotSchedule"
            )
        if self.version_policy.kind == "all":
            problems.append(
                positive_problem(
                    "max_versions_on_disk (required by the 'all' policy)", self.max_versions_on_disk
                )
            )
        elif self.max_versions_on_disk is not None:
            problems.append(
                "max_versions_on_disk is only for the 'all' policy; the "
                f"'{self.version_policy}' policy already bounds the versions on disk"
            )
        if not self.placement.pool_label_key:
            problems.append("placement.pool_label_key is empty: give the node label of pools")
        if rules.is_model_name(self.model_name):  # else reported above, once
            try:
                self.model_config()
            except tfconfig.ConfigError as exc:
                problems.append(f"version_labels / version_policy: {exc}")
        found = [p for p in problems if p]
        if found:
            raise WorkloadArgsError("ModelServing", found)

    @property
    def image(self) -> str:
        """The pinned TF Serving image: the GPU build when the pod gets GPUs."""
        return self.tfserving_gpu_image if self.placement.gpu else self.tfserving_image

    @property
    def image_version(self) -> str:
        """The image's tag as a label value (``app.kubernetes.io/version``)."""
        tag = self.image.split("@", 1)[0].rpartition(":")[2] if ":" in self.image else "unknown"
        return tag[:63].strip("-_.") or "unknown"

    @property
    def versions_on_disk(self) -> int:
        policy = self.version_policy
        if policy.kind == "latest":
            return policy.num_versions
        if policy.kind == "specific":
            return len(policy.versions)
        return self.max_versions_on_disk or 1

    @property
    def model_key_prefix(self) -> str:
        """This model's prefix in the bucket, e.g. ``models/mnist/`` (contracts.md layout)."""
        return f"{self.model_prefix.strip('/')}/{self.model_name}/"

    def model_config(self) -> tfconfig.ModelConfig:
        return tfconfig.ModelConfig(
            name=self.model_name,
            base_path=f"{serving_pod.MODELS_DIR}/{self.model_name}",
            policy=self.version_policy,
            labels=dict(self.version_labels),
        )

    @property
    def canary_version(self) -> int | None:
        """The version the canary track serves, or None when there is no canary track."""
        stable, canary = self.version_labels.get(STABLE), self.version_labels.get(CANARY)
        if self.canary_weight == 0 or canary is None or stable is None or canary == stable:
            return None
        return canary

    @property
    def canary_replicas(self) -> int:
        """Canary pods so that they are about `canary_weight` percent of all pods at
        min_replicas (at least one; none for a model kept at zero)."""
        if self.min_replicas == 0:
            return 0
        share = self.min_replicas * self.canary_weight / (100 - self.canary_weight)
        return max(1, round(share))

    def canary_model_config(self) -> tfconfig.ModelConfig:
        """The canary track's model: both versions loaded (explicit addressing works on every
        pod) and ``stable`` naming the canary version, so default traffic reaching a canary pod
        is served by it."""
        canary = self.canary_version
        if canary is None:
            raise ValueError(f"{self.model_name} has no canary track")
        both = tuple(sorted({self.version_labels[STABLE], canary}))
        return tfconfig.ModelConfig(
            name=self.model_name,
            base_path=f"{serving_pod.MODELS_DIR}/{self.model_name}",
            policy=tfconfig.VersionPolicy(kind="specific", versions=both),
            labels={**self.version_labels, STABLE: canary},
        )

    def sizing(self, versions_on_disk: int | None = None) -> serving_pod.PodSizing:
        r = self.resources
        return serving_pod.PodSizing(
            model_memory_mib=r.model_memory_mib,
            memory_overhead_mib=r.overhead_mib,
            cpu_request_millicores=r.cpu_request_millicores,
            cpu_limit_millicores=r.cpu_limit_millicores,
            model_disk_mib=r.model_disk_mib,
            versions_on_disk=versions_on_disk or self.versions_on_disk,
            sync_memory_mib=r.sync_memory_mib,
            sync_cpu_millicores=r.sync_cpu_millicores,
        )
