"""The NVIDIA device plugin, on GPU nodes only.

`NvidiaDevicePlugin` creates a ServiceAccount, a DaemonSet and a NetworkPolicy in ``kube-system``
running the pinned ``nvcr.io/nvidia/k8s-device-plugin`` image. The DaemonSet's node affinity
names the GPU pools (by the pool label every node group carries), so it never lands on CPU nodes,
and it tolerates the GPU taint. It advertises ``nvidia.com/gpu`` to the kubelet, which is what
lets the serving pods' GPU limits schedule at all. The program gives it only the pools on the
AL2023 NVIDIA AMI: Bottlerocket runs NVIDIA's device plugin itself, as a system service, and a
second copy "could cause unexpected behavior" (a Bottlerocket maintainer in
bottlerocket-os/bottlerocket#3992); Auto Mode nodes bring their own too.

It talks to the kubelet over Unix sockets only and serves no port: its probes check that its
registration socket is there (``test -S``; the image is built on UBI 9, whose coreutils ship
``test``, NVIDIA/k8s-device-plugin deployments/container/Dockerfile), and the NetworkPolicy admits
no ingress at all.

Plain pulumi-kubernetes objects rather than NVIDIA's Helm chart: a chart cannot be fetched
offline and is opaque to mocks and policies.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.components.k8s_common import (
    Manifest,
    WorkloadArgsError,
    checkov_skips,
    dns_label_problem,
    gpu_node_agent_spec,
    label_value_problem,
    metadata,
    pinned_image_problem,
    recommended_labels,
    resources,
    root_agent_security_context,
    scraper_network_policy_spec,
    selector_labels,
)
from infra.naming import AUTO_COMPUTE_TYPE, COMPUTE_TYPE_LABEL_KEY

TYPE_TOKEN = "tfserving-eks:cluster:NvidiaDevicePlugin"
DEVICE_PLUGIN_IMAGE = "nvcr.io/nvidia/k8s-device-plugin:v0.17.3"
APP_NAME = "nvidia-device-plugin"
KUBELET_DEVICE_PLUGINS = "/var/lib/kubelet/device-plugins"
# Root, and why: the two checkov findings it keeps, on the DaemonSet.
_ROOT_REASON = (
    "the plugin creates its gRPC socket in the kubelet's root-owned "
    "/var/lib/kubelet/device-plugins (a hostPath: fsGroup does not apply), so it runs as uid 0; "
    "every capability is dropped, no privilege escalation, read-only root filesystem"
)
CHECKOV_SKIPS = {"CKV_K8S_23": _ROOT_REASON, "CKV_K8S_40": _ROOT_REASON}
# The socket it registers nvidia.com/gpu with: "nvidia-" + the resource's name
# (getPluginSocketPath in internal/plugin/server.go).
PLUGIN_SOCKET = f"{KUBELET_DEVICE_PLUGINS}/nvidia-gpu.sock"


@dataclass(frozen=True)
class DevicePluginArgs:
    """Inputs of `NvidiaDevicePlugin`: the GPU pools it runs on and the pinned image. ``image``
    is the upstream reference (it names the version label); ``pull_image`` what the pod pulls,
    the stack's copy by digest (default ``image``)."""

    gpu_pools: tuple[str, ...]
    pull_image: pulumi.Input[str] | None
    pool_label_key: str
    taint_key: str
    image: str = DEVICE_PLUGIN_IMAGE
    namespace: str = "kube-system"

    def __post_init__(self) -> None:
        problems = [
            pinned_image_problem("image", self.image),
            dns_label_problem("namespace", self.namespace),
        ]
        if not self.gpu_pools:
            problems.append("gpu_pools is empty: the plugin must name the pools it runs on")
        problems += [label_value_problem("gpu_pools entry", p) for p in self.gpu_pools]
        if not self.pool_label_key:
            problems.append("pool_label_key is empty: give the node label of pools")
        found = [p for p in problems if p]
        if found:
            raise WorkloadArgsError("NvidiaDevicePlugin", found)

    @property
    def version(self) -> str:
        return self.image.split("@", 1)[0].rpartition(":")[2] or "unknown"


