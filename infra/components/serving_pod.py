"""The TF Serving pod template: TF Serving plus the model-sync native sidecar.

Creates nothing: `serving_pod_template(...)` returns the Deployment's ``spec.template`` as a plain
dict (Kubernetes camelCase keys). `ModelServing` declares it; tests validate it against the
Kubernetes schema.

The pod, and why it looks like this:

- ``model-sync`` is a native sidecar (an init container with ``restartPolicy: Always``). Kubernetes
  starts it first and holds TF Serving back until its startup probe passes, i.e. until a verified
  model version sits in the shared volume; after that it keeps running next to TF Serving and
  brings new versions in. TF Serving images cannot read ``s3://`` (tensorflow/serving#1963).
- The shared ``emptyDir`` is written only by the sidecar (whole versions, renamed into place) and
  mounted read-only in TF Serving. Its ``sizeLimit`` holds the versions the policy serves plus one
  being downloaded.
- TF Serving polls ``models.config`` (mounted from the ConfigMap as a directory, never via
  ``subPath``, so ConfigMap updates reach the file) and the model directory.
- Readiness: TF Serving's ``GET /v1/models/<name>`` answers 200 whatever the state, and the image
  has no curl or Python for an exec probe. The sidecar (Python, on the same network namespace)
  serves ``/readyz`` on its health port: 200 only while TF Serving reports a version of the model
  ``AVAILABLE``. TF Serving's readiness probe is an ``httpGet`` on that port — kubelet probes the
  pod IP, so a probe may target another container's port.
- Memory is sized for every version the policy keeps loaded plus one more during a swap (TF
  Serving loads the new version before it unloads the old, tensorflow/serving#1215): with
  ``latest:2`` that is three copies. Requests equal limits. The figures come from
  `infra.settings.sizing.PodSizing`, which the settings' fit check uses too.
- TF Serving does not drain on SIGTERM (tensorflow/serving#1853): ``preStop`` sleeps while the
  endpoint is removed from Services, then the grace period lets in-flight requests finish.
- Kubelet probes reach the sidecar's health port although the NetworkPolicy admits only the
  serving ports: traffic from the pod's own node is always allowed (Kubernetes NetworkPolicy
  docs), and nothing else needs that port.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

from contracts.tfconfig import VersionPolicy
from infra.components.k8s_common import (
    Manifest,
    container_security_context,
    pod_security_context,
    resources,
)
from infra.components.model_serving_args import ModelServingArgs
from infra.naming import GPU_TAINT_KEY, POOL_LABEL_KEY
from infra.settings import ModelSettings
from infra.settings.sizing import SYNC_CPU_MILLICORES, SYNC_MEMORY_MIB, PodSizing

GRPC_PORT = 8500
REST_PORT = 8501
# The sync sidecar's HTTP health endpoints (serving/sync/health.py, --health-port).
SYNC_HEALTH_PORT = 8502
# The sidecar's Prometheus metrics (tfserving_sync_*, serving/sync/metrics.py, --metrics-port);
# the managed scraper keeps the container port named "sync-metrics" (monitoring/scrape/eks.yml).
SYNC_METRICS_PORT = 8503
SYNC_STARTUP_PATH = "/startupz"
SYNC_LIVE_PATH = "/healthz"
SERVING_READY_PATH = "/readyz"

MODELS_DIR = "/models"
CONFIG_DIR = "/config"
MODELS_CONFIG_FILE = "models.config"
BATCHING_FILE = "batching.config"
MONITORING_FILE = "monitoring.config"
SYNC_STATUS_FILE = "/tmp/sync/status.json"

TFSERVING_CONTAINER = "tfserving"
SYNC_CONTAINER = "model-sync"


# Non-root ids. The tensorflow/serving image declares no user and needs no writable path but
# /tmp; the sync image's Dockerfile creates this uid. Both share one group for the model volume.
# 10000 and up: no uid of the node's own users (checkov CKV_K8S_40, "high UID").
TFSERVING_UID = 10000
SYNC_UID = 10001
SHARED_GID = 10001
ZONE_KEY = "topology.kubernetes.io/zone"
HOST_KEY = "kubernetes.io/hostname"


@dataclass(frozen=True)
class PodSpecInputs:
    """One track's pod: the args, the objects `ModelServing` made for it, and what differs by
    track (the canary track keeps its own policy, both its versions)."""

    args: ModelServingArgs
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    service_account_name: pulumi.Input[str]
    config_map_name: pulumi.Input[str]
    sync_source: pulumi.Input[str]
    version_policy: VersionPolicy
    spread: Mapping[str, str]

    @property
    def sizing(self) -> PodSizing:
        """The pod's resources (`infra.settings.sizing`, which the settings' fit check uses too)."""
        policy = self.version_policy
        kept = len(policy.versions) if policy.kind == "specific" else None
        return PodSizing(self.args.model, kept or self.args.model.versions_on_disk)


def scheduling(model: ModelSettings) -> tuple[dict[str, str], list[Manifest]]:
    """Node selector on the pool label; the GPU taint's toleration only for pods that get GPUs."""
    selector = {POOL_LABEL_KEY: model.node_pool}
    if not model.gpus:
        return selector, []
    # Exists, not Equal "true": the pod tolerates the taint whatever value a pool gives it.
    return selector, [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]


