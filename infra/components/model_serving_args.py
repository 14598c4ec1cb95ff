"""The inputs of `infra.components.model_serving.ModelServing`.

The model's declared settings (`ModelSettings`) and the stack's (`Settings`: the TF Serving
images, ``s3PollSeconds``, ``awaitServingRollout``) come validated, and the component reads them
directly. The rest is wiring from other components and behaviour the stack does not expose; the
few rules that tie those to the settings are checked on construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import pulumi

from infra.components.k8s_common import WorkloadArgsError
from infra.settings import ModelSettings, Settings


@dataclass(frozen=True)
class MetricsWorkspace:
    """The stack's managed Prometheus workspace, as the triggers use it. ``endpoint`` is the
    workspace's ``prometheus_endpoint`` (``https://aps-workspaces.<region>.amazonaws.com/
    workspaces/<id>/``); ``window`` the rate window of the queries."""

    arn: pulumi.Input[str]
    endpoint: pulumi.Input[str]
    region: str
    window: str


@dataclass(frozen=True)
class ModelServingArgs:
    """Inputs of `ModelServing`. Plain values except where typed `pulumi.Input`."""

    model: ModelSettings
    settings: Settings
    bucket_name: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]
    sync_image: pulumi.Input[str]
    model_prefix: str
    tags: Mapping[str, str]
    # Upstream reference -> what the pods pull instead: the stack's copy by digest
    # (infra.components.image_mirror). An image not listed is pulled as given.
    pull_images: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    # CIDRs of the managed Prometheus scraper's own subnets: admitted on the metrics ports only.
    scraper_cidrs: tuple[str, ...] = ()
    # The KEDA HTTP interceptor's proxy URL and namespace, for a model woken on request
    # (infra.components.keda): its REST endpoint, admitted on the REST port.
    interceptor_endpoint: str = ""
    interceptor_namespace: str = "keda"
    # CIDRs of the model endpoint's subnets (infra.components.endpoint): its load balancer is
    # admitted on the serving ports. Empty: the stack has no model endpoint.
    endpoint_cidrs: tuple[str, ...] = ()
    # The stack's managed Prometheus workspace, which the scaling triggers query (none: only a
    # model scaling on cpu can do without).
    metrics_workspace: MetricsWorkspace | None = None
    # Below: TF Serving and pod timings the stack does not expose as settings. The pod's
    # requests come from infra.settings.sizing (the settings' fit check uses the same figures).
    cpu_limit_millicores: int = 2000
    model_config_poll_seconds: int = 30
    file_system_poll_seconds: int = 2
    grpc_max_connection_age_seconds: int = 60
    startup_timeout_seconds: int = 600
    pre_stop_seconds: int = 15
    termination_grace_seconds: int = 60
    zone_spread: Literal["ScheduleAnyway", "DoNotSchedule"] = "ScheduleAnyway"
    service_account_name: str = "tfserving"
    # Idle time after the last request before KEDA scales the model back to zero.
    scaledown_period_seconds: int = 900
    # How long the interceptor holds a request while the first pod starts.
    cold_start_wait: str = "15m"

    def __post_init__(self) -> None:
        problems = []
        if self.cpu_limit_millicores < self.model.cpu_millicores:
            problems.append(
                f"cpu_limit_millicores ({self.cpu_limit_millicores}) is below the model's "
                f"cpuMillicores ({self.model.cpu_millicores})"
            )
        if self.termination_grace_seconds <= self.pre_stop_seconds:
            problems.append(
                f"termination_grace_seconds ({self.termination_grace_seconds}) must exceed "
                f"pre_stop_seconds ({self.pre_stop_seconds}) to leave time to finish requests"
            )
        if self.model.wake_on_request and not self.interceptor_endpoint.startswith("http://"):
            problems.append(
                f"interceptor_endpoint {self.interceptor_endpoint!r}: a model woken on request "
                "needs the interceptor proxy's http:// URL"
            )
        if problems:
            raise WorkloadArgsError("ModelServing", problems)

    @property
    def image(self) -> str:
        """The pinned TF Serving image: the GPU build when the pod gets GPUs."""
        settings = self.settings
        return settings.serving_gpu_image if self.model.gpus else settings.serving_image

    @property
    def image_version(self) -> str:
        """The image's tag as a label value (``app.kubernetes.io/version``)."""
        tag = self.image.split("@", 1)[0].rpartition(":")[2] if ":" in self.image else "unknown"
        return tag[:63].strip("-_.") or "unknown"

    @property
    def model_key_prefix(self) -> str:
        """This model's prefix in the bucket, e.g. ``models/mnist/`` (contracts.md layout)."""
        return f"{self.model_prefix.strip('/')}/{self.model.name}/"
