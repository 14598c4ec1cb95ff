"""KEDA, installed once per stack (every model scales through it), and its HTTP add-on when a
model sets ``wakeOnRequest``.

`Keda` creates a Namespace (pinned name: the serving NetworkPolicies admit it), an IAM role for
KEDA's operator and pinned Helm releases from https://kedacore.github.io/charts:

- ``keda`` (KEDA's operator, metrics server and admission webhooks), which turns every
  ``ScaledObject`` (infra/components/scaling.py) into an HPA of its own, scaling from and to zero.
  Its operator's ServiceAccount is annotated with the operator role (the chart's
  ``podIdentity.aws.irsa`` values), so the EKS pod identity webhook mounts a web identity token
  in the operator; with that token the operator assumes each model's scaling role named in a
  TriggerAuthentication (kedacore/keda v2.20.2 pkg/scalers/aws/aws_config_cache.go). The
  operator role itself has no permission;
- ``keda-add-ons-http`` (operator, external scaler, interceptor), only when a model is woken on
  request: the interceptor is a proxy that counts requests per InterceptorRoute, and holds a
  request for a model at zero replicas until a pod is ready.

Every image is the stack's mirror copy (infra.components.image_mirror). KEDA's chart takes a tag
per image, so its pods pull by digest (``<tag>@sha256:...`` in the tag value). The add-on's chart
composes ``<image>:<images.tag>`` with one tag shared by its three images, so it cannot take three
digests: its copies share one tag (`ADDON_SHARED_TAG`), immutable in their ECR repositories.

All pods run on the system pool, whose nodes Auto Mode may still have to start: each release
waits `HELM_TIMEOUT_SECONDS` instead of Helm's 300. What wakes a model and how long a request
waits: docs/gpu-capacity.md ("Scale to zero"); how models scale: docs/autoscaling.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import iam
from infra.components.k8s_common import PART_OF, metadata, recommended_labels
from infra.components.scaling import KEDA_NAMESPACE, KEDA_OPERATOR_SERVICE_ACCOUNT

# Kept from when the component installed KEDA only with the add-on: a new type token would give
# every child a new URN, and replacing the `keda` release uninstalls it, CRDs (shipped in the
# chart's templates/) and every ScaledObject with them.
TYPE_TOKEN = "tfserving-eks:autoscaling:KedaHttpAddon"
CHART_REPO = "https://kedacore.github.io/charts"
NAMESPACE = KEDA_NAMESPACE
# Helm waits this long for each release's objects (pulumi-kubernetes helm.v3.Release `timeout`,
# 300 s by default): enough for Auto Mode to start a system node (about a minute) and the pods to
# pull their images and pass their probes, with room to spare.
HELM_TIMEOUT_SECONDS = 900
# kedacore/charts keda/Chart.yaml at cbb9bb8 ("prepare v2.20.2 release"): version and appVersion.
KEDA_CHART, KEDA_CHART_VERSION, KEDA_VERSION = "keda", "2.20.2", "2.20.2"
# kedacore/charts http-add-on/Chart.yaml at c4b92e9 ("release v0.15.0"); add-on tag v0.15.0.
ADDON_CHART, ADDON_CHART_VERSION, ADDON_VERSION = "keda-add-ons-http", "0.15.0", "0.15.0"
# Upstream images by mirror role (the charts' defaults for these versions).
KEDA_IMAGES = {
    "keda-operator": f"ghcr.io/kedacore/keda:{KEDA_VERSION}",
    "keda-metrics-apiserver": f"ghcr.io/kedacore/keda-metrics-apiserver:{KEDA_VERSION}",
    "keda-admission-webhooks": f"ghcr.io/kedacore/keda-admission-webhooks:{KEDA_VERSION}",
}
ADDON_IMAGES = {
    "keda-http-operator": f"ghcr.io/kedacore/http-add-on-operator:{ADDON_VERSION}",
    "keda-http-interceptor": f"ghcr.io/kedacore/http-add-on-interceptor:{ADDON_VERSION}",
    "keda-http-scaler": f"ghcr.io/kedacore/http-add-on-scaler:{ADDON_VERSION}",
}
# The one tag the add-on's three copies share (see the module docstring).
ADDON_SHARED_TAG = f"{ADDON_VERSION}-keda-http"
# The chart's interceptor proxy: Service "<chart name>-<interceptor.proxy.service>", port 8080.
PROXY_SERVICE = f"{ADDON_CHART}-interceptor-proxy"
PROXY_PORT = 8080
PROXY_HOST = f"{PROXY_SERVICE}.{NAMESPACE}.svc.cluster.local"
# How long the interceptor holds a request for a model at zero replicas. The add-on's default
# (v0.15.0 interceptor/config/timeouts.go: readiness 0s = bounded only by the request timeout,
# itself 0s = none) waits forever; a bound long enough for a GPU cold start (a node in about a
# minute, a TF Serving GPU image pull of several minutes, the model load) and short enough that a
# model that cannot start answers instead of hanging.
COLD_START_WAIT = "15m"


def keda_values(
    refs: Mapping[str, str], node_selector: Mapping[str, str], operator_role_arn: str
) -> dict:
    """KEDA chart values: each image as registry/repository and ``<tag>@sha256:<digest>``; the
    operator's IRSA role (chart values `podIdentity.aws.irsa`, keda.sh docs "AWS (IRSA) Pod
    Identity Webhook")."""

    def image(role: str) -> dict[str, str]:
        name, _, tag = refs[role].partition(":")  # "<host>/<path>:<tag>@sha256:<digest>"
        registry, _, repository = name.partition("/")
        return {"registry": registry, "repository": repository, "tag": tag}

    return {
        "image": {
            "keda": image("keda-operator"),
            "metricsApiServer": image("keda-metrics-apiserver"),
            "webhooks": image("keda-admission-webhooks"),
            "pullPolicy": "IfNotPresent",
        },
        "nodeSelector": dict(node_selector),
        "podIdentity": {"aws": {"irsa": {"enabled": True, "roleArn": operator_role_arn}}},
    }