def topology_spread(selector: Mapping[str, str], zone_spread: str) -> list[Manifest]:
    """Spread across zones (strictness from args) and, softly, across nodes.

    ``matchLabelKeys: [pod-template-hash]`` counts only pods of the same revision, so a rollout's
    surge pod is not held back by the old ReplicaSet's pods.
    """
    common = {
        "labelSelector": {"matchLabels": dict(selector)},
        "matchLabelKeys": ["pod-template-hash"],
    }
    return [
        {"maxSkew": 1, "topologyKey": ZONE_KEY, "whenUnsatisfiable": zone_spread, **common},
        {"maxSkew": 1, "topologyKey": HOST_KEY, "whenUnsatisfiable": "ScheduleAnyway", **common},
    ]


def tfserving_args(inputs: PodSpecInputs) -> list[str]:
    """Flags of ``tensorflow_model_server`` (names checked against model_servers/main.cc)."""
    return [
        f"--port={GRPC_PORT}",
        f"--rest_api_port={REST_PORT}",
        f"--model_config_file={CONFIG_DIR}/{MODELS_CONFIG_FILE}",
        f"--model_config_file_poll_wait_seconds={inputs.args.model_config_poll_seconds}",
        f"--file_system_poll_wait_seconds={inputs.args.file_system_poll_seconds}",
        # Labels may name a version before it has loaded (tensorflow/serving#1608).
        "--allow_version_labels_for_unavailable_models",
        "--enable_batching",
        f"--batching_parameters_file={CONFIG_DIR}/{BATCHING_FILE}",
        f"--monitoring_config_file={CONFIG_DIR}/{MONITORING_FILE}",
        # gRPC clients hold one HTTP/2 connection to one pod behind the ClusterIP; ending
        # connections after this age (with GOAWAY, in-flight calls finish) makes clients
        # reconnect, so new replicas get traffic and terminating ones stop getting it.
        "--grpc_channel_arguments=grpc.max_connection_age_ms="
        f"{inputs.args.grpc_max_connection_age_seconds * 1000}",
        # Replays assets.extra/tf_serving_warmup_requests before a version is marked AVAILABLE.
        "--enable_model_warmup",
    ]


def sync_args(inputs: PodSpecInputs) -> list[pulumi.Input[str]]:
    """Arguments of ``python -m serving.sync`` (the agent's CLI, serving/sync/__main__.py)."""
    return [
        "--source",
        inputs.sync_source,
        "--dest",
        MODELS_DIR,
        "--model",
        inputs.args.model.name,
        "--policy",
        str(inputs.version_policy),
        "--interval",
        str(inputs.args.settings.s3_poll_seconds),
        "--model-config-file",
        f"{CONFIG_DIR}/{MODELS_CONFIG_FILE}",
        "--status-file",
        SYNC_STATUS_FILE,
        "--health-port",
        str(SYNC_HEALTH_PORT),
        "--metrics-port",
        str(SYNC_METRICS_PORT),
        "--tfserving-url",
        f"http://127.0.0.1:{REST_PORT}",
    ]


def _mib(value: int) -> str:
    return f"{value}Mi"


def _millicores(value: int) -> str:
    return f"{value}m"


