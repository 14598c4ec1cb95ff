"""NVIDIA's DCGM exporter on GPU nodes only: per-GPU utilisation and memory for Prometheus.

`DcgmExporter` creates a ServiceAccount, a DaemonSet and a NetworkPolicy in ``kube-system``
running ``nvcr.io/nvidia/k8s/dcgm-exporter`` (the stack's ``dcgmExporterImage``, by default a
release of NVIDIA's own DaemonSet example); the pod pulls ``pull_image``, the stack's
digest-pinned copy of it (`infra.components.image_mirror`). Like the device plugin it is placed
by node affinity on the GPU pools and tolerates the GPU taint. It serves ``DCGM_FI_DEV_*`` series
on container port ``metrics`` (9400), which the managed scraper's ``dcgm-exporter`` job keeps
(monitoring/scrape/eks.yml); the rules of ``monitoring/rules/gpu.yml`` read them. The
NetworkPolicy admits the scraper's addresses on that port and nothing else.

How the exporter sees the GPUs without asking for one (it must not take a GPU a model needs),
per node family (docs/observability.md, "GPU telemetry per node family"):

- **AL2023 NVIDIA AMI** (node groups): ``nodeadm`` makes the NVIDIA container runtime containerd's
  default (awslabs/amazon-eks-ami, nodeadm/internal/containerd/runtime_config_nvidia.go), and
  the NVIDIA Container Toolkit's default ``accept-nvidia-visible-devices-envvar-when-unprivileged
  = true`` (NVIDIA/nvidia-container-toolkit, api/config/v1/toml.go) honours
  ``NVIDIA_VISIBLE_DEVICES=all`` for an unprivileged container.
- **Bottlerocket** (EKS Auto Mode's nodes; node groups with a Bottlerocket NVIDIA AMI): since
  1.19.2 ``NVIDIA_VISIBLE_DEVICES=all`` is honoured only for privileged containers
  (bottlerocket-os/bottlerocket#3992, #4052, SECURITY_GUIDANCE.md "Enforce requested NVIDIA GPU
  limits"; the exporter otherwise dies with "Failed to initialize NVML", NVIDIA/dcgm-exporter#279).
  Bottlerocket's documented unprivileged path is the one its device plugin uses: the runtime
  reads device requests from mounts under ``/var/run/nvidia-container-devices``
  (``settings.nvidia-container-runtime.visible-devices-as-volume-mounts``, default true,
  bottlerocket.dev API reference). The pod mounts the host's ``/dev/null`` at
  ``/var/run/nvidia-container-devices/all``, the form the toolkit reads
  (``requestsFromMounts`` in internal/config/image/cuda_image.go: source ``/dev/null``, device
  name = the path below the root).

Each family ignores the other's request (AL2023 keeps volume mounts off, Bottlerocket envvars
for unprivileged pods), so one pod spec carries both and gets all GPUs on either, with no
capability and no privilege: the CAP_SYS_ADMIN that NVIDIA's chart adds (it makes the toolkit
treat the container as privileged, internal/config/image/privileged.go) serves only DCGM's
profiling metrics, which no rule reads.

The exporter runs as a non-root uid (NVIDIA's chart values: "For non-root without profiling
metrics, use runAsNonRoot: true"), which rules out DCGM_EXPORTER_KUBERNETES' GPU-to-pod labels:
they need the kubelet's root-owned pod-resources socket, and nothing reads them (the rules and
the dashboard group by ``Hostname`` and ``gpu``; which pod runs on a node is
``kube_pod_info``'s). ``NODE_NAME`` makes ``Hostname`` the node's name instead of the pod's
(dcgm-exporter internal/pkg/hostname/hostname.go).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.components.k8s_common import (
    Manifest,
    WorkloadArgsError,
    container_security_context,
    dns_label_problem,
    gpu_node_agent_spec,
    label_value_problem,
    metadata,
    pinned_image_problem,
    recommended_labels,
    resources,
    scraper_network_policy_spec,
    selector_labels,
)

TYPE_TOKEN = "tfserving-eks:monitoring:DcgmExporter"
APP_NAME = "dcgm-exporter"
METRICS_PORT = 9400
# 10000 and up (checkov CKV_K8S_40); no file of the image needs a particular uid.
EXPORTER_UID = 10100
# The NVIDIA Container Toolkit's root for device requests made as mounts (cuda_image.go).
DEVICE_REQUESTS_DIR = "/var/run/nvidia-container-devices"


@dataclass(frozen=True)
class DcgmExporterArgs:
    """Inputs of `DcgmExporter`: the GPU pools, the image and who may scrape it. ``image`` is
    the upstream reference (pinned by tag or digest; it names the version label); ``pull_image``
    what the pod pulls, the stack's copy by digest (default ``image``); ``scraper_cidrs`` the
    managed scraper's addresses (none: nothing may connect)."""

    gpu_pools: tuple[str, ...]
    image: str
    pull_image: pulumi.Input[str] | None
    pool_label_key: str
    taint_key: str
    scraper_cidrs: tuple[str, ...] = ()
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
    health = {"httpGet": {"path": "/health", "port": METRICS_PORT}}
    return {
        "metadata": {"labels": labels},
        "spec": {
            **gpu_node_agent_spec(
                APP_NAME,
                args.pool_label_key,
                args.gpu_pools,
                args.taint_key,
                run_as_user=EXPORTER_UID,
            ),
            "containers": [
                {
                    "name": APP_NAME,
                    "image": args.image if args.pull_image is None else args.pull_image,
                    "imagePullPolicy": "IfNotPresent",
                    "env": [
                        {"name": "DCGM_EXPORTER_LISTEN", "value": f":{METRICS_PORT}"},
                        # The GPU request AL2023's runtime honours (see the module docstring).
                        {"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"},
                        {
                            "name": "NODE_NAME",
                            "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}},
                        },
                    ],
                    "ports": [
                        {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}
                    ],
                    # Starting DCGM's embedded host engine takes a few seconds per GPU.
                    "startupProbe": {**health, "periodSeconds": 5, "failureThreshold": 24},
                    "readinessProbe": {**health, "periodSeconds": 10},
                    "livenessProbe": {**health, "periodSeconds": 30},
                    "resources": resources("100m", "256Mi", "500m", "512Mi"),
                    "securityContext": container_security_context(EXPORTER_UID, EXPORTER_UID),
                    "volumeMounts": [
                        # The GPU request Bottlerocket's runtime honours (module docstring).
                        {
                            "name": "all-gpus",
                            "mountPath": f"{DEVICE_REQUESTS_DIR}/all",
                            "readOnly": True,
                        },
                        {"name": "tmp", "mountPath": "/tmp"},
                    ],
                }
            ],
            "volumes": [
                {"name": "all-gpus", "hostPath": {"path": "/dev/null", "type": "CharDevice"}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
            ],
        },
    }


class DcgmExporter(pulumi.ComponentResource):
    """ServiceAccount, DaemonSet and NetworkPolicy of the DCGM exporter on the GPU pools."""

    def __init__(
        self, name: str, args: DcgmExporterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # The tag when the reference carries one (e.g. 4.5.2-4.8.1-ubuntu22.04@sha256:...).
        named = args.image.split("@", 1)[0].rsplit("/", 1)[-1]
        version = named.partition(":")[2][:63] or "digest"
        labels = recommended_labels(APP_NAME, APP_NAME, version, "gpu-telemetry")
        selector = selector_labels(APP_NAME, APP_NAME)
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
                "selector": {"matchLabels": selector},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "template": dcgm_pod_template(args, labels),
            },
            opts=child,
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata=metadata(f"{APP_NAME}-ingress", labels, args.namespace),
            spec=scraper_network_policy_spec(selector, args.scraper_cidrs, METRICS_PORT),
            opts=child,
        )
        self.register_outputs({})
