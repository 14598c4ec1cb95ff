"""Kubernetes cluster autoscaler for this cluster's EKS node groups.

`ClusterAutoscaler` creates:

- an IAM role trusting exactly the ``kube-system/cluster-autoscaler`` ServiceAccount (IRSA, ``sub``
  and ``aud``) whose policy (`infra.iam.cluster_autoscaler_policy`) may only scale or terminate
  Auto Scaling groups tagged as owned by and enabled for this cluster;
- the ServiceAccount, its ClusterRole/Role and bindings (the upstream chart's rules, nothing more);
- a Deployment running the pinned ``registry.k8s.io/autoscaling/cluster-autoscaler`` image whose
  minor version matches the cluster's, with node-group auto-discovery on those two tags, and a
  NetworkPolicy admitting no ingress to it. Scale from
  zero for GPU pools relies on the ``k8s.io/cluster-autoscaler/node-template/*`` tags the node
  groups put on their Auto Scaling groups (the node-group component's job) and on
  ``eks:DescribeNodegroup``.

Plain pulumi-kubernetes objects rather than the Helm chart: a chart cannot be fetched offline and
is opaque to mocks and policies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import iam
from infra.components.k8s_common import (
    PART_OF,
    Manifest,
    WorkloadArgsError,
    checkov_skips,
    container_security_context,
    dns_label_problem,
    label_value_problem,
    metadata,
    pinned_image_problem,
    pod_security_context,
    recommended_labels,
    resources,
    scraper_network_policy_spec,
    selector_labels,
)

TYPE_TOKEN = "tfserving-eks:cluster:ClusterAutoscaler"
APP_NAME = "cluster-autoscaler"
REPOSITORY = "registry.k8s.io/autoscaling/cluster-autoscaler"
# The autoscaler's minor version must match the cluster's (upstream's compatibility rule).
IMAGE_TAGS = {
    "1.32": "v1.32.1",
    "1.33": "v1.33.0",
    "1.34": "v1.34.0",
    "1.35": "v1.35.1",
    "1.36": "v1.36.1",
}
METRICS_PORT = 8085
NOBODY = 65534
# The one checkov finding it keeps, on the Deployment, with the reason a reviewer can check.
CHECKOV_SKIPS = {
    "CKV_K8S_38": "the autoscaler watches pods and nodes and updates its status ConfigMap "
    "through the Kubernetes API (cluster_role_rules), so it needs its service account token",
}


class UnsupportedKubernetesVersion(ValueError):
    """No cluster-autoscaler release is pinned for this Kubernetes minor version."""


def image_for(kubernetes_version: str) -> str:
    """The pinned autoscaler image for a cluster version such as ``"1.32"``."""
    minor = ".".join(kubernetes_version.removeprefix("v").split(".")[:2])
    try:
        return f"{REPOSITORY}:{IMAGE_TAGS[minor]}"
    except KeyError:
        raise UnsupportedKubernetesVersion(
            f"no cluster-autoscaler pinned for Kubernetes {kubernetes_version!r}; pinned: "
            f"{', '.join(sorted(IMAGE_TAGS))} (add the matching release to IMAGE_TAGS)"
        ) from None


@dataclass(frozen=True)
class ClusterAutoscalerArgs:
    """Inputs of `ClusterAutoscaler`. Plain values except where typed `pulumi.Input`."""

    cluster_name: pulumi.Input[str]
    kubernetes_version: str
    region: str
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]
    node_pool: str
    pool_label_key: str
    # What the pod pulls: the stack's copy of the image by digest (None: the image itself).
    pull_image: pulumi.Input[str] | None
    tags: dict[str, str]
    image: str | None = None
    expander: str = "least-waste"
    scale_down_unneeded_time: str = "10m"
    scale_down_delay_after_add: str = "10m"
    # GPU nodes take minutes to join (driver init): give them longer than the default 15m.
    max_node_provision_time: str = "20m"
    namespace: str = "kube-system"

    def __post_init__(self) -> None:
        problems: list[str | None] = [
            dns_label_problem("namespace", self.namespace),
            label_value_problem("node_pool", self.node_pool),
        ]
        if self.expander not in ("least-waste", "most-pods", "random", "priority", "price"):
            problems.append(f"expander {self.expander!r}: use least-waste, most-pods, random, ...")
        if not self.region:
            problems.append("region is empty: the autoscaler calls the region's AWS APIs")
        try:
            problems.append(pinned_image_problem("image", self.resolved_image))
        except UnsupportedKubernetesVersion as exc:
            problems.append(f"kubernetes_version: {exc}")
        found = [p for p in problems if p]
        if found:
            raise WorkloadArgsError("ClusterAutoscaler", found)

    @property
    def resolved_image(self) -> str:
        return self.image if self.image is not None else image_for(self.kubernetes_version)

    @property
    def version(self) -> str:
        return self.resolved_image.split("@", 1)[0].rpartition(":")[2] or "unknown"


def autoscaler_command(cluster_name: pulumi.Input[str], args: ClusterAutoscalerArgs) -> list[Any]:
    """The autoscaler's command line (flags from its FAQ and AWS provider README)."""
    # Both tags must be present: "enabled" alone would also match other clusters' groups.
    discovery = pulumi.Output.from_input(cluster_name).apply(
        lambda cluster: (
            "--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,"
            + iam.autoscaler_ownership_tag(cluster)
        )
    )
    return [
        "./cluster-autoscaler",
        "--cloud-provider=aws",
        discovery,
        "--v=2",
        "--stderrthreshold=info",
        f"--expander={args.expander}",
        # Node groups of one pool are interchangeable: keep them in step across AZs.
        "--balance-similar-node-groups=true",
        # Serving pods keep models in an emptyDir that the sidecar can refill from S3; without
        # this, GPU nodes running them could never scale down.
        "--skip-nodes-with-local-storage=false",
        f"--scale-down-unneeded-time={args.scale_down_unneeded_time}",
        f"--scale-down-delay-after-add={args.scale_down_delay_after_add}",
        f"--max-node-provision-time={args.max_node_provision_time}",
        f"--address=:{METRICS_PORT}",
    ]


