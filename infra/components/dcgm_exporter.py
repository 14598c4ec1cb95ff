"""NVIDIA's DCGM exporter on GPU nodes only: per-GPU utilisation and memory for Prometheus.

`DcgmExporter` creates a ServiceAccount and a DaemonSet in ``kube-system`` running
``nvcr.io/nvidia/k8s/dcgm-exporter`` (the stack's ``dcgmExporterImage``, by default a release of
NVIDIA's own DaemonSet example); the pod pulls ``pull_image``, the stack's digest-pinned copy of it
(`infra.components.image_mirror`). Like the device
plugin it is placed by node affinity on the GPU pools and tolerates the GPU taint. It serves
``DCGM_FI_DEV_*`` series on container port ``metrics`` (9400), which the managed scraper's
``dcgm-exporter`` job keeps (monitoring/scrape/eks.yml); the ``GPUMemorySaturated`` and
``GPUUtilisationSaturated`` alerts read them.

Why the pod looks like this: the exporter reads every GPU of the node without asking for one
(``NVIDIA_VISIBLE_DEVICES=all`` through the NVIDIA container runtime the GPU AMIs make default),
maps GPUs to pods through the kubelet's read-only pod-resources socket (a hostPath, hence root),
and runs without ``SYS_ADMIN``: the profiling (DCP) metrics that need it are off, the device
metrics the alerts use are not.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.components.k8s_common import (
    Manifest,
    WorkloadArgsError,
    dns_label_problem,
    gpu_node_agent_spec,
    label_value_problem,
    metadata,
    pinned_image_problem,
    recommended_labels,
    resources,
    root_agent_security_context,
    selector_labels,
)

TYPE_TOKEN = "tfserving-eks:monitoring:DcgmExporter"
APP_NAME = "dcgm-exporter"
METRICS_PORT = 9400
POD_RESOURCES = "/var/lib/kubelet/pod-resources"


@dataclass(frozen=True)
class DcgmExporterArgs:
    """Inputs of `DcgmExporter`: the GPU pools and the image. ``image`` is the upstream reference
    (pinned by tag or digest; it names the version label); ``pull_image`` what the pod pulls, the
    stack's copy by digest (default ``image``)."""

    gpu_pools: tuple[str, ...]
    image: str
    pull_image: pulumi.Input[str] | None
    pool_label_key: str
    taint_key: str
    namespace: str = "kube-system"

    def __post_init__(self) -> None:
        problems = [
            dns_label_problem("namespace", self.namespace),
            pinned_image_problem("image", self.image),
        ]
        if not self.gpu_pools:
            problems.append("gpu_pools is empty: the exporter must name the pools it runs on")
        problems += [label_value_problem("gpu_pools entry", p) for p in self.gpu_pools]
        found = [p for p in problems if p]
        if found:
            raise WorkloadArgsError("DcgmExporter", found)


def dcgm_pod_template(args: DcgmExporterArgs, labels: dict[str, str]) -> Manifest:
    """Pod template of the DaemonSet."""
    return {
        "metadata": {"labels": labels},
        "spec": {
            **gpu_node_agent_spec(APP_NAME, args.pool_label_key, args.gpu_pools, args.taint_key),
            "containers": [
                {
                    "name": APP_NAME,
                    "image": args.image if args.pull_image is None else args.pull_image,
                    "imagePullPolicy": "IfNotPresent",
                    "env": [
                        {"name": "DCGM_EXPORTER_LISTEN", "value": f":{METRICS_PORT}"},
                        # Adds pod/namespace/container labels to each GPU's series.
                        {"name": "DCGM_EXPORTER_KUBERNETES", "value": "true"},
                        {"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"},
                    ],
                    "ports": [
                        {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}
                    ],
                    # Starting DCGM's embedded host engine takes a few seconds per GPU.
                    "startupProbe": {
                        "httpGet": {"path": "/health", "port": METRICS_PORT},
                        "periodSeconds": 5,
                        "failureThreshold": 24,
                    },
                    "readinessProbe": {
                        "httpGet": {"path": "/health", "port": METRICS_PORT},
                        "periodSeconds": 10,
                    },
                    "livenessProbe": {
                        "httpGet": {"path": "/health", "port": METRICS_PORT},
                        "initialDelaySeconds": 30,
                        "periodSeconds": 30,
                    },
                    "resources": resources("100m", "256Mi", "500m", "512Mi"),
                    "securityContext": root_agent_security_context(),
                    "volumeMounts": [
                        {"name": "pod-resources", "mountPath": POD_RESOURCES, "readOnly": True},
                        {"name": "tmp", "mountPath": "/tmp"},
                    ],
                }
            ],
            "volumes": [
                {"name": "pod-resources", "hostPath": {"path": POD_RESOURCES, "type": "Directory"}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
            ],
        },
    }


class DcgmExporter(pulumi.ComponentResource):
    """ServiceAccount + DaemonSet of the DCGM exporter on the GPU pools."""

    def __init__(
        self, name: str, args: DcgmExporterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # The tag when the reference carries one (e.g. 4.5.2-4.8.1-ubuntu22.04@sha256:...).
        named = args.image.split("@", 1)[0].rsplit("/", 1)[-1]
        version = named.partition(":")[2][:63] or "digest"
        labels = recommended_labels(APP_NAME, APP_NAME, version, "gpu-telemetry")
        k8s.core.v1.ServiceAccount(
            f"{name}-service-account",
            metadata=metadata(APP_NAME, labels, args.namespace),
            automount_service_account_token=False,
            opts=child,
        )
        k8s.apps.v1.DaemonSet(
            f"{name}-daemonset",
            metadata=metadata(APP_NAME, labels, args.namespace),
            spec={
                "selector": {"matchLabels": selector_labels(APP_NAME, APP_NAME)},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "template": dcgm_pod_template(args, labels),
            },
            opts=child,
        )
        self.register_outputs({})