def _sync_container(inputs: PodSpecInputs) -> Manifest:
    args = inputs.args
    health = {"port": SYNC_HEALTH_PORT, "scheme": "HTTP"}
    container_resources = resources(
        cpu_request=_millicores(SYNC_CPU_MILLICORES),
        memory_request=_mib(SYNC_MEMORY_MIB),
        # Bursts while hashing a download; capped so it can never starve TF Serving.
        cpu_limit=_millicores(4 * SYNC_CPU_MILLICORES),
        memory_limit=_mib(SYNC_MEMORY_MIB),
    )
    # The model volume counts against the pod's ephemeral storage: request it so the scheduler
    # only picks nodes with room for the versions on disk.
    container_resources["requests"]["ephemeral-storage"] = _mib(inputs.sizing.model_volume_mib)
    return {
        "name": SYNC_CONTAINER,
        "image": args.sync_image,
        "imagePullPolicy": "IfNotPresent",
        "restartPolicy": "Always",  # native sidecar (Kubernetes >= 1.29)
        "command": ["python", "-m", "serving.sync"],
        "args": sync_args(inputs),
        "env": [
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ],
        "ports": [
            {"name": "sync-health", "containerPort": SYNC_HEALTH_PORT, "protocol": "TCP"},
            {"name": "sync-metrics", "containerPort": SYNC_METRICS_PORT, "protocol": "TCP"},
        ],
        # Passes once a verified version is in place: only then does TF Serving start.
        "startupProbe": {
            "httpGet": {**health, "path": SYNC_STARTUP_PATH},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": max(1, args.startup_timeout_seconds // 5),
        },
        "livenessProbe": {
            "httpGet": {**health, "path": SYNC_LIVE_PATH},
            "periodSeconds": 20,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "resources": container_resources,
        "securityContext": container_security_context(SYNC_UID, SHARED_GID),
        "volumeMounts": [
            {"name": "models", "mountPath": MODELS_DIR},
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "sync-tmp", "mountPath": "/tmp"},
        ],
    }


def _tfserving_container(inputs: PodSpecInputs) -> Manifest:
    args, gpus = inputs.args, inputs.args.model.gpus
    memory = _mib(inputs.sizing.tfserving_memory_mib)
    container_resources = resources(
        _millicores(args.model.cpu_millicores),
        memory,
        _millicores(args.cpu_limit_millicores),
        memory,
    )
    if gpus:
        # Extended resources are limit-only; the request defaults to the limit.
        container_resources["limits"]["nvidia.com/gpu"] = str(gpus)
    ready = {"httpGet": {"port": SYNC_HEALTH_PORT, "path": SERVING_READY_PATH, "scheme": "HTTP"}}
    env = []
    if gpus:
        # The root filesystem is read-only: CUDA's PTX JIT cache goes to the scratch volume.
        env.append({"name": "CUDA_CACHE_PATH", "value": "/tmp/cuda-cache"})
    return {
        "name": TFSERVING_CONTAINER,
        "image": args.pull_images.get(args.image, args.image),
        "imagePullPolicy": "IfNotPresent",
        "command": ["/usr/bin/tensorflow_model_server"],
        "args": tfserving_args(inputs),
        "env": env,
        "ports": [
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "http", "containerPort": REST_PORT, "protocol": "TCP"},
        ],
        # Loading and warming up a version can take minutes on a cold GPU node.
        "startupProbe": {
            **ready,
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": max(1, args.startup_timeout_seconds // 5),
        },
        "readinessProbe": {**ready, "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 2},
        # Liveness asks only "is the server accepting connections": a model that fails to load
        # is a readiness matter, restarting TF Serving would not fix it.
        "livenessProbe": {
            "tcpSocket": {"port": GRPC_PORT},
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 6,
        },
        "lifecycle": {"preStop": {"sleep": {"seconds": args.pre_stop_seconds}}},
        "resources": container_resources,
        "securityContext": container_security_context(TFSERVING_UID, SHARED_GID),
        "volumeMounts": [
            {"name": "models", "mountPath": MODELS_DIR, "readOnly": True},
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tfserving-tmp", "mountPath": "/tmp"},
        ],
    }


def serving_pod_template(inputs: PodSpecInputs) -> Manifest:
    """The Deployment's pod template for one model."""
    spec: Manifest = {
        "serviceAccountName": inputs.service_account_name,
        # Only the sidecar needs AWS credentials; IRSA mounts its own projected token, the
        # Kubernetes API token is never used by either container.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(TFSERVING_UID, SHARED_GID, fs_group=SHARED_GID),
        "terminationGracePeriodSeconds": inputs.args.termination_grace_seconds,
        "initContainers": [_sync_container(inputs)],
        "containers": [_tfserving_container(inputs)],
        "volumes": [
            {"name": "models", "emptyDir": {"sizeLimit": _mib(inputs.sizing.model_volume_mib)}},
            {"name": "config", "configMap": {"name": inputs.config_map_name}},
            {
                "name": "tfserving-tmp",
                "emptyDir": {"sizeLimit": "512Mi" if inputs.args.model.gpus else "64Mi"},
            },
            {"name": "sync-tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
        "topologySpreadConstraints": topology_spread(inputs.spread, inputs.args.zone_spread),
    }
    spec["nodeSelector"], tolerations = scheduling(inputs.args.model)
    if tolerations:
        spec["tolerations"] = tolerations
    metadata: dict[str, Any] = {"labels": dict(inputs.labels)}
    if inputs.annotations:
        metadata["annotations"] = dict(inputs.annotations)
    return {"metadata": metadata, "spec": spec}