def cluster_role_rules() -> list[Manifest]:
    """The upstream chart's ClusterRole rules (templates/clusterrole.yaml), nothing more."""
    read = ["watch", "list", "get"]
    return [
        {"apiGroups": [""], "resources": ["events", "endpoints"], "verbs": ["create", "patch"]},
        {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["update"]},
        {
            "apiGroups": [""],
            "resources": ["endpoints"],
            "resourceNames": [APP_NAME],
            "verbs": ["get", "update"],
        },
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["watch", "list", "get", "update"]},
        {
            "apiGroups": [""],
            "resources": [
                "namespaces",
                "pods",
                "services",
                "replicationcontrollers",
                "persistentvolumeclaims",
                "persistentvolumes",
            ],
            "verbs": read,
        },
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": read},
        {
            "apiGroups": ["policy"],
            "resources": ["poddisruptionbudgets"],
            "verbs": ["watch", "list"],
        },
        {
            "apiGroups": ["apps"],
            "resources": ["daemonsets", "replicasets", "statefulsets"],
            "verbs": read,
        },
        {
            "apiGroups": ["storage.k8s.io"],
            "resources": [
                "storageclasses",
                "csinodes",
                "csidrivers",
                "csistoragecapacities",
                "volumeattachments",
            ],
            "verbs": read,
        },
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "watch", "get"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [APP_NAME],
            "verbs": ["get", "update"],
        },
    ]


def namespace_role_rules() -> list[Manifest]:
    """Its own status ConfigMap in its namespace (upstream chart's Role)."""
    return [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "list", "watch"]},
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["cluster-autoscaler-status", "cluster-autoscaler-priority-expander"],
            "verbs": ["delete", "get", "update", "watch"],
        },
    ]


