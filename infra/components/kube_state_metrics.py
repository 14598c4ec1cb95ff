"""kube-state-metrics, reduced to the pod series the capacity alert reads.

`KubeStateMetrics` creates, in ``kube-system``: a ServiceAccount, a ClusterRole that may only
list and watch pods with its binding, a one-replica Deployment of
``registry.k8s.io/kube-state-metrics/kube-state-metrics`` (pulled from the stack's mirror by
digest, like every third-party image), and a NetworkPolicy admitting only the managed scraper
on the metrics port. The program declares it where a rule file needs it
(`infra.metric_producers.RULE_FILES`: ``gpu-capacity``, on stacks with GPU pools and the managed
workspace), on either compute mode: it runs on the system pool, which both modes have.

Least privilege: ``--resources=pods`` makes it watch pods only, and ``--metric-allowlist``
exposes exactly the series the table names for it (`infra.metric_producers.PRODUCERS`), so the
pods' other metadata never reaches the workspace. The container is hardened as upstream's own
manifests do it (examples/standard/deployment.yaml: uid 65534, read-only root filesystem, no
capabilities); it is the one system pod that keeps its API token, because watching pods is its
job (checkov's CKV_K8S_38 is skipped on it with that reason).

Plain pulumi-kubernetes objects rather than the Helm chart (as for the device plugin): a chart
cannot be fetched offline and is opaque to mocks and policies. Version: v2.20.0, the release
built against client-go 1.36 (its README's compatibility matrix), the stacks' Kubernetes minor.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.components.k8s_common import (
    Manifest,
    WorkloadArgsError,
    checkov_skips,
    container_security_context,
    label_value_problem,
    metadata,
    pod_security_context,
    recommended_labels,
    resources,
    scraper_network_policy_spec,
    selector_labels,
)
from infra.metric_producers import PRODUCERS

TYPE_TOKEN = "tfserving-eks:monitoring:KubeStateMetrics"
APP_NAME = "kube-state-metrics"
VERSION = "v2.20.0"
IMAGE = f"registry.k8s.io/kube-state-metrics/kube-state-metrics:{VERSION}"
# Its metrics port (the scrape job keeps the container port named "http") and self-telemetry.
METRICS_PORT = 8080
TELEMETRY_PORT = 8081
NOBODY = 65534
CHECKOV_SKIPS = {
    "CKV_K8S_38": "kube-state-metrics lists and watches pods through the Kubernetes API "
    "(its ClusterRole: pods, list/watch), so it needs its service account token",
}


@dataclass(frozen=True)
class KubeStateMetricsArgs:
    """Inputs of `KubeStateMetrics`: where it runs, what it pulls, who may scrape it."""

    pull_image: pulumi.Input[str] | None
    pool_label_key: str
    node_pool: str
    scraper_cidrs: tuple[str, ...] = ()
    namespace: str = "kube-system"

    def __post_init__(self) -> None:
        found = [p for p in [label_value_problem("node_pool", self.node_pool)] if p]
        if found:
            raise WorkloadArgsError("KubeStateMetrics", found)


def kube_state_metrics_args() -> list[str]:
    """Its flags (docs/developer/cli-arguments.md): pods only, the table's series only."""
    allowed = ",".join(sorted(PRODUCERS[APP_NAME].metrics))
    return [
        f"--port={METRICS_PORT}",
        f"--telemetry-port={TELEMETRY_PORT}",
        "--resources=pods",
        f"--metric-allowlist={allowed}",
    ]


def pod_template(args: KubeStateMetricsArgs, labels: dict[str, str]) -> Manifest:
    return {
        "metadata": {"labels": labels},
        "spec": {
            "serviceAccountName": APP_NAME,
            "priorityClassName": "system-cluster-critical",
            "nodeSelector": {args.pool_label_key: args.node_pool},
            "securityContext": pod_security_context(NOBODY, NOBODY),
            "containers": [
                {
                    "name": APP_NAME,
                    "image": IMAGE if args.pull_image is None else args.pull_image,
                    "imagePullPolicy": "IfNotPresent",
                    "args": kube_state_metrics_args(),
                    "ports": [
                        {"name": "http", "containerPort": METRICS_PORT, "protocol": "TCP"},
                        {"name": "telemetry", "containerPort": TELEMETRY_PORT, "protocol": "TCP"},
                    ],
                    # Upstream's probes (/livez on the metrics port, /readyz on telemetry), and
                    # a startup probe on /livez in place of their 5 s initial delay.
                    "startupProbe": {
                        "httpGet": {"path": "/livez", "port": METRICS_PORT},
                        "periodSeconds": 5,
                        "failureThreshold": 24,
                    },
                    "livenessProbe": {
                        "httpGet": {"path": "/livez", "port": METRICS_PORT},
                        "timeoutSeconds": 5,
                    },
                    "readinessProbe": {
                        "httpGet": {"path": "/readyz", "port": TELEMETRY_PORT},
                        "initialDelaySeconds": 5,
                        "timeoutSeconds": 5,
                    },
                    "resources": resources("10m", "64Mi", "100m", "256Mi"),
                    "securityContext": container_security_context(NOBODY, NOBODY),
                }
            ],
        },
    }


class KubeStateMetrics(pulumi.ComponentResource):
    """ServiceAccount, RBAC (pods: list, watch), Deployment and NetworkPolicy."""

    def __init__(
        self, name: str, args: KubeStateMetricsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = recommended_labels(APP_NAME, APP_NAME, VERSION, "metrics-exporter")
        selector = selector_labels(APP_NAME, APP_NAME)
        account = k8s.core.v1.ServiceAccount(
            f"{name}-service-account",
            metadata=metadata(APP_NAME, labels, args.namespace),
            opts=child,
        )
        role = k8s.rbac.v1.ClusterRole(
            f"{name}-cluster-role",
            metadata=metadata(APP_NAME, labels),
            rules=[{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}],
            opts=child,
        )
        binding = k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-cluster-role-binding",
            metadata=metadata(APP_NAME, labels),
            role_ref={
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role.metadata.apply(lambda m: m.name),
            },
            subjects=[{"kind": "ServiceAccount", "name": APP_NAME, "namespace": args.namespace}],
            opts=child,
        )
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=metadata(APP_NAME, labels, args.namespace, checkov_skips(CHECKOV_SKIPS)),
            spec={
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "template": pod_template(args, labels),
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[account, binding]),
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata=metadata(f"{APP_NAME}-ingress", labels, args.namespace),
            spec=scraper_network_policy_spec(selector, args.scraper_cidrs, METRICS_PORT),
            opts=child,
        )
        self.register_outputs({})
