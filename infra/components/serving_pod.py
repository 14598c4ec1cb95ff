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
  ``latest:2`` that is three copies. Requests equal limits.
- TF Serving does not drain on SIGTERM (tensorflow/serving#1853): ``preStop`` sleeps while the
  endpoint is removed from Services, then the grace period lets in-flight requests finish.
- Kubelet probes reach the sidecar's health port although the NetworkPolicy admits only the
  serving ports: traffic from the pod's own node is always allowed (Kubernetes NetworkPolicy
  docs), and nothing else needs that port.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from infra.components.k8s_common import (
    Manifest,
    container_security_context,
    pod_security_context,
    resources,
)

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


@dataclass(frozen=True)
class PodSizing:
    """Resources of one serving pod, derived from the model's size (all MiB / millicores)."""

    model_memory_mib: int
    memory_overhead_mib: int
    cpu_request_millicores: int
    cpu_limit_millicores: int
    model_disk_mib: int
    versions_on_disk: int
    sync_memory_mib: int
    sync_cpu_millicores: int

    @property
    def versions_resident(self) -> int:
        """Versions TF Serving keeps loaded: the ones the policy serves, which are exactly the
        ones the sidecar keeps on disk (N for ``latest:N``, the listed ones for ``specific``,
        ``maxVersionsOnDisk`` for ``all``)."""
        return self.versions_on_disk

    @property
    def tfserving_memory_mib(self) -> int:
        """The resident versions, one more loading beside them during a swap, runtime overhead."""
        return (self.versions_resident + 1) * self.model_memory_mib + self.memory_overhead_mib

    @property
    def model_volume_mib(self) -> int:
        """The versions the policy keeps plus one being downloaded beside them."""
        return self.model_disk_mib * (self.versions_on_disk + 1)


@dataclass(frozen=True)
class PodSpecInputs:
    """Everything the pod template needs; built by `ModelServing` from its args."""

    model_name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    service_account_name: pulumi.Input[str]
    config_map_name: pulumi.Input[str]
    tfserving_image: pulumi.Input[str]
    sync_image: pulumi.Input[str]
    sync_source: pulumi.Input[str]
    version_policy: str
    sync_interval_seconds: int
    model_config_poll_seconds: int
    file_system_poll_seconds: int
    grpc_max_connection_age_seconds: int
    sizing: PodSizing
    tfserving_uid: int
    sync_uid: int
    shared_gid: int
    gpus_per_pod: int
    node_selector: Mapping[str, str]
    tolerations: Sequence[Manifest]
    topology_spread: Sequence[Manifest]
    pre_stop_seconds: int
    termination_grace_seconds: int
    startup_timeout_seconds: int


