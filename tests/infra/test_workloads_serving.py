"""ModelServing under pulumi mocks: what it declares, checked as plain dicts.

Two declarations are shared by the module: a GPU model (latest:2 with stable/canary labels) and a
CPU model (specific policy on the system pool). Their settings are this module's own; the rest
of the stack's settings come from dev's stack file.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import kubernetes_validate
import pulumi
import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from contracts import tfconfig
from infra import crd_schemas
from infra.capture import stack_config
from infra.components import serving_pod
from infra.components.k8s_common import WorkloadArgsError
from infra.components.model_serving import (
    TYPE_TOKEN,
    ModelServing,
    render_config_files,
    startup_config_checksum,
)
from infra.components.model_serving_args import MetricsWorkspace, ModelServingArgs
from infra.components.scaling import TYPE_TOKEN as SCALING_TYPE_TOKEN
from infra.instances import SUPPORTED_KUBERNETES_VERSIONS
from infra.naming import POOL_LABEL_KEY
from infra.settings import ModelSettings, settings_from_config
from infra.settings.declare import Checks, read
from serving.sync.cli import sync_parser
from tests.infra.conftest_workloads import (
    BUCKET,
    BUCKET_ARN,
    KMS_KEY_ARN,
    OIDC_HOST,
    OIDC_ISSUER,
    OIDC_PROVIDER_ARN,
    SYNC_IMAGE,
    Declared,
    all_containers,
    as_manifest,
    by_type,
    declare,
    one,
)

BATCHING = tfconfig.BatchingParameters(
    max_batch_size=32,
    batch_timeout_micros=2000,
    max_enqueued_batches=100,
    num_batch_threads=4,
    allowed_batch_sizes=(8, 16, 32),
)
RECOMMENDED = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
}
STABLE = {"app.kubernetes.io/name", "app.kubernetes.io/instance"}
# Flags tensorflow_model_server defines (tensorflow_serving/model_servers/main.cc).
TFSERVING_FLAGS = {
    "port",
    "rest_api_port",
    "model_config_file",
    "model_config_file_poll_wait_seconds",
    "file_system_poll_wait_seconds",
    "allow_version_labels_for_unavailable_models",
    "enable_batching",
    "batching_parameters_file",
    "monitoring_config_file",
    "enable_model_warmup",
    "grpc_channel_arguments",
}


SETTINGS = dataclasses.replace(
    settings_from_config("dev", stack_config("dev")),
    s3_poll_seconds=45,
    await_serving_rollout=True,
    serving_image="tensorflow/serving:2.20.0",
    serving_gpu_image="tensorflow/serving:2.20.0-gpu",
)
MODEL_FIELDS = {f.name for f in dataclasses.fields(ModelSettings)}
WORKSPACE_ARN = "arn:aws:aps:eu-west-1:111122223333:workspace/ws-0123"
WORKSPACE = MetricsWorkspace(
    arn=WORKSPACE_ARN,
    endpoint="https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-0123/",
    region="eu-west-1",
    window="120s",
)


# The GPU model as a stack file would give it (read by the settings parser, defaults and all).
GPU_MODEL = {
    "versionPolicy": "latest:2",
    "labels": {"stable": 3, "canary": 4},
    "nodePool": "gpu",
    "gpus": 1,
    "minReplicas": 2,
    "maxReplicas": 4,
    "canaryTrafficPercent": 0,
    "cpuMillicores": 1000,
    "modelMemoryMiB": 512,
    "modelDiskMiB": 40,
    "allowedNamespaces": ["apps", "monitoring"],
    "batching": {
        "maxBatchSize": 32,
        "batchTimeoutMicros": 2000,
        "maxEnqueuedBatches": 100,
        "numBatchThreads": 4,
        "allowedBatchSizes": [8, 16, 32],
    },
}


def gpu_model(**changes: Any) -> ModelSettings:
    checks = Checks()
    model = read(ModelSettings, GPU_MODEL, "models.mnist", checks, name="mnist")
    assert checks.problems == []
    return dataclasses.replace(model, **changes)


def gpu_args(**overrides: Any) -> ModelServingArgs:
    """Args of the GPU model; an override named like a `ModelSettings` field changes the model."""
    model = {k: overrides.pop(k) for k in list(overrides) if k in MODEL_FIELDS}
    values: dict[str, Any] = dict(
        model=gpu_model(**model),
        settings=SETTINGS,
        bucket_name=BUCKET,
        bucket_arn=BUCKET_ARN,
        kms_key_arn=KMS_KEY_ARN,
        oidc_provider_arn=OIDC_PROVIDER_ARN,
        oidc_issuer=OIDC_ISSUER,
        sync_image=SYNC_IMAGE,
        model_prefix="models/",
        tags={},
        pre_stop_seconds=15,
        termination_grace_seconds=60,
        metrics_workspace=WORKSPACE,
    )
    return ModelServingArgs(**{**values, **overrides})


def cpu_args() -> ModelServingArgs:
    return gpu_args(
        name="digits",
        version_policy=tfconfig.VersionPolicy.specific([1, 2]),
        labels={"stable": 1},
        node_pool="system",
        gpus=0,
        allowed_namespaces=(),
    )


def _declare(args: ModelServingArgs) -> tuple[list[Declared], dict[str, str]]:
    outputs: dict[str, str] = {}

    def build() -> pulumi.Output[Any]:
        serving = ModelServing(args.model.name, args)
        names = ("namespace", "service_name", "rest_endpoint", "grpc_endpoint", "role_arn")
        return pulumi.Output.all(*(getattr(serving, n) for n in names)).apply(
            lambda values: outputs.update(zip(names, values, strict=True))
        )

    return declare(build), outputs


@pytest.fixture(scope="module")
def gpu() -> tuple[list[Declared], dict[str, str]]:
    return _declare(gpu_args())


@pytest.fixture(scope="module")
def cpu() -> tuple[list[Declared], dict[str, str]]:
    return _declare(cpu_args())


def pod_spec(records: list[Declared]) -> dict[str, Any]:
    return one(records, "kubernetes:apps/v1:Deployment").inputs["spec"]["template"]["spec"]


def container(records: list[Declared], name: str) -> dict[str, Any]:
    (found,) = [c for c in all_containers(pod_spec(records)) if c["name"] == name]
    return found


# --- the graph -------------------------------------------------------------------------------


def test_declares_one_of_each_object_under_the_component(gpu):
    records, _ = gpu
    component = one(records, TYPE_TOKEN)
    children = [r for r in records if r.parent.endswith(f"{TYPE_TOKEN}::mnist")]
    assert sorted(r.type for r in children) == sorted(
        [
            "aws:iam/role:Role",
            "aws:iam/rolePolicy:RolePolicy",
            "kubernetes:apps/v1:Deployment",
            SCALING_TYPE_TOKEN,
            "kubernetes:core/v1:ConfigMap",
            "kubernetes:core/v1:Namespace",
            "kubernetes:core/v1:Service",
            "kubernetes:core/v1:Service",  # the stable track's, for the model endpoint
            "kubernetes:core/v1:ServiceAccount",
            "kubernetes:networking.k8s.io/v1:NetworkPolicy",
            "kubernetes:policy/v1:PodDisruptionBudget",
        ]
    )
    # The scaling component's own children (ScaledObject, its identity) are its business
    # (tests/infra/test_scaling.py); every resource is named after the model.
    assert all(r.name.startswith("mnist-") for r in records if r is not component)


# The oldest and newest supported versions bracket the schemas in between.
@pytest.mark.parametrize(
    "version", sorted({SUPPORTED_KUBERNETES_VERSIONS[0], SUPPORTED_KUBERNETES_VERSIONS[-1]})
)
def test_every_object_validates_against_the_kubernetes_schema(gpu, cpu, version):
    for records, _ in (gpu, cpu):
        for record in records:
            if record.is_kubernetes:
                manifest = as_manifest(record)
                custom = crd_schemas.validator(manifest["apiVersion"], manifest["kind"])
                if custom is not None:  # KEDA's: against its CRD in infra/crds/
                    assert [e.message for e in custom.iter_errors(manifest)] == []
                else:
                    kubernetes_validate.validate(manifest, version, strict=True)


def test_outputs_are_in_cluster_endpoints(gpu):
    _, outputs = gpu
    assert outputs["namespace"] == "mnist"
    assert outputs["service_name"] == "mnist"
    assert outputs["rest_endpoint"] == "http://mnist.mnist.svc.cluster.local:8501"
    assert outputs["grpc_endpoint"] == "mnist.mnist.svc.cluster.local:8500"
    assert outputs["role_arn"].startswith("arn:aws:iam::")


def test_recommended_labels_everywhere_and_selectors_on_the_stable_subset(gpu):
    records, _ = gpu
    for record in records:
        if record.is_kubernetes:
            labels = record.inputs["metadata"]["labels"]
            # A track's own objects (its Service, pods) also say which track they serve.
            assert set(labels) - {"track"} == RECOMMENDED, record.type
            assert labels.get("track", "stable") in ("stable", "canary"), record.type
            assert labels["app.kubernetes.io/managed-by"] == "pulumi"
            assert labels["app.kubernetes.io/instance"] == "mnist"
    deployment = one(records, "kubernetes:apps/v1:Deployment").inputs["spec"]
    selector = deployment["selector"]["matchLabels"]
    assert set(selector) == STABLE
    assert selector.items() <= deployment["template"]["metadata"]["labels"].items()
    service = services(records)["mnist"]["spec"]
    pdb = one(records, "kubernetes:policy/v1:PodDisruptionBudget").inputs["spec"]
    policy = one(records, "kubernetes:networking.k8s.io/v1:NetworkPolicy").inputs["spec"]
    assert service["selector"] == selector
    assert pdb["selector"]["matchLabels"] == selector
    assert policy["podSelector"]["matchLabels"] == selector


# --- identity ----------------------------------------------------------------------------------


def test_namespace_and_service_account_names_are_pinned(gpu):
    records, _ = gpu
    namespace = one(records, "kubernetes:core/v1:Namespace").inputs["metadata"]
    account = one(records, "kubernetes:core/v1:ServiceAccount").inputs
    role = one(records, "aws:iam/role:Role", "mnist-reader")
    assert namespace["name"] == "mnist"
    assert account["metadata"]["name"] == "tfserving"
    assert account["metadata"]["namespace"] == "mnist"
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == (
        f"arn:aws:iam::123456789012:role/{role.name}-0a1b2c3"
    )
    assert pod_spec(records)["serviceAccountName"] == "tfserving"


def test_reader_role_trusts_exactly_that_service_account(gpu):
    records, _ = gpu
    trust = json.loads(one(records, "aws:iam/role:Role", "mnist-reader").inputs["assumeRolePolicy"])
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Federated": OIDC_PROVIDER_ARN}
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"] == {
        "StringEquals": {
            f"{OIDC_HOST}:sub": "system:serviceaccount:mnist:tfserving",
            f"{OIDC_HOST}:aud": "sts.amazonaws.com",
        }
    }


def test_reader_policy_reads_only_this_models_prefix(gpu):
    records, _ = gpu
    policy = json.loads(
        one(records, "aws:iam/rolePolicy:RolePolicy", "mnist-reader").inputs["policy"]
    )
    grants = {s["Action"]: s for s in policy["Statement"]}
    assert set(grants) == {"s3:GetObject", "s3:ListBucket", "kms:Decrypt"}
    assert all(s["Effect"] == "Allow" for s in policy["Statement"])
    assert grants["s3:GetObject"]["Resource"] == f"{BUCKET_ARN}/models/mnist/*"
    assert grants["s3:ListBucket"]["Resource"] == BUCKET_ARN
    assert grants["s3:ListBucket"]["Condition"] == {"StringLike": {"s3:prefix": "models/mnist/*"}}
    assert grants["kms:Decrypt"]["Resource"] == KMS_KEY_ARN


# --- configuration ----------------------------------------------------------------------------


def test_config_map_holds_tf_servings_three_files(gpu):
    records, _ = gpu
    data = one(records, "kubernetes:core/v1:ConfigMap").inputs["data"]
    assert set(data) == {"models.config", "batching.config", "monitoring.config"}

    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(data["models.config"], config)
    (model,) = config.model_config_list.config
    assert model.name == "mnist"
    assert model.base_path == "/models/mnist"
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert model.model_version_policy.latest.num_versions == 2
    assert dict(model.version_labels) == {"stable": 3, "canary": 4}

    assert tfconfig.parse_batching_parameters(data["batching.config"]) == BATCHING
    assert tfconfig.parse_monitoring_config(data["monitoring.config"]) == (
        True,
        "/monitoring/prometheus/metrics",
    )


def test_specific_policy_is_rendered_for_the_cpu_model(cpu):
    records, _ = cpu
    data = one(records, "kubernetes:core/v1:ConfigMap").inputs["data"]
    (model,) = tfconfig.parse_models_config(data["models.config"])
    assert model.policy == tfconfig.VersionPolicy.specific([1, 2])
    assert dict(model.labels) == {"stable": 1}


def test_only_start_up_files_roll_the_pods():
    base = render_config_files(gpu_model())
    relabelled = render_config_files(gpu_model(labels={"stable": 4, "canary": 5}))
    rebatched = render_config_files(
        gpu_model(batching=tfconfig.BatchingParameters(64, 1000, 100, 4))
    )
    # TF Serving re-reads models.config every poll: a relabel must not restart anything.
    assert relabelled["models.config"] != base["models.config"]
    assert startup_config_checksum(relabelled) == startup_config_checksum(base)
    # Batching is read once at start: a change must roll the Deployment.
    assert startup_config_checksum(rebatched) != startup_config_checksum(base)


# --- the Deployment ---------------------------------------------------------------------------


def test_rolling_update_never_drops_below_the_current_count(gpu):
    records, _ = gpu
    spec = one(records, "kubernetes:apps/v1:Deployment").inputs["spec"]
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    # KEDA's HPA owns the replica count.
    assert "replicas" not in spec


def test_tf_serving_runs_the_pinned_gpu_image_with_its_real_flags(gpu):
    records, _ = gpu
    tfs = container(records, "tfserving")
    assert tfs["image"] == "tensorflow/serving:2.20.0-gpu"
    assert tfs["command"] == ["/usr/bin/tensorflow_model_server"]
    flags = dict(arg.removeprefix("--").partition("=")[::2] for arg in tfs["args"])
    assert set(flags) == TFSERVING_FLAGS
    assert flags["port"] == "8500" and flags["rest_api_port"] == "8501"
    assert flags["model_config_file"] == "/config/models.config"
    assert flags["batching_parameters_file"] == "/config/batching.config"
    assert flags["monitoring_config_file"] == "/config/monitoring.config"
    assert int(flags["model_config_file_poll_wait_seconds"]) > 0
    assert int(flags["file_system_poll_wait_seconds"]) > 0
    assert flags["grpc_channel_arguments"] == "grpc.max_connection_age_ms=60000"
    assert tfs["env"] == [{"name": "CUDA_CACHE_PATH", "value": "/tmp/cuda-cache"}]
    assert {p["name"]: p["containerPort"] for p in tfs["ports"]} == {"grpc": 8500, "http": 8501}


def test_sync_is_a_native_sidecar_with_the_agents_real_cli(gpu):
    records, _ = gpu
    spec = pod_spec(records)
    (sidecar,) = spec["initContainers"]
    assert sidecar["name"] == "model-sync"
    assert sidecar["image"] == SYNC_IMAGE
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["command"] == ["python", "-m", "serving.sync"]
    # The sync agent's own parser must accept exactly what the pod runs.
    parsed = sync_parser().parse_args(sidecar["args"])
    assert parsed.source == f"s3://{BUCKET}/models"
    assert str(parsed.dest) == "/models"
    assert parsed.models == ["mnist"]
    assert str(parsed.policy) == "latest:2"
    assert parsed.interval == 45
    assert str(parsed.model_config_file) == "/config/models.config"
    assert parsed.status_file is not None and str(parsed.status_file).startswith("/tmp/")
    assert parsed.health_port == serving_pod.SYNC_HEALTH_PORT
    assert parsed.tfserving_url == "http://127.0.0.1:8501"
    assert not parsed.once


def test_probes_gate_start_up_and_readiness_on_a_loaded_model(gpu):
    records, _ = gpu
    sidecar, tfs = container(records, "model-sync"), container(records, "tfserving")
    port = serving_pod.SYNC_HEALTH_PORT
    assert {"name": "sync-health", "containerPort": port, "protocol": "TCP"} in sidecar["ports"]
    # TF Serving starts only after a verified version is on disk.
    assert sidecar["startupProbe"]["httpGet"] == {
        "port": port,
        "path": "/startupz",
        "scheme": "HTTP",
    }
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # Ready only while TF Serving reports the model AVAILABLE (checked by the sidecar).
    for probe in ("startupProbe", "readinessProbe"):
        assert tfs[probe]["httpGet"] == {"port": port, "path": "/readyz", "scheme": "HTTP"}
    assert tfs["livenessProbe"] == {
        "tcpSocket": {"port": 8500},
        "periodSeconds": 10,
        "timeoutSeconds": 3,
        "failureThreshold": 6,
    }
    assert tfs["startupProbe"]["periodSeconds"] * tfs["startupProbe"]["failureThreshold"] >= 600


def test_shutdown_waits_for_endpoints_to_drain(gpu):
    records, _ = gpu
    spec, tfs = pod_spec(records), container(records, "tfserving")
    assert tfs["lifecycle"] == {"preStop": {"sleep": {"seconds": 15}}}
    assert spec["terminationGracePeriodSeconds"] == 60


def test_every_container_is_hardened(gpu, cpu):
    for records, _ in (gpu, cpu):
        spec = pod_spec(records)
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0 and pod["runAsGroup"] > 0
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        containers = all_containers(spec)
        assert len(containers) == 2
        for c in containers:
            context = c["securityContext"]
            assert context["runAsNonRoot"] is True, c["name"]
            assert isinstance(context["runAsUser"], int) and context["runAsUser"] > 0
            assert isinstance(context["runAsGroup"], int) and context["runAsGroup"] > 0
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["privileged"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
            # A read-only root still needs a scratch /tmp.
            tmp = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert len(tmp) == 1 and not tmp[0].get("readOnly")


def test_memory_holds_the_resident_versions_plus_one_during_a_swap(gpu):
    records, _ = gpu
    tfs, sidecar = container(records, "tfserving"), container(records, "model-sync")
    # latest:2 keeps two versions loaded and a swap loads a third beside them:
    # 3 x 512 MiB model + 1024 MiB overhead; requests equal limits, so no surprise OOM in a swap.
    assert tfs["resources"]["requests"]["memory"] == "2560Mi"
    assert tfs["resources"]["limits"]["memory"] == "2560Mi"
    assert tfs["resources"]["requests"]["cpu"] == "1000m"
    assert tfs["resources"]["limits"]["cpu"] == "2000m"
    for c in (tfs, sidecar):
        assert {"cpu", "memory"} <= set(c["resources"]["requests"])
        assert {"cpu", "memory"} <= set(c["resources"]["limits"])
    # latest:2 keeps two versions plus one downloading beside them: 3 x 40 MiB.
    assert sidecar["resources"]["requests"]["ephemeral-storage"] == "120Mi"


@pytest.mark.parametrize(
    ("policy", "keep", "memory"),
    [
        (tfconfig.VersionPolicy.latest(), None, "2048Mi"),  # (1 + 1) x 512 + 1024
        (tfconfig.VersionPolicy.specific([1, 2, 5]), None, "3072Mi"),  # (3 + 1) x 512 + 1024
        (tfconfig.VersionPolicy.all(), 4, "3584Mi"),  # (maxVersionsOnDisk 4 + 1) x 512 + 1024
    ],
    ids=["latest", "specific-3", "all-keep-4"],
)
def test_memory_follows_the_versions_the_policy_keeps_loaded(policy, keep, memory):
    args = gpu_args(version_policy=policy, labels={}, max_versions_on_disk=keep)
    records, _ = _declare(args)
    limits = container(records, "tfserving")["resources"]["limits"]
    assert limits["memory"] == memory


def test_model_volume_is_shared_read_only_to_tf_serving(gpu):
    records, _ = gpu
    spec = pod_spec(records)
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["models"] == {"name": "models", "emptyDir": {"sizeLimit": "120Mi"}}
    assert volumes["config"]["configMap"]["name"] == "mnist-tfserving"
    tfs_mounts = {m["name"]: m for m in container(records, "tfserving")["volumeMounts"]}
    sync_mounts = {m["name"]: m for m in container(records, "model-sync")["volumeMounts"]}
    assert tfs_mounts["models"] == {"name": "models", "mountPath": "/models", "readOnly": True}
    assert sync_mounts["models"] == {"name": "models", "mountPath": "/models"}
    # The ConfigMap is mounted as a directory (no subPath), so updates reach models.config.
    for mounts in (tfs_mounts, sync_mounts):
        assert mounts["config"] == {"name": "config", "mountPath": "/config", "readOnly": True}
    # Both containers can use the volume through the pod's fsGroup.
    tfs_group = container(records, "tfserving")["securityContext"]["runAsGroup"]
    assert spec["securityContext"]["fsGroup"] == tfs_group


def test_gpu_model_asks_for_a_gpu_tolerates_the_taint_and_selects_its_pool(gpu):
    records, _ = gpu
    spec = pod_spec(records)
    assert container(records, "tfserving")["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in container(records, "model-sync")["resources"]["limits"]
    assert spec["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert spec["nodeSelector"] == {POOL_LABEL_KEY: "gpu"}


def test_cpu_model_gets_no_gpu_no_toleration_and_the_cpu_image(cpu):
    records, _ = cpu
    spec = pod_spec(records)
    tfs = container(records, "tfserving")
    assert tfs["image"] == "tensorflow/serving:2.20.0"
    assert all("nvidia.com/gpu" not in c["resources"]["limits"] for c in all_containers(spec))
    assert "tolerations" not in spec
    assert spec["nodeSelector"] == {POOL_LABEL_KEY: "system"}
    # specific:1,2 keeps two versions plus one downloading.
    assert {v["name"]: v for v in spec["volumes"]}["models"]["emptyDir"] == {"sizeLimit": "120Mi"}


def test_pods_spread_across_zones(gpu):
    records, _ = gpu
    spread = {c["topologyKey"]: c for c in pod_spec(records)["topologySpreadConstraints"]}
    zone = spread["topology.kubernetes.io/zone"]
    assert zone["maxSkew"] == 1
    assert zone["labelSelector"]["matchLabels"].keys() == STABLE
    assert zone["matchLabelKeys"] == ["pod-template-hash"]


def test_prometheus_scrapes_tf_servings_metrics_endpoint(gpu):
    records, _ = gpu
    template = one(records, "kubernetes:apps/v1:Deployment").inputs["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8501"
    assert annotations["prometheus.io/path"] == "/monitoring/prometheus/metrics"


def test_only_the_sync_sidecar_gets_the_irsa_credentials(gpu):
    # The pod identity webhook skips the listed containers: the value must name TF Serving (and
    # only it), or TF Serving would carry a token that can read the bucket.
    records, _ = gpu
    template = one(records, "kubernetes:apps/v1:Deployment").inputs["spec"]["template"]
    skipped = template["metadata"]["annotations"]["eks.amazonaws.com/skip-containers"]
    names = {c["name"] for c in all_containers(template["spec"])}
    assert skipped.split(",") == ["tfserving"]
    assert names == {"tfserving", "model-sync"}


# --- Service, scaling, PDB, NetworkPolicy ----------------------------------------------------


def services(records) -> dict[str, dict]:
    return {
        r.inputs["metadata"]["name"]: r.inputs
        for r in by_type(records, "kubernetes:core/v1:Service")
    }


def test_service_is_cluster_internal_with_grpc_and_rest(gpu):
    records, _ = gpu
    found = services(records)
    assert set(found) == {"mnist", "mnist-stable"}
    for service in found.values():
        assert service["spec"]["type"] == "ClusterIP"
        ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
        assert ports == {"grpc": (8500, "grpc"), "http": (8501, "http")}
    # The model's Service reaches every serving pod; the track's only the stable track's.
    selector = found["mnist"]["spec"]["selector"]
    assert found["mnist-stable"]["spec"]["selector"] == {**selector, "track": "stable"}


def test_a_scaled_object_scales_the_deployment_within_bounds(gpu):
    records, _ = gpu
    assert by_type(records, "kubernetes:autoscaling/v2:HorizontalPodAutoscaler") == []
    scaled = one(records, "kubernetes:keda.sh/v1alpha1:ScaledObject").inputs
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "mnist",
    }
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 4)
    # The GPU model's default: requests in flight, one full batch per batch thread (32 x 4).
    (trigger,) = spec["triggers"]
    assert (trigger["type"], trigger["name"], trigger["metadata"]["threshold"]) == (
        "prometheus",
        "inFlight",
        "128",
    )


def test_disruption_budget_takes_one_pod_at_a_time(gpu):
    records, _ = gpu
    spec = one(records, "kubernetes:policy/v1:PodDisruptionBudget").inputs["spec"]
    assert spec["maxUnavailable"] == 1
    assert "minAvailable" not in spec


def test_network_policy_admits_only_listed_namespaces_to_the_serving_ports(gpu, cpu):
    records, _ = gpu
    spec = one(records, "kubernetes:networking.k8s.io/v1:NetworkPolicy").inputs["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    (source,) = rule["from"]
    (expression,) = source["namespaceSelector"]["matchExpressions"]
    assert expression == {
        "key": "kubernetes.io/metadata.name",
        "operator": "In",
        "values": ["apps", "mnist", "monitoring"],
    }
    assert rule["ports"] == [{"protocol": "TCP", "port": 8500}, {"protocol": "TCP", "port": 8501}]
    records, _ = cpu
    spec = one(records, "kubernetes:networking.k8s.io/v1:NetworkPolicy").inputs["spec"]
    (expression,) = spec["ingress"][0]["from"][0]["namespaceSelector"]["matchExpressions"]
    assert expression["values"] == ["digits"]


def test_no_object_is_exposed_outside_the_cluster(gpu, cpu):
    for records, _ in (gpu, cpu):
        for service in by_type(records, "kubernetes:core/v1:Service"):
            assert service.inputs["spec"]["type"] == "ClusterIP"


# --- argument errors --------------------------------------------------------------------------
# The settings are validated once, when they are read (tests/infra/test_settings.py); the args
# check only what ties the component's own behaviour to them.


def test_bad_arguments_are_all_reported_together():
    with pytest.raises(WorkloadArgsError) as caught:
        gpu_args(
            cpu_millicores=3000,
            cpu_limit_millicores=2000,
            pre_stop_seconds=30,
            termination_grace_seconds=20,
            min_replicas=0,
            wake_on_request=True,
        )
    message = str(caught.value)
    assert "cpu_limit_millicores (2000) is below the model's cpuMillicores (3000)" in message
    assert "termination_grace_seconds (20) must exceed pre_stop_seconds (30)" in message
    assert "interceptor_endpoint '': a model woken on request needs" in message
    assert len(caught.value.problems) == 3


def test_the_volume_holds_the_versions_an_all_policy_keeps():
    args = gpu_args(version_policy=tfconfig.VersionPolicy.all(), labels={}, max_versions_on_disk=4)
    assert serving_pod.PodSizing(args.model, args.model.versions_on_disk).model_volume_mib == 40 * 5