def addon_values(refs: Mapping[str, str], node_selector: Mapping[str, str]) -> dict:
    """HTTP add-on chart values: the copies' repositories and their shared tag."""

    def repository(role: str) -> str:
        return refs[role].partition(":")[0]

    on_system = {"nodeSelector": dict(node_selector)}
    return {
        "images": {
            "tag": ADDON_SHARED_TAG,
            "operator": repository("keda-http-operator"),
            "interceptor": repository("keda-http-interceptor"),
            "scaler": repository("keda-http-scaler"),
        },
        "operator": {**on_system, "pullPolicy": "IfNotPresent"},
        "scaler": {**on_system, "pullPolicy": "IfNotPresent"},
        "interceptor": {
            **on_system,
            "pullPolicy": "IfNotPresent",
            "readinessTimeout": COLD_START_WAIT,
            # The model's own answer may take long after a cold start (warm-up).
            "responseHeaderTimeout": "300s",
        },
    }


@dataclass(frozen=True)
class KedaArgs:
    """``pull_images``: mirror role -> the copy's ``<repo>:<tag>@sha256:<digest>`` for every role
    of `KEDA_IMAGES` (and of `ADDON_IMAGES` with ``http_addon``); ``node_selector``: the system
    pool; the cluster's OIDC provider, which the operator role trusts."""

    pull_images: Mapping[str, pulumi.Input[str]]
    node_selector: Mapping[str, str]
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]
    tags: Mapping[str, str]
    http_addon: bool

    def __post_init__(self) -> None:
        needed = {*KEDA_IMAGES, *(ADDON_IMAGES if self.http_addon else ())}
        missing = sorted(needed - set(self.pull_images))
        if missing:
            raise ValueError(f"Keda: no mirrored image for {', '.join(missing)}")


class Keda(pulumi.ComponentResource):
    """KEDA (+ the HTTP add-on). Outputs: ``namespace``, ``proxy_endpoint`` (empty without the
    add-on)."""

    def __init__(
        self, name: str, args: KedaArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = recommended_labels("keda", "keda", KEDA_VERSION, "autoscaler")
        ns = k8s.core.v1.Namespace(
            f"{name}-namespace", metadata=metadata(NAMESPACE, labels), opts=child
        )
        namespace = ns.metadata.apply(lambda m: m.name)
        operator_role = aws.iam.Role(
            f"{name}-operator",
            description="KEDA's operator: a web identity to assume the models' scaling roles",
            assume_role_policy=iam.irsa_trust_policy(
                args.oidc_provider_arn, args.oidc_issuer, NAMESPACE, KEDA_OPERATOR_SERVICE_ACCOUNT
            ),
            tags={**args.tags, "app.kubernetes.io/part-of": PART_OF},
            opts=child,
        )
        roles = sorted(args.pull_images)
        refs = pulumi.Output.all(*[args.pull_images[r] for r in roles]).apply(
            lambda values: dict(zip(roles, values, strict=True))
        )
        keda = k8s.helm.v3.Release(
            f"{name}-keda",
            chart=KEDA_CHART,
            version=KEDA_CHART_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPO),
            namespace=namespace,
            name="keda",
            values=pulumi.Output.all(refs, operator_role.arn).apply(
                lambda a: keda_values(a[0], args.node_selector, a[1])
            ),
            timeout=HELM_TIMEOUT_SECONDS,
            opts=child,
        )
        self.releases: list[pulumi.Resource] = [keda]
        if args.http_addon:
            # The add-on's CRDs and scaler serve KEDA: KEDA's CRDs must exist first.
            self.releases.append(
                k8s.helm.v3.Release(
                    f"{name}-http",
                    chart=ADDON_CHART,
                    version=ADDON_CHART_VERSION,
                    repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPO),
                    namespace=namespace,
                    name="keda-add-ons-http",
                    values=refs.apply(lambda r: addon_values(r, args.node_selector)),
                    timeout=HELM_TIMEOUT_SECONDS,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[keda]),
                )
            )
        self.namespace = namespace
        self.proxy_endpoint = pulumi.Output.from_input(
            f"http://{PROXY_HOST}:{PROXY_PORT}" if args.http_addon else ""
        )
        self.register_outputs({"namespace": namespace, "proxy_endpoint": self.proxy_endpoint})
