"""KEDA and its HTTP add-on, installed once per stack when a model sets ``wakeOnRequest``.

`KedaHttpAddon` creates a Namespace (pinned name: the serving NetworkPolicies admit it) and two
pinned Helm releases from https://kedacore.github.io/charts:

- ``keda`` (KEDA's operator, metrics server and admission webhooks), which turns every
  ``HTTPScaledObject`` into a ScaledObject and an HPA of its own, scaling from and to zero;
- ``keda-add-ons-http`` (operator, external scaler, interceptor): the interceptor is a proxy that
  counts requests, and holds a request for a model at zero replicas until a pod is ready.

Every image is the stack's mirror copy (infra.components.image_mirror). KEDA's chart takes a tag
per image, so its pods pull by digest (``<tag>@sha256:...`` in the tag value). The add-on's chart
composes ``<image>:<images.tag>`` with one tag shared by its three images, so it cannot take three
digests: its copies share one tag (`ADDON_SHARED_TAG`), immutable in their ECR repositories.

All pods run on the system pool. What wakes a model and how long a request waits:
docs/gpu-capacity.md ("Scale to zero").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.components.k8s_common import metadata, recommended_labels

TYPE_TOKEN = "tfserving-eks:autoscaling:KedaHttpAddon"
CHART_REPO = "https://kedacore.github.io/charts"
NAMESPACE = "keda"
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


def keda_values(refs: Mapping[str, str], node_selector: Mapping[str, str]) -> dict:
    """KEDA chart values: each image as registry/repository and ``<tag>@sha256:<digest>``."""

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
class KedaHttpAddonArgs:
    """``pull_images``: mirror role -> the copy's ``<repo>:<tag>@sha256:<digest>`` for every role
    of `KEDA_IMAGES` and `ADDON_IMAGES`; ``node_selector``: the system pool."""

    pull_images: Mapping[str, pulumi.Input[str]]
    node_selector: Mapping[str, str]

    def __post_init__(self) -> None:
        missing = sorted({*KEDA_IMAGES, *ADDON_IMAGES} - set(self.pull_images))
        if missing:
            raise ValueError(f"KedaHttpAddon: no mirrored image for {', '.join(missing)}")


class KedaHttpAddon(pulumi.ComponentResource):
    """KEDA + the HTTP add-on. Outputs: ``namespace``, ``proxy_endpoint``."""

    def __init__(
        self, name: str, args: KedaHttpAddonArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = recommended_labels("keda", "keda", KEDA_VERSION, "autoscaler")
        ns = k8s.core.v1.Namespace(
            f"{name}-namespace", metadata=metadata(NAMESPACE, labels), opts=child
        )
        namespace = ns.metadata.apply(lambda m: m.name)
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
            values=refs.apply(lambda r: keda_values(r, args.node_selector)),
            opts=child,
        )
        # The add-on's operator creates ScaledObjects: KEDA's CRDs must exist first.
        k8s.helm.v3.Release(
            f"{name}-http",
            chart=ADDON_CHART,
            version=ADDON_CHART_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPO),
            namespace=namespace,
            name="keda-add-ons-http",
            values=refs.apply(lambda r: addon_values(r, args.node_selector)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[keda]),
        )
        self.namespace = namespace
        self.proxy_endpoint = pulumi.Output.from_input(f"http://{PROXY_HOST}:{PROXY_PORT}")
        self.register_outputs({"namespace": namespace, "proxy_endpoint": self.proxy_endpoint})