def device_plugin_pod_template(args: DevicePluginArgs, labels: dict[str, str]) -> Manifest:
    """Pod template of the DaemonSet."""
    socket_present = {"exec": {"command": ["test", "-S", PLUGIN_SOCKET]}}
    return {
        "metadata": {"labels": labels},
        "spec": {
            # Root is required, and only root: the plugin creates its gRPC socket in the
            # kubelet's root-owned device-plugins directory (a hostPath; fsGroup does not apply
            # to hostPath volumes).
            **gpu_node_agent_spec(
                APP_NAME,
                args.pool_label_key,
                args.gpu_pools,
                args.taint_key,
                # EKS Auto Mode nodes carry the pool label too while a stack migrates, and run
                # their own plugin (EKS user guide, "Deploy an accelerated workload"): never a
                # second one there.
                extra_match_expressions=[
                    {
                        "key": COMPUTE_TYPE_LABEL_KEY,
                        "operator": "NotIn",
                        "values": [AUTO_COMPUTE_TYPE],
                    }
                ],
                extra_tolerations=[{"key": "CriticalAddonsOnly", "operator": "Exists"}],
            ),
            "containers": [
                {
                    "name": APP_NAME,
                    "image": args.image if args.pull_image is None else args.pull_image,
                    "imagePullPolicy": "IfNotPresent",
                    # Crash loudly on a GPU node whose driver is missing instead of advertising
                    # zero GPUs and leaving serving pods Pending with no hint why.
                    "env": [{"name": "FAIL_ON_INIT_ERROR", "value": "true"}],
                    # The kubelet deletes the plugins' sockets when it restarts; the plugin
                    # then registers again. A socket missing for a minute means it did not.
                    "readinessProbe": {**socket_present, "periodSeconds": 10},
                    "livenessProbe": {
                        **socket_present,
                        "initialDelaySeconds": 30,
                        "periodSeconds": 20,
                        "failureThreshold": 3,
                    },
                    "resources": resources("50m", "64Mi", "200m", "256Mi"),
                    "securityContext": root_agent_security_context(),
                    "volumeMounts": [
                        {"name": "device-plugins", "mountPath": KUBELET_DEVICE_PLUGINS}
                    ],
                }
            ],
            "volumes": [
                {
                    "name": "device-plugins",
                    "hostPath": {"path": KUBELET_DEVICE_PLUGINS, "type": "Directory"},
                }
            ],
        },
    }


class NvidiaDevicePlugin(pulumi.ComponentResource):
    """ServiceAccount, DaemonSet and NetworkPolicy of the NVIDIA device plugin on the GPU pools."""

    daemonset_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: DevicePluginArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = recommended_labels(APP_NAME, APP_NAME, args.version, "device-plugin")
        selector = selector_labels(APP_NAME, APP_NAME)
        account = k8s.core.v1.ServiceAccount(
            f"{name}-service-account",
            metadata=metadata(APP_NAME, labels, args.namespace),
            automount_service_account_token=False,
            opts=child,
        )
        daemonset = k8s.apps.v1.DaemonSet(
            f"{name}-daemonset",
            metadata=metadata(APP_NAME, labels, args.namespace, checkov_skips(CHECKOV_SKIPS)),
            spec={
                "selector": {"matchLabels": selector},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "template": device_plugin_pod_template(args, labels),
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[account]),
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata=metadata(f"{APP_NAME}-ingress", labels, args.namespace),
            spec=scraper_network_policy_spec(selector, (), None),
            opts=child,
        )
        self.daemonset_name = daemonset.metadata.apply(lambda m: m.name)
        self.register_outputs({"daemonset_name": self.daemonset_name})
