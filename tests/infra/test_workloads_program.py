"""The workloads inside the whole program, for the real `dev` and `prod` stacks.

`infra.capture` runs the program under mocks; these tests check that what the workload components
declare fits what the rest of the stack declares: node pools, their labels, taints and
autoscaler tags, the bucket and its key, the cluster's OIDC provider, the outputs.
"""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest
import yaml

from infra.capture import REPO_ROOT, StackCapture, capture_stack, stack_config
from infra.components import cluster_autoscaler
from infra.components.model_serving import TYPE_TOKEN as SERVING
from infra.components.model_serving import idle_at_zero
from infra.components.scaling import interceptor_paths
from infra.settings import settings_from_config
from serving.sync.cli import sync_parser
from tests.infra.conftest_workloads import all_containers

STACKS = ("dev", "prod")
POOL_LABEL = "tfserving-eks/pool"
OVERHEAD_MIB = 1024  # TF Serving's own memory beside the loaded versions (the sizing rule)


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest, mode_captures) -> StackCapture:
    # Each stack shape on node groups (the pools, autoscaler and device plugin checked here);
    # the same shapes under EKS Auto Mode are in test_auto_mode.py.
    return mode_captures(request.param, "nodeGroups")


def of_type(stack: StackCapture, type_: str) -> list[Any]:
    return [r for r in stack.resources if r.type == type_]


def mnist_serving(stack: StackCapture) -> Any:
    """The mnist model's component (dev also serves the diabetes recipe beside it)."""
    (found,) = [r for r in of_type(stack, SERVING) if r.name == "model-mnist"]
    return found


def the(stack: StackCapture, type_: str) -> Any:
    (found,) = of_type(stack, type_)
    return found


def children(stack: StackCapture, component: Any) -> list[Any]:
    return [r for r in stack.resources if r.parent == component.urn]


def child(stack: StackCapture, component: Any, type_: str) -> Any:
    """The component's one child of this type; a model's canary track (its own Deployment,
    ConfigMap and Service, tests/infra/test_monitoring_canary.py) and the tracks' Services
    for the model endpoint are left out: this is the model's own object."""
    (found,) = [
        r
        for r in children(stack, component)
        if r.type == type_ and "-canary-" not in r.name and not r.name.endswith("-stable-service")
    ]
    return found


def descendants(stack: StackCapture, component: Any) -> list[Any]:
    """The component's children, theirs, and so on (a model's scaling is a component of its
    own, infra/components/scaling.py)."""
    found = children(stack, component)
    return found + [d for c in found if not c.custom for d in descendants(stack, c)]


SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
ROUTE = "kubernetes:http.keda.sh/v1beta1:InterceptorRoute"
# Helm releases and the custom resources: not built-in objects (the CRDs check the latter,
# tests/infra/test_scaling.py and synth).
CUSTOM = (
    "kubernetes:helm.sh/",
    "kubernetes:keda.sh/",
    "kubernetes:http.keda.sh/",
    "kubernetes:karpenter.sh/",
    "kubernetes:eks.amazonaws.com/",
    "kubernetes:elbv2.k8s.aws/",
)


def kubernetes_objects(stack: StackCapture) -> list[Any]:
    return [
        r
        for r in stack.resources
        if r.type.startswith("kubernetes:") and r.custom and not r.type.startswith(CUSTOM)
    ]


def pools(stack: StackCapture) -> dict[str, Any]:
    """Node groups by their pool label."""
    return {
        g.inputs["labels"][POOL_LABEL]: g for g in of_type(stack, "aws:eks/nodeGroup:NodeGroup")
    }


def gpu_pools(stack: StackCapture) -> set[str]:
    return {
        name
        for name, group in pools(stack).items()
        if any(t["key"] == "nvidia.com/gpu" for t in group.inputs.get("taints") or [])
    }


def test_every_kubernetes_object_is_valid_for_the_clusters_version(stack):
    version = the(stack, "aws:eks/cluster:Cluster").inputs["version"]
    objects = kubernetes_objects(stack)
    assert objects
    for record in objects:
        kubernetes_validate.validate(record.inputs, version, strict=True)


def test_kubernetes_objects_go_through_the_clusters_provider(stack):
    # Never the default provider, which would target whatever kubeconfig happens to be around.
    for record in kubernetes_objects(stack):
        assert "pulumi:providers:kubernetes::eks::" in (record.provider or ""), record.name