def tfserving_args(inputs: PodSpecInputs) -> list[str]:
    """Flags of ``tensorflow_model_server`` (names checked against model_servers/main.cc)."""
    return [
        f"--port={GRPC_PORT}",
        f"--rest_api_port={REST_PORT}",
        f"--model_config_file={CONFIG_DIR}/{MODELS_CONFIG_FILE}",
        f"--model_config_file_poll_wait_seconds={inputs.model_config_poll_seconds}",
        f"--file_system_poll_wait_seconds={inputs.file_system_poll_seconds}",
        # Labels may name a version before it has loaded (tensorflow/serving#1608).
        "--allow_version_labels_for_unavailable_models",
        "--enable_batching",
        f"--batching_parameters_file={CONFIG_DIR}/{BATCHING_FILE}",
        f"--monitoring_config_file={CONFIG_DIR}/{MONITORING_FILE}",
        # gRPC clients hold one HTTP/2 connection to one pod behind the ClusterIP; ending
        # connections after this age (with GOAWAY, in-flight calls finish) makes clients
        # reconnect, so new replicas get traffic and terminating ones stop getting it.
        "--grpc_channel_arguments=grpc.max_connection_age_ms="
        f"{inputs.grpc_max_connection_age_seconds * 1000}",
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
        inputs.model_name,
        "--policy",
        inputs.version_policy,
        "--interval",
        str(inputs.sync_interval_seconds),
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
    sizing = inputs.sizing
    health = {"port": SYNC_HEALTH_PORT, "scheme": "HTTP"}
    container_resources = resources(
        cpu_request=_millicores(sizing.sync_cpu_millicores),
        memory_request=_mib(sizing.sync_memory_mib),
        # Bursts while hashing a download; capped so it can never starve TF Serving.
        cpu_limit=_millicores(4 * sizing.sync_cpu_millicores),
        memory_limit=_mib(sizing.sync_memory_mib),
    )
    # The model volume counts against the pod's ephemeral storage: request it so the scheduler
    # only picks nodes with room for the versions on disk.
    container_resources["requests"]["ephemeral-storage"] = _mib(sizing.model_volume_mib)
    return {
        "name": SYNC_CONTAINER,
        "image": inputs.sync_image,
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
            "failureThreshold": max(1, inputs.startup_timeout_seconds // 5),
        },
        "livenessProbe": {
            "httpGet": {**health, "path": SYNC_LIVE_PATH},
            "periodSeconds": 20,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "resources": container_resources,
        "securityContext": container_security_context(inputs.sync_uid, inputs.shared_gid),
        "volumeMounts": [
            {"name": "models", "mountPath": MODELS_DIR},
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "sync-tmp", "mountPath": "/tmp"},
        ],
    }


def _tfserving_container(inputs: PodSpecInputs) -> Manifest:
    sizing = inputs.sizing
    memory = _mib(sizing.tfserving_memory_mib)
    container_resources = resources(
        _millicores(sizing.cpu_request_millicores),
        memory,
        _millicores(sizing.cpu_limit_millicores),
        memory,
    )
    if inputs.gpus_per_pod:
        # Extended resources are limit-only; the request defaults to the limit.
        container_resources["limits"]["nvidia.com/gpu"] = str(inputs.gpus_per_pod)
    ready = {"httpGet": {"port": SYNC_HEALTH_PORT, "path": SERVING_READY_PATH, "scheme": "HTTP"}}
    env = []
    if inputs.gpus_per_pod:
        # The root filesystem is read-only: CUDA's PTX JIT cache goes to the scratch volume.
        env.append({"name": "CUDA_CACHE_PATH", "value": "/tmp/cuda-cache"})
    return {
        "name": TFSERVING_CONTAINER,
        "image": inputs.tfserving_image,
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
            "failureThreshold": max(1, inputs.startup_timeout_seconds // 5),
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
        "lifecycle": {"preStop": {"sleep": {"seconds": inputs.pre_stop_seconds}}},
        "resources": container_resources,
        "securityContext": container_security_context(inputs.tfserving_uid, inputs.shared_gid),
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
        "securityContext": pod_security_context(
            inputs.tfserving_uid, inputs.shared_gid, fs_group=inputs.shared_gid
        ),
        "terminationGracePeriodSeconds": inputs.termination_grace_seconds,
        "initContainers": [_sync_container(inputs)],
        "containers": [_tfserving_container(inputs)],
        "volumes": [
            {"name": "models", "emptyDir": {"sizeLimit": _mib(inputs.sizing.model_volume_mib)}},
            {"name": "config", "configMap": {"name": inputs.config_map_name}},
            {
                "name": "tfserving-tmp",
                "emptyDir": {"sizeLimit": "512Mi" if inputs.gpus_per_pod else "64Mi"},
            },
            {"name": "sync-tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
        "topologySpreadConstraints": [dict(c) for c in inputs.topology_spread],
    }
    if inputs.node_selector:
        spec["nodeSelector"] = dict(inputs.node_selector)
    if inputs.tolerations:
        spec["tolerations"] = [dict(t) for t in inputs.tolerations]
    metadata: dict[str, Any] = {"labels": dict(inputs.labels)}
    if inputs.annotations:
        metadata["annotations"] = dict(inputs.annotations)
    return {"metadata": metadata, "spec": spec}