def autoscaler_pod_template(
    args: ClusterAutoscalerArgs, labels: dict[str, str], cluster_name: pulumi.Input[str]
) -> Manifest:
    """Pod template of the autoscaler Deployment."""
    health = {"httpGet": {"path": "/health-check", "port": METRICS_PORT, "scheme": "HTTP"}}
    return {
        "metadata": {
            "labels": labels,
            "annotations": {
                # It must not evict itself while draining the node it runs on.
                "cluster-autoscaler.kubernetes.io/safe-to-evict": "false",
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(METRICS_PORT),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {
            "serviceAccountName": APP_NAME,
            "priorityClassName": "system-cluster-critical",
            "nodeSelector": {args.pool_label_key: args.node_pool},
            "securityContext": pod_security_context(NOBODY, NOBODY),
            "containers": [
                {
                    "name": APP_NAME,
                    "image": args.resolved_image if args.pull_image is None else args.pull_image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": autoscaler_command(cluster_name, args),
                    "env": [{"name": "AWS_REGION", "value": args.region}],
                    "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
                    "startupProbe": {**health, "periodSeconds": 5, "failureThreshold": 24},
                    "readinessProbe": {**health, "periodSeconds": 10},
                    "livenessProbe": {**health, "periodSeconds": 10, "failureThreshold": 3},
                    "resources": resources("100m", "600Mi", "100m", "600Mi"),
                    "securityContext": container_security_context(NOBODY, NOBODY),
                }
            ],
        },
    }


class ClusterAutoscaler(pulumi.ComponentResource):
    """IRSA role, RBAC and Deployment of the cluster autoscaler."""

    role_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: ClusterAutoscalerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = recommended_labels(APP_NAME, APP_NAME, args.version, "node-autoscaler")
        selector = selector_labels(APP_NAME, APP_NAME)

        role = aws.iam.Role(
            f"{name}-role",
            description="cluster-autoscaler: scales this cluster's node groups",
            assume_role_policy=iam.irsa_trust_policy(
                args.oidc_provider_arn, args.oidc_issuer, args.namespace, APP_NAME
            ),
            tags={**args.tags, "app.kubernetes.io/part-of": PART_OF},
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-policy",
            role=role.id,
            policy=iam.cluster_autoscaler_policy(args.cluster_name),
            opts=child,
        )
        account = k8s.core.v1.ServiceAccount(
            f"{name}-service-account",
            metadata=metadata(
                APP_NAME, labels, args.namespace, {"eks.amazonaws.com/role-arn": role.arn}
            ),
            opts=child,
        )
        subject = [{"kind": "ServiceAccount", "name": APP_NAME, "namespace": args.namespace}]
        cluster_role = k8s.rbac.v1.ClusterRole(
            f"{name}-cluster-role",
            metadata=metadata(APP_NAME, labels),
            rules=cluster_role_rules(),
            opts=child,
        )
        cluster_binding = k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-cluster-role-binding",
            metadata=metadata(APP_NAME, labels),
            role_ref={
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": cluster_role.metadata.apply(lambda m: m.name),
            },
            subjects=subject,
            opts=child,
        )
        role_k8s = k8s.rbac.v1.Role(
            f"{name}-role",
            metadata=metadata(APP_NAME, labels, args.namespace),
            rules=namespace_role_rules(),
            opts=child,
        )
        binding = k8s.rbac.v1.RoleBinding(
            f"{name}-role-binding",
            metadata=metadata(APP_NAME, labels, args.namespace),
            role_ref={
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": role_k8s.metadata.apply(lambda m: m.name),
            },
            subjects=subject,
            opts=child,
        )
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=metadata(APP_NAME, labels, args.namespace, checkov_skips(CHECKOV_SKIPS)),
            spec={
                # One active instance; leader election (on by default) guards against overlap
                # during a rollout.
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "template": autoscaler_pod_template(args, labels, args.cluster_name),
            },
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[account, cluster_binding, binding]
            ),
        )
        # Nothing connects to it (its metrics port is not scraped); kubelet probes still pass.
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata=metadata(f"{APP_NAME}-ingress", labels, args.namespace),
            spec=scraper_network_policy_spec(selector, (), None),
            opts=child,
        )
        self.role_arn = role.arn
        self.register_outputs({"role_arn": self.role_arn})