def test_one_model_serving_per_model_with_its_outputs(stack):
    servings = of_type(stack, SERVING)
    assert servings
    rest, grpc = stack.outputs["restEndpoints"], stack.outputs["grpcEndpoints"]
    assert set(rest) == set(grpc) == {s.name.removeprefix("model-") for s in servings}
    for serving in servings:
        service = child(stack, serving, "kubernetes:core/v1:Service").inputs["metadata"]
        host = f"{service['name']}.{service['namespace']}.svc.cluster.local"
        model = serving.name.removeprefix("model-")
        woken = any(r.type == ROUTE for r in descendants(stack, serving))
        proxy = "http://keda-add-ons-http-interceptor-proxy.keda.svc.cluster.local:8080"
        assert rest[model] == (proxy if woken else f"http://{host}:8501")
        assert grpc[model] == f"{host}:8500"


def test_serving_pods_land_on_existing_pools_and_tolerate_their_taints(stack):
    groups = pools(stack)
    settings = settings_from_config(stack.stack, stack_config(stack.stack))
    gpu_tag = settings.serving_gpu_image.rpartition(":")[2]
    for serving in of_type(stack, SERVING):
        model = next(m for m in settings.models if f"model-{m.name}" == serving.name)
        spec = child(stack, serving, "kubernetes:apps/v1:Deployment").inputs["spec"]
        pod = spec["template"]["spec"]
        pool = pod["nodeSelector"][POOL_LABEL]
        assert pool in groups, f"{serving.name} selects pool {pool!r}, which no node group has"
        taints = groups[pool].inputs.get("taints") or []
        tolerated = {t["key"] for t in pod.get("tolerations", [])}
        assert {t["key"] for t in taints} <= tolerated
        gpus = [c["resources"]["limits"].get("nvidia.com/gpu") for c in pod["containers"]]
        if pool in gpu_pools(stack):
            assert gpus == [str(model.gpus)]
            # The stack's copy of the GPU build (tag <upstream tag>-<hash>), by digest.
            assert f":{gpu_tag}-" in pod["containers"][0]["image"].split("@")[0]
        else:
            assert gpus == [None]


