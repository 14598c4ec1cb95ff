"""EKS Auto Mode for every stack shape: what `computeMode` autoMode and migrating declare, the
CRD schemas synth checks NodePools and NodeClasses against, the settings that guard the mode,
and the idle-capacity table of docs/cost.md."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from infra import crd_schemas, manifests
from infra.capture import REPO_ROOT, StackCapture, stack_config
from infra.components.auto_mode import node_pool_limits
from infra.components.cluster import AUTO_MODE_CLUSTER_ROLE_POLICIES
from infra.idle_capacity import idle_nodes
from infra.instances import GPU_AMI_TYPES, vcpus
from infra.naming import PROJECT
from infra.settings import GpuNodePool, InvalidSettingsError, settings_from_config
from policies.runner import load_config, mandatory, run_pack

STACKS = ("dev", "prod")
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
NODE_CLASS = "kubernetes:eks.amazonaws.com/v1:NodeClass"
CLUSTER = "aws:eks/cluster:Cluster"
POOL_LABEL = "tfserving-eks/pool"
AUTOSCALER_OR_PLUGIN = (
    "tfserving-eks:cluster:ClusterAutoscaler",
    "tfserving-eks:cluster:NvidiaDevicePlugin",
)


def of(cap: StackCapture, type_: str) -> list[Any]:
    return [r for r in cap.resources if r.type == type_]


def _gpu_pool(*instance_types: str) -> GpuNodePool:
    return GpuNodePool(name="gpu", instance_types=instance_types, capacity_type="SPOT",
                       min_size=0, max_size=3, desired_size=0, disk_size_gib=100,
                       ami_type=GPU_AMI_TYPES[0])  # fmt: skip


def settings_in(stack: str, mode: str):
    config = copy.deepcopy(stack_config(stack))
    config[f"{PROJECT}:computeMode"] = mode
    if mode == "autoMode":
        for pool in config[f"{PROJECT}:gpuNodePools"].values():
            pool["minSize"] = pool["desiredSize"] = 0
    return settings_from_config(stack, config)


@pytest.fixture(params=[(s, m) for s in STACKS for m in ("autoMode", "migrating")], ids=str)
def auto(request: pytest.FixtureRequest, mode_captures) -> tuple[StackCapture, str]:
    stack, mode = request.param
    return mode_captures(stack, mode), mode


def test_cluster_runs_auto_mode_with_its_roles(auto) -> None:
    cap, _ = auto
    (cluster,) = of(cap, CLUSTER)
    inputs = cluster.inputs
    roles = {r.name: r for r in of(cap, "aws:iam/role:Role")}
    node_role = roles["auto-node-role"]
    assert inputs["computeConfig"]["enabled"] is True
    assert inputs["computeConfig"]["nodePools"] == ["general-purpose", "system"]
    assert ":role/auto-node-role" in inputs["computeConfig"]["nodeRoleArn"]
    assert inputs["storageConfig"] == {"blockStorage": {"enabled": True}}
    assert inputs["kubernetesNetworkConfig"]["elasticLoadBalancing"] == {"enabled": True}
    assert inputs["bootstrapSelfManagedAddons"] is False
    trust = json.loads(node_role.inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    attached = {a.inputs["policyArn"].rsplit("/", 1)[-1] for a in
                of(cap, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")}  # fmt: skip
    assert {p.rsplit("/", 1)[-1] for p in AUTO_MODE_CLUSTER_ROLE_POLICIES} <= attached
    assert {"AmazonEKSWorkerNodeMinimalPolicy", "AmazonEC2ContainerRegistryPullOnly"} <= attached


def test_one_node_class_and_node_pool_per_pool_from_the_settings(auto) -> None:
    cap, mode = auto
    settings = settings_in(cap.stack, mode)
    pools = {p.inputs["spec"]["template"]["metadata"]["labels"][POOL_LABEL]: p.inputs
             for p in of(cap, NODE_POOL)}  # fmt: skip
    classes = {c.inputs["metadata"]["name"]: c.inputs["spec"] for c in of(cap, NODE_CLASS)}
    (cluster,) = of(cap, CLUSTER)
    subnets = cluster.inputs["vpcConfig"]["subnetIds"]
    assert set(pools) == {"system", *(p.name for p in settings.gpu_node_pools)}
    for pool in (settings.system_node_pool, *settings.gpu_node_pools):
        spec = pools[pool.name]["spec"]
        template = spec["template"]["spec"]
        requirements = {r["key"]: r["values"] for r in template["requirements"]}
        assert requirements["node.kubernetes.io/instance-type"] == list(pool.instance_types)
        assert requirements["karpenter.sh/capacity-type"] == (
            ["spot", "on-demand"] if pool.capacity_type == "SPOT" else ["on-demand"]
        )
        assert requirements["kubernetes.io/arch"] == ["amd64"]
        assert spec["disruption"] == {
            "consolidationPolicy": "WhenEmptyOrUnderutilized",
            "consolidateAfter": f"{settings.node_consolidate_after_minutes}m",
            "budgets": [{"nodes": "1"}],
        }
        assert template["expireAfter"] == f"{settings.node_expire_after_hours}h"
        widest = max(vcpus(t) for t in pool.instance_types)
        assert spec["limits"]["cpu"] == str(pool.max_size * widest)
        if pool.is_gpu:
            assert template["taints"] == [
                {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}
            ]
            assert spec["limits"]["nvidia.com/gpu"] == str(pool.max_size * pool.gpus_per_node)
        else:
            assert "taints" not in template and "nvidia.com/gpu" not in spec["limits"]
        node_class = classes[template["nodeClassRef"]["name"]]
        assert template["nodeClassRef"]["group"] == "eks.amazonaws.com"
        assert node_class["role"].startswith("auto-node-role")
        assert [t["id"] for t in node_class["subnetSelectorTerms"]] == subnets
        assert node_class["securityGroupSelectorTerms"][0]["id"].startswith("sg-")
        assert node_class["ephemeralStorage"] == {"size": f"{pool.disk_size_gib}Gi"}
        assert node_class["networkPolicy"] == "DefaultAllow"


def test_serving_pods_land_on_a_node_pool_and_tolerate_its_taints(auto) -> None:
    cap, _ = auto
    pools = [p.inputs["spec"]["template"] for p in of(cap, NODE_POOL)]
    deployments = [d for d in of(cap, "kubernetes:apps/v1:Deployment")
                   if "tensorflow/serving" in json.dumps(d.inputs)]  # fmt: skip
    assert deployments
    for deployment in deployments:
        pod = deployment.inputs["spec"]["template"]["spec"]
        (pool,) = [
            p for p in pools if p["metadata"]["labels"].items() >= pod["nodeSelector"].items()
        ]
        tolerated = {t["key"] for t in pod.get("tolerations", [])}
        assert {t["key"] for t in pool["spec"].get("taints", [])} <= tolerated


def test_what_each_mode_keeps_of_the_node_group_path(auto) -> None:
    cap, mode = auto
    types = {r.type for r in cap.resources}
    addons = {r.inputs["addonName"] for r in of(cap, "aws:eks/addon:Addon")}
    configs = [c.inputs for c in of(cap, "kubernetes:core/v1:ConfigMap")
               if c.inputs["metadata"]["name"] == "amazon-vpc-cni"]  # fmt: skip
    (config,) = configs
    assert config["data"] == {"enable-network-policy-controller": "true"}
    assert config["metadata"]["namespace"] == "kube-system"
    # Never a cluster-autoscaler: while migrating only Auto Mode may add nodes.
    assert "tfserving-eks:cluster:ClusterAutoscaler" not in types
    if mode == "autoMode":
        assert addons == {"metrics-server"}
        assert not types & {"aws:eks/nodeGroup:NodeGroup", "aws:ec2/launchTemplate:LaunchTemplate"}
        assert not types & set(AUTOSCALER_OR_PLUGIN)
        assert "kubernetes:apps/v1:DaemonSet" not in types or all(
            "nvidia-device-plugin" not in json.dumps(d.inputs)
            for d in of(cap, "kubernetes:apps/v1:DaemonSet")
        )
    else:
        # The node monitoring agent goes with node repair, on every node group.
        assert addons == {
            "vpc-cni", "coredns", "kube-proxy", "metrics-server", "eks-node-monitoring-agent"
        }  # fmt: skip
        assert "aws:eks/nodeGroup:NodeGroup" in types
        assert "tfserving-eks:cluster:NvidiaDevicePlugin" in types


def test_node_groups_stacks_declare_no_auto_mode(mode_captures) -> None:
    for stack in STACKS:
        cap = mode_captures(stack, "nodeGroups")
        (cluster,) = of(cap, CLUSTER)
        assert not {"computeConfig", "storageConfig"} & set(cluster.inputs)
        assert cluster.inputs["bootstrapSelfManagedAddons"] is False
        assert not of(cap, NODE_POOL) and not of(cap, NODE_CLASS)
        assert [r for r in cap.resources if r.type == "tfserving-eks:cluster:ClusterAutoscaler"]


def test_every_object_passes_the_strict_schemas_and_the_pack(auto) -> None:
    cap, _ = auto
    records = [r.as_dict() for r in cap.resources]
    built, errors = manifests.build_manifests(records)
    assert errors == []
    version = settings_in(cap.stack, "nodeGroups").kubernetes_version
    problem = manifests.schema_version_problem(version)
    results = manifests.validate_manifests(built, version if problem is None else "1.33")
    custom = [r for r in results if r.manifest.kind in ("NodePool", "NodeClass")]
    assert len(custom) == 2 * len(of(cap, NODE_POOL)) and all(r.checked for r in custom)
    assert all(r.manifest.path.startswith("_cluster/") for r in custom)  # cluster-scoped
    assert [(r.manifest.path, r.error) for r in results if r.error] == []
    config = load_config(REPO_ROOT / f"policies/config.{cap.stack}.json")
    assert [r.as_dict() for r in mandatory(run_pack(records, config))] == []


# --- CRD schemas --------------------------------------------------------------------------------


def _node_pool() -> dict[str, Any]:
    from infra.components.auto_mode import node_pool_spec

    pool = _gpu_pool("g5.xlarge")
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": "tfserving-gpu", "labels": {"app.kubernetes.io/part-of": "x"}},
        "spec": node_pool_spec(pool, "tfserving-gpu", POOL_LABEL, 10, 336),
    }


def _node_class() -> dict[str, Any]:
    return {
        "apiVersion": "eks.amazonaws.com/v1",
        "kind": "NodeClass",
        "metadata": {"name": "tfserving-gpu"},
        "spec": {
            "role": "auto-node-role",
            "subnetSelectorTerms": [{"id": "subnet-0a1b2c3d"}],
            "securityGroupSelectorTerms": [{"id": "sg-0a1b2c3d"}],
            "ephemeralStorage": {"size": "100Gi", "iops": 3000, "throughput": 125},
        },
    }


def _errors(body: dict[str, Any]) -> list[str]:
    validator = crd_schemas.validator(body["apiVersion"], body["kind"])
    assert validator is not None
    return [e.message for e in validator.iter_errors(body)]


def test_the_crds_in_the_repo_name_their_source_and_version() -> None:
    readme = (crd_schemas.CRD_DIR / "README.md").read_text()
    for path in sorted(crd_schemas.CRD_DIR.glob("*.yaml")):
        header = path.read_text().split("\napiVersion:", 1)[0]
        assert re.search(r"https?://|github\.com|docs\.aws\.amazon\.com", header), path.name
        assert re.search(r"commit [0-9a-f]{40}", header), path.name
        assert f"`{path.name}`" in readme
    assert set(crd_schemas.crd_versions()) == {
        ("karpenter.sh/v1", "NodePool"),
        ("eks.amazonaws.com/v1", "NodeClass"),
        ("elbv2.k8s.aws/v1alpha1", "TargetGroupBinding"),
        ("elbv2.k8s.aws/v1beta1", "TargetGroupBinding"),
        ("eks.amazonaws.com/v1", "TargetGroupBinding"),
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("keda.sh/v1alpha1", "TriggerAuthentication"),
        ("http.keda.sh/v1beta1", "InterceptorRoute"),
    }
    assert crd_schemas.is_cluster_scoped("karpenter.sh/v1", "NodePool")
    assert not crd_schemas.is_cluster_scoped("apps/v1", "Deployment")


def test_the_programs_objects_are_valid_and_typos_are_not() -> None:
    assert _errors(_node_pool()) == [] and _errors(_node_class()) == []
    typo = _node_pool()
    typo["spec"]["disruption"]["consolidateAftr"] = "5m"
    assert _errors(typo) == [
        "Additional properties are not allowed ('consolidateAftr' was unexpected)"
    ]
    policy = _node_pool()
    policy["spec"]["disruption"]["consolidationPolicy"] = "Always"
    assert any("'Always' is not one of" in e for e in _errors(policy))
    expiry = _node_pool()
    expiry["spec"]["template"]["spec"]["expireAfter"] = "14 days"
    assert any("does not match" in e for e in _errors(expiry))
    no_ref = _node_pool()
    del no_ref["spec"]["template"]["spec"]["nodeClassRef"]
    assert _errors(no_ref) == ["'nodeClassRef' is a required property"]
    iops = _node_class()
    iops["spec"]["ephemeralStorage"]["iops"] = 100
    assert _errors(iops) == ["100 is less than the minimum of 3000"]
    no_role = _node_class()
    del no_role["spec"]["role"]
    assert _errors(no_role) == ["'role' is a required property"]
    extra_meta = _node_class()
    extra_meta["metadata"]["namespace"] = "kube-system"
    assert _errors(extra_meta) == [
        "Additional properties are not allowed ('namespace' was unexpected)"
    ]


def test_synth_reports_a_custom_resource_error_like_a_built_in_one() -> None:
    body = _node_pool()
    body["spec"]["limits"]["cpu"] = "lots"
    manifest = manifests.K8sManifest("urn:x", "_cluster/NodePool-x.yaml", None, "NodePool",
                                     "x", True, body)  # fmt: skip
    (result,) = manifests.validate_manifests([manifest], "1.33")
    assert result.checked and result.error is not None and result.error.startswith("spec.limits")


# --- settings, sizing and idle cost ---------------------------------------------------------


def _problems(config: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(InvalidSettingsError) as caught:
        settings_from_config("dev", config)
    return [(p.key, p.message) for p in caught.value.problems]


def test_auto_mode_settings_are_guarded() -> None:
    base = stack_config("dev")
    wrong = {**base, f"{PROJECT}:computeMode": "karpenter"}
    assert _problems(wrong) == [
        ("computeMode", "'karpenter': use nodeGroups, migrating or autoMode")
    ]
    warm = copy.deepcopy(base)
    warm[f"{PROJECT}:gpuNodePools"]["gpu"].update(minSize=1, desiredSize=1)
    assert _problems(warm) == [
        ("gpuNodePools.gpu.minSize", "minSize 1 / desiredSize 1: autoMode keeps no idle node, so "
         "set both to 0 (the models' minReplicas keep GPU nodes warm)")
    ]  # fmt: skip
    warm[f"{PROJECT}:computeMode"] = "nodeGroups"
    assert settings_from_config("dev", warm).gpu_node_pools[0].min_size == 1
    p3 = copy.deepcopy(base)
    p3[f"{PROJECT}:gpuNodePools"]["gpu"]["instanceTypes"] = ["p3.2xlarge"]
    (problem,) = _problems(p3)
    assert problem[0] == "gpuNodePools.gpu.instanceTypes"
    assert problem[1].startswith("p3.2xlarge: EKS Auto Mode does not launch this family")
    tiny = copy.deepcopy(base)
    tiny[f"{PROJECT}:systemNodePool"]["instanceTypes"] = ["m6g.medium", "t3.small"]
    # (Both also lack the fit check's figures, which infra/settings/pools.py reports too.)
    assert {
        ("systemNodePool.instanceTypes", "m6g.medium: EKS Auto Mode launches only types with "
         "more than 1 vCPU"),
        ("systemNodePool.instanceTypes", "'t3.small': unknown instance size 'small'; a "
         "NodePool's CPU limit needs its vCPUs (use medium, large, xlarge or Nxlarge)"),
    } <= set(_problems(tiny))  # fmt: skip
    for key, value in (("nodeExpireAfterHours", 600), ("nodeConsolidateAfterMinutes", -1)):
        ((found, _),) = _problems({**base, f"{PROJECT}:{key}": value})
        assert found == key


def test_vcpus_and_limits() -> None:
    assert [vcpus(t) for t in ("t3.large", "g5.xlarge", "g5.12xlarge", "p5.48xlarge")] == [
        2, 4, 48, 192,
    ]  # fmt: skip
    assert vcpus("g4dn.metal") == 96
    assert (vcpus("t3.medium"), vcpus("m6g.medium")) == (2, 1)
    with pytest.raises(ValueError, match="unknown instance size 'huge'"):
        vcpus("g5.huge")
    pool = _gpu_pool("g5.xlarge", "g5.2xlarge")
    assert node_pool_limits(pool) == {"cpu": "24", "nvidia.com/gpu": "3"}


@pytest.mark.parametrize("stack", STACKS)
def test_a_gpu_pool_whose_models_idle_at_zero_idles_with_no_node(stack: str) -> None:
    # That is what minReplicas 0 buys: in autoMode always, on node groups with minSize 0.
    for mode in ("nodeGroups", "autoMode"):
        settings = settings_in(stack, mode)
        idle = {n.pool: n.count for n in idle_nodes(settings)}
        for pool in settings.gpu_node_pools:
            zero = all(m.min_replicas == 0 for m in settings.models if m.node_pool == pool.name)
            if zero and (mode == "autoMode" or pool.min_size == 0):
                assert idle[pool.name] == 0, (stack, mode, pool.name)
            elif not zero:
                assert idle[pool.name] > 0, (stack, mode, pool.name)


def test_the_cluster_waits_for_the_auto_mode_node_roles_policies(auto) -> None:
    # Auto Mode starts nodes as soon as the cluster exists; without the policies they cannot join.
    cap, _ = auto
    (cluster,) = of(cap, CLUSTER)
    attachments = {
        a.urn
        for a in of(cap, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.name.startswith("auto-node-")
    }
    assert len(attachments) == 2
    assert attachments <= set(cluster.dependencies)
