"""ClusterAutoscaler and NvidiaDevicePlugin under pulumi mocks."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import kubernetes_validate
import pulumi
import pytest

from infra.capture import stack_config
from infra.components import cluster_autoscaler as ca
from infra.components import device_plugin as dp
from infra.components.k8s_common import WorkloadArgsError
from infra.instances import SUPPORTED_KUBERNETES_VERSIONS
from infra.naming import GPU_TAINT_KEY, POOL_LABEL_KEY
from infra.program import device_plugin_pools
from infra.settings import settings_from_config
from tests.infra.conftest_workloads import (
    CLUSTER_NAME,
    OIDC_HOST,
    OIDC_ISSUER,
    OIDC_PROVIDER_ARN,
    REGION,
    Declared,
    as_manifest,
    declare,
    one,
)


def autoscaler_args(**overrides: Any) -> ca.ClusterAutoscalerArgs:
    values: dict[str, Any] = dict(
        cluster_name=CLUSTER_NAME,
        kubernetes_version="1.32",
        region=REGION,
        oidc_provider_arn=OIDC_PROVIDER_ARN,
        oidc_issuer=OIDC_ISSUER,
        node_pool="system",
        pool_label_key=POOL_LABEL_KEY,
        pull_image=None,
        tags={},
    )
    values.update(overrides)
    return ca.ClusterAutoscalerArgs(**values)


def plugin_args(**overrides: Any) -> dp.DevicePluginArgs:
    values: dict[str, Any] = dict(
        gpu_pools=("gpu", "gpu-spot"),
        pull_image=None,
        pool_label_key=POOL_LABEL_KEY,
        taint_key=GPU_TAINT_KEY,
    )
    values.update(overrides)
    return dp.DevicePluginArgs(**values)


@pytest.fixture(scope="module")
def records() -> list[Declared]:
    def build() -> pulumi.Output[Any]:
        autoscaler = ca.ClusterAutoscaler("autoscaler", autoscaler_args())
        plugin = dp.NvidiaDevicePlugin("device-plugin", plugin_args())
        return pulumi.Output.all(autoscaler.role_arn, plugin.daemonset_name)

    return declare(build)


def autoscaler_pod(records: list[Declared]) -> dict[str, Any]:
    return one(records, "kubernetes:apps/v1:Deployment").inputs["spec"]["template"]


def plugin_pod(records: list[Declared]) -> dict[str, Any]:
    return one(records, "kubernetes:apps/v1:DaemonSet").inputs["spec"]["template"]


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES_VERSIONS)
def test_every_object_validates_against_the_kubernetes_schema(records, version):
    kubernetes = [r for r in records if r.is_kubernetes]
    assert len(kubernetes) == 10
    for record in kubernetes:
        kubernetes_validate.validate(as_manifest(record), version, strict=True)


def test_children_are_parented_to_their_component(records):
    for record in records:
        if record.type.startswith("tfserving-eks:"):
            continue
        owner = (
            "ClusterAutoscaler::autoscaler"
            if record.name.startswith("autoscaler-")
            else ("NvidiaDevicePlugin::device-plugin")
        )
        assert record.parent.endswith(owner), record.name


# --- cluster autoscaler -----------------------------------------------------------------------


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES_VERSIONS)
def test_autoscaler_image_matches_the_cluster_minor_version(version):
    image = ca.image_for(version)
    assert image.startswith(f"{ca.REPOSITORY}:v{version}.")
    assert autoscaler_args(kubernetes_version=version).resolved_image == image


def test_unpinned_cluster_version_is_refused():
    with pytest.raises(
        WorkloadArgsError, match=r"no cluster-autoscaler pinned for Kubernetes '1\.29'"
    ):
        autoscaler_args(kubernetes_version="1.29")


def test_autoscaler_role_trusts_only_its_service_account(records):
    role = one(records, "aws:iam/role:Role")
    (statement,) = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Federated": OIDC_PROVIDER_ARN}
    assert statement["Condition"]["StringEquals"] == {
        f"{OIDC_HOST}:sub": "system:serviceaccount:kube-system:cluster-autoscaler",
        f"{OIDC_HOST}:aud": "sts.amazonaws.com",
    }
    account = one(records, "kubernetes:core/v1:ServiceAccount", "autoscaler-").inputs["metadata"]
    assert (account["namespace"], account["name"]) == ("kube-system", "cluster-autoscaler")
    assert account["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")


def test_autoscaler_may_only_scale_this_clusters_node_groups(records):
    policy = json.loads(one(records, "aws:iam/rolePolicy:RolePolicy").inputs["policy"])
    mutating = [s for s in policy["Statement"] if "autoscaling:SetDesiredCapacity" in s["Action"]]
    (statement,) = mutating
    assert statement["Condition"]["StringEquals"] == {
        f"aws:ResourceTag/k8s.io/cluster-autoscaler/{CLUSTER_NAME}": "owned",
        "aws:ResourceTag/k8s.io/cluster-autoscaler/enabled": "true",
    }


def test_autoscaler_discovers_node_groups_by_both_tags(records):
    (container,) = autoscaler_pod(records)["spec"]["containers"]
    command = container["command"]
    assert command[0] == "./cluster-autoscaler"
    assert "--cloud-provider=aws" in command
    assert (
        "--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,"
        f"k8s.io/cluster-autoscaler/{CLUSTER_NAME}"
    ) in command
    # Serving pods keep models in emptyDir: GPU nodes must still be able to scale down.
    assert "--skip-nodes-with-local-storage=false" in command
    assert "--balance-similar-node-groups=true" in command
    assert {"name": "AWS_REGION", "value": REGION} in container["env"]
    assert container["image"] == ca.image_for("1.32")


def test_autoscaler_rbac_binds_its_roles_to_its_service_account(records):
    subject = [{"kind": "ServiceAccount", "name": "cluster-autoscaler", "namespace": "kube-system"}]
    cluster_binding = one(records, "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding")
    binding = one(records, "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding")
    assert cluster_binding.inputs["subjects"] == subject
    assert binding.inputs["subjects"] == subject
    assert cluster_binding.inputs["roleRef"]["kind"] == "ClusterRole"
    assert binding.inputs["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "cluster-autoscaler",
    }
    rules = one(records, "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole").inputs["rules"]
    verbs = {
        (g, r): set(rule["verbs"])
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        if "resourceNames" not in rule
    }
    assert verbs[("", "pods/eviction")] == {"create"}
    assert "delete" not in verbs[("", "nodes")]
    assert not any("*" in v for v in verbs.values())


def test_autoscaler_pod_is_hardened_and_probed(records):
    pod = autoscaler_pod(records)
    spec = pod["spec"]
    assert pod["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == (
        "false"
    )
    assert spec["nodeSelector"] == {POOL_LABEL_KEY: "system"}
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert spec["securityContext"]["runAsNonRoot"] is True
    (container,) = spec["containers"]
    context = container["securityContext"]
    assert context["runAsUser"] == 65534 and context["runAsGroup"] == 65534
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health-check"
        assert container[probe]["httpGet"]["port"] == ca.METRICS_PORT
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}


# --- NVIDIA device plugin -----------------------------------------------------------------------


def test_device_plugin_runs_only_on_gpu_pools_and_tolerates_their_taint(records):
    spec = plugin_pod(records)["spec"]
    (term,) = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert term["matchExpressions"] == [
        {"key": POOL_LABEL_KEY, "operator": "In", "values": ["gpu", "gpu-spot"]},
        # Never on EKS Auto Mode nodes (a migrating stack has both): they bring their own plugin.
        {"key": "eks.amazonaws.com/compute-type", "operator": "NotIn", "values": ["auto"]},
    ]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    assert spec["priorityClassName"] == "system-node-critical"


def test_device_plugin_image_is_pinned_and_mounts_the_kubelet_socket_dir(records):
    spec = plugin_pod(records)["spec"]
    (container,) = spec["containers"]
    assert container["image"] == dp.DEVICE_PLUGIN_IMAGE
    assert container["image"].startswith("nvcr.io/nvidia/k8s-device-plugin:v")
    assert container["volumeMounts"] == [
        {"name": "device-plugins", "mountPath": "/var/lib/kubelet/device-plugins"}
    ]
    assert spec["volumes"] == [
        {
            "name": "device-plugins",
            "hostPath": {"path": "/var/lib/kubelet/device-plugins", "type": "Directory"},
        }
    ]


def test_device_plugin_is_root_only_for_the_socket_and_otherwise_locked_down(records):
    (container,) = plugin_pod(records)["spec"]["containers"]
    context = container["securityContext"]
    assert context["runAsUser"] == 0  # explicit: the kubelet's socket directory is root-owned
    assert context["privileged"] is False
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}


def test_device_plugin_needs_pools_and_a_pinned_image():
    with pytest.raises(WorkloadArgsError) as caught:
        plugin_args(gpu_pools=(), image="nvcr.io/nvidia/k8s-device-plugin:latest")
    assert len(caught.value.problems) == 2
    assert "gpu_pools is empty" in str(caught.value)
    assert "moving 'latest' tag" in str(caught.value)


def test_device_plugin_probes_its_registration_socket_and_admits_no_ingress(records):
    (container,) = plugin_pod(records)["spec"]["containers"]
    socket = ["test", "-S", "/var/lib/kubelet/device-plugins/nvidia-gpu.sock"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"] == socket
    policies = [r for r in records if r.type.endswith("NetworkPolicy")]
    assert {p.name for p in policies} == {
        "autoscaler-network-policy",
        "device-plugin-network-policy",
    }
    for policy in policies:
        assert policy.inputs["spec"]["ingress"] == []
        assert policy.inputs["spec"]["policyTypes"] == ["Ingress"]


def test_device_plugin_only_on_al2023_pools() -> None:
    """Bottlerocket runs NVIDIA's plugin itself (bottlerocket-os/bottlerocket#3992)."""
    base = settings_from_config("prod", stack_config("prod"))
    pools = {
        p.name: replace(p, ami_type=ami)
        for p, ami in zip(
            [base.gpu_node_pools[0], replace(base.gpu_node_pools[0], name="br")],
            ["AL2023_x86_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA"],
            strict=True,
        )
    }
    settings = replace(base, gpu_node_pools=tuple(pools.values()))
    assert device_plugin_pools(settings) == ("gpu",)
    assert device_plugin_pools(replace(settings, compute_mode="autoMode")) == ()