def test_gpu_pools_can_scale_from_zero_for_the_serving_pods(stack):
    # An empty pool has no node to look at: the autoscaler learns what it would offer from the
    # node-template tags on its Auto Scaling group.
    prefix = "k8s.io/cluster-autoscaler/node-template/"
    templates: dict[str, dict[str, str]] = {}
    for tag in of_type(stack, "aws:autoscaling/tag:Tag"):
        group, key = tag.inputs["autoscalingGroupName"], tag.inputs["tag"]["key"]
        if key.startswith(prefix):
            templates.setdefault(group, {})[key.removeprefix(prefix)] = tag.inputs["tag"]["value"]
    by_pool = {t.get(f"label/{POOL_LABEL}"): t for t in templates.values()}
    for serving in of_type(stack, SERVING):
        pod = child(stack, serving, "kubernetes:apps/v1:Deployment").inputs["spec"]["template"]
        pool = pod["spec"]["nodeSelector"][POOL_LABEL]
        if pool not in gpu_pools(stack):
            continue
        template = by_pool[pool]
        wanted = int(pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
        assert int(template["resources/nvidia.com/gpu"]) >= wanted
        assert template["taint/nvidia.com/gpu"].endswith(":NoSchedule")
        assert template["label/k8s.amazonaws.com/accelerator"] == "nvidia"
        # The sidecar requests ephemeral storage for the model volume: the template must offer it.
        storage = [
            c["resources"]["requests"].get("ephemeral-storage") for c in all_containers(pod["spec"])
        ]
        asked_mib = sum(int(s.removesuffix("Mi")) for s in storage if s)
        assert asked_mib > 0
        assert int(template["resources/ephemeral-storage"].removesuffix("Gi")) * 1024 >= asked_mib


def test_model_reader_roles_are_scoped_to_the_stacks_bucket_and_cluster(stack):
    bucket = stack.outputs["modelBucketName"]
    oidc_arn = stack.outputs["oidcProviderArn"]
    host = oidc_arn.split(":oidc-provider/", 1)[1]
    for serving in of_type(stack, SERVING):
        model = serving.name.removeprefix("model-")
        namespace = child(stack, serving, "kubernetes:core/v1:Namespace").inputs["metadata"]["name"]
        account = child(stack, serving, "kubernetes:core/v1:ServiceAccount").inputs["metadata"]
        trust = json.loads(child(stack, serving, "aws:iam/role:Role").inputs["assumeRolePolicy"])
        (statement,) = trust["Statement"]
        assert statement["Principal"] == {"Federated": oidc_arn}
        assert statement["Condition"]["StringEquals"] == {
            f"{host}:sub": f"system:serviceaccount:{namespace}:{account['name']}",
            f"{host}:aud": "sts.amazonaws.com",
        }
        policy = json.loads(child(stack, serving, "aws:iam/rolePolicy:RolePolicy").inputs["policy"])
        reads = [s for s in policy["Statement"] if s["Action"] == "s3:GetObject"]
        assert [s["Resource"] for s in reads] == [f"arn:aws:s3:::{bucket}/models/{model}/*"]


def test_sync_sidecar_reads_the_stacks_bucket_with_the_stacks_image(stack):
    for serving in of_type(stack, SERVING):
        model = serving.name.removeprefix("model-")
        pod = child(stack, serving, "kubernetes:apps/v1:Deployment").inputs["spec"]["template"]
        (sidecar,) = pod["spec"]["initContainers"]
        assert sidecar["image"] == stack.outputs["syncImage"]
        parsed = sync_parser().parse_args(sidecar["args"])
        assert f"{parsed.source}/{model}" == stack.outputs["modelUris"][model]
        assert parsed.models == [model]
        # The IRSA webhook leaves TF Serving out: only the sidecar holds bucket credentials.
        (tfs,) = pod["spec"]["containers"]
        assert pod["metadata"]["annotations"]["eks.amazonaws.com/skip-containers"] == tfs["name"]


def test_every_container_runs_hardened(stack):
    for kind in ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:DaemonSet"):
        for workload in of_type(stack, kind):
            for c in all_containers(workload.inputs["spec"]["template"]["spec"]):
                context = c["securityContext"]
                assert context["allowPrivilegeEscalation"] is False, c["name"]
                assert context["readOnlyRootFilesystem"] is True
                assert context["capabilities"] == {"drop": ["ALL"]}
                assert context["seccompProfile"] == {"type": "RuntimeDefault"}
                assert isinstance(context["runAsUser"], int)
                # Only the device plugin (it must write the kubelet's socket dir) and the DCGM
                # exporter (it reads the kubelet's pod-resources socket) run as root.
                if c["name"] not in ("nvidia-device-plugin", "dcgm-exporter"):
                    assert context["runAsNonRoot"] is True and context["runAsUser"] > 0


def test_device_plugin_targets_exactly_the_gpu_pools(stack):
    (plugin,) = [
        r.inputs["spec"]["template"]["spec"]
        for r in of_type(stack, "kubernetes:apps/v1:DaemonSet")
        if r.name == "nvidia-device-plugin-daemonset"
    ]
    affinity = plugin["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    (term,) = affinity["nodeSelectorTerms"]
    expression, not_auto = term["matchExpressions"]
    assert not_auto == {
        "key": "eks.amazonaws.com/compute-type",
        "operator": "NotIn",
        "values": ["auto"],
    }
    assert expression["key"] == POOL_LABEL
    assert set(expression["values"]) == gpu_pools(stack)


def test_autoscaler_matches_the_cluster_and_its_node_group_tags(stack):
    cluster_name = stack.outputs["clusterName"]
    version = the(stack, "aws:eks/cluster:Cluster").inputs["version"]
    component = the(stack, cluster_autoscaler.TYPE_TOKEN)
    deployment = child(stack, component, "kubernetes:apps/v1:Deployment")
    (container,) = deployment.inputs["spec"]["template"]["spec"]["containers"]
    # The stack's copy of the release matching the cluster, by digest.
    upstream_tag = cluster_autoscaler.image_for(version).rpartition(":")[2]
    mirrored, _, digest = container["image"].partition("@sha256:")
    assert f"/mirror/autoscaling/cluster-autoscaler:{upstream_tag}-" in mirrored and digest
    discovery = f"k8s.io/cluster-autoscaler/{cluster_name}"
    assert (
        f"--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,{discovery}"
        in container["command"]
    )
    # EKS copies node group tags to the groups' ASGs; the IAM condition must name the same tag.
    for group in of_type(stack, "aws:eks/nodeGroup:NodeGroup"):
        assert group.inputs["tags"][discovery] == "owned"
        assert group.inputs["tags"]["k8s.io/cluster-autoscaler/enabled"] == "true"
    policy = json.loads(child(stack, component, "aws:iam/rolePolicy:RolePolicy").inputs["policy"])
    (scaling,) = [s for s in policy["Statement"] if "Condition" in s]
    assert scaling["Condition"]["StringEquals"][f"aws:ResourceTag/{discovery}"] == "owned"


AWAITED = ("kubernetes:apps/v1:Deployment", "kubernetes:core/v1:Service")


def test_committed_stacks_do_not_block_a_first_up_on_an_empty_bucket(stack):
    # A new stack's bucket holds no model: an awaited Deployment would wait 30 minutes and fail
    # the first `up`. The committed stacks skip the await; readiness probes still gate traffic,
    # so the pods turn ready after the first `model publish` without another `up`.
    for serving in of_type(stack, SERVING):
        # Every Deployment and Service of the model (a canary track adds its own Deployment).
        records = [r for r in children(stack, serving) if r.type in AWAITED]
        assert {r.type for r in records} == set(AWAITED)
        for record in records:
            annotations = record.inputs["metadata"].get("annotations") or {}
            assert annotations.get("pulumi.com/skipAwait") == "true", record.name
            assert record.custom_timeouts == {}
            if record.type == AWAITED[0]:
                pod = record.inputs["spec"]["template"]
                assert all(c.get("readinessProbe") for c in pod["spec"]["containers"])


def _dev_with(root, name: str, await_rollout: bool, min_replicas: int) -> StackCapture:
    folder = root / name
    folder.mkdir()
    (folder / "Pulumi.yaml").write_text((REPO_ROOT / "Pulumi.yaml").read_text())
    dev = yaml.safe_load((REPO_ROOT / "Pulumi.dev.yaml").read_text())
    dev["config"]["tfserving-eks:awaitServingRollout"] = await_rollout
    mnist = dev["config"]["tfserving-eks:models"]["mnist"]
    mnist["minReplicas"] = min_replicas
    mnist["wakeOnRequest"] = min_replicas == 0  # a warm model is not woken on request
    (folder / "Pulumi.dev.yaml").write_text(yaml.safe_dump(dev))
    return capture_stack("dev", folder)


def test_awaited_rollout_waits_long_enough_for_a_gpu_cold_start(tmp_path):
    # Opting in (awaitServingRollout true, once models are published) waits longer than the
    # provider's 10 minutes, and only the await changes, not the pods.
    awaited = _dev_with(tmp_path, "awaited", True, 1)
    serving = mnist_serving(awaited)
    for kind in AWAITED:
        record = child(awaited, serving, kind)
        assert record.custom_timeouts == {"create": "30m", "update": "30m"}, kind
        assert "pulumi.com/skipAwait" not in (record.inputs["metadata"].get("annotations") or {})
    first_up = _dev_with(tmp_path, "first-up", False, 1)
    same = mnist_serving(first_up)
    assert (
        child(first_up, same, AWAITED[0]).inputs["spec"]
        == child(awaited, serving, AWAITED[0]).inputs["spec"]
    )


def test_a_model_idle_at_zero_starts_with_no_pod_and_is_never_awaited(tmp_path):
    # minReplicas 0: the Deployment is created with 0 replicas, `up` leaves the count to whoever
    # scaled it since, and nothing waits for pods or endpoints that cannot come.
    dev = _dev_with(tmp_path, "idle", True, 0)
    most = stack_config("dev", tmp_path / "idle")["tfserving-eks:models"]["mnist"]["maxReplicas"]
    serving = mnist_serving(dev)
    (deployment,) = [r for r in children(dev, serving) if r.name == f"{serving.name}-deployment"]
    assert deployment.inputs["spec"]["replicas"] == 0
    # Written at creation only (the option is not part of the capture; the helper is).
    assert idle_at_zero(0).ignore_changes == ["spec.replicas"]
    assert idle_at_zero(1).ignore_changes is None
    # Woken by its first REST request: the HTTP add-on's InterceptorRoute, and KEDA's
    # ScaledObject (0 to maxReplicas) with the add-on's trigger; no HPA of ours.
    (scaler,) = [r.inputs["spec"] for r in descendants(dev, serving) if r.type == SCALED_OBJECT]
    assert (scaler["minReplicaCount"], scaler["maxReplicaCount"]) == (0, most)
    assert scaler["cooldownPeriod"] == 900
    assert scaler["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": "mnist"}  # fmt: skip
    assert scaler["triggers"][-1]["metadata"]["interceptorRoute"] == "mnist"
    (route,) = [r.inputs["spec"] for r in descendants(dev, serving) if r.type == ROUTE]
    # The stable track only: the canary's share is the model endpoint's to give, per request.
    assert route["target"] == {"service": "mnist-stable", "port": 8501}
    # Any host (in-cluster clients and the model endpoint's <model>.<domain> alike), every REST
    # call of the model (scaling.interceptor_paths).
    (rule,) = route["rules"]
    assert "hosts" not in rule
    assert [p["value"] for p in rule["paths"]] == interceptor_paths("mnist")
    assert route["timeouts"] == {"readiness": "15m"}
    assert not [r for r in descendants(dev, serving) if r.type.endswith("HorizontalPodAutoscaler")]
    policy = child(dev, serving, "kubernetes:networking.k8s.io/v1:NetworkPolicy")
    assert policy.inputs["spec"]["ingress"][-1] == {
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}}],
        "ports": [{"protocol": "TCP", "port": 8501}],
    }
    for kind in AWAITED:
        record = child(dev, serving, kind)
        assert record.inputs["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
        assert record.custom_timeouts == {}
    warm = _dev_with(tmp_path, "warm", True, 1)  # KEDA owns the count, no replicas declared
    serving = mnist_serving(warm)
    (stable,) = [r for r in children(warm, serving) if r.name == f"{serving.name}-deployment"]
    assert "replicas" not in stable.inputs["spec"]


def test_prometheus_may_scrape_every_model_once_network_policies_are_enforced(stack):
    # The vpc-cni add-on enforces NetworkPolicies: the monitoring namespace must be admitted to
    # the port the pods' prometheus.io/port annotation names.
    for serving in of_type(stack, SERVING):
        pod = child(stack, serving, "kubernetes:apps/v1:Deployment").inputs["spec"]["template"]
        port = int(pod["metadata"]["annotations"]["prometheus.io/port"])
        policy = child(stack, serving, "kubernetes:networking.k8s.io/v1:NetworkPolicy")
        # One rule admits namespaces; the managed scraper's CIDRs get a rule of their own.
        (rule,) = [
            r
            for r in policy.inputs["spec"]["ingress"]
            if "matchExpressions" in r["from"][0].get("namespaceSelector", {})
        ]
        (source,) = rule["from"]
        (expression,) = source["namespaceSelector"]["matchExpressions"]
        assert "monitoring" in expression["values"]
        assert port in {p["port"] for p in rule["ports"]}


def test_serving_memory_fits_the_stacks_versions_during_a_swap(stack):
    # Settings -> captured limit: (versions the policy keeps loaded + 1) x modelMemoryMiB + the
    # runtime overhead (infra.settings.sizing.OVERHEAD_MIB), from the stack file's values.
    models = {
        m.name: m for m in settings_from_config(stack.stack, stack_config(stack.stack)).models
    }
    for serving in of_type(stack, SERVING):
        model = models[serving.name.removeprefix("model-")]
        expected = f"{(model.versions_on_disk + 1) * model.model_memory_mib + OVERHEAD_MIB}Mi"
        pod = child(stack, serving, "kubernetes:apps/v1:Deployment").inputs["spec"]["template"]
        (tfs,) = pod["spec"]["containers"]
        assert tfs["resources"]["limits"]["memory"] == expected
        assert tfs["resources"]["requests"]["memory"] == expected


def test_gpu_pools_have_a_node_for_the_surge_pod_at_maximum_scale(stack):
    # maxSurge 1, maxUnavailable 0: at the maximum a rollout needs one pod (here one 1-GPU node)
    # more than maxReplicas (both tracks' ScaledObjects together), or the new pod stays Pending.
    groups = pools(stack)
    for serving in of_type(stack, SERVING):
        deployment = child(stack, serving, "kubernetes:apps/v1:Deployment").inputs["spec"]
        assert deployment["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
        pool = deployment["template"]["spec"]["nodeSelector"][POOL_LABEL]
        if pool not in gpu_pools(stack):
            continue
        scalers = [r for r in descendants(stack, serving) if r.type == SCALED_OBJECT]
        assert scalers
        # Both tracks together stay within maxReplicas, which the settings' headroom rule counts.
        most = sum(r.inputs["spec"]["maxReplicaCount"] for r in scalers)
        max_nodes = groups[pool].inputs["scalingConfig"]["maxSize"]
        assert max_nodes >= most + 1
