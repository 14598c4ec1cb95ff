"""Every stack config key the program reads, with its type, default and description.

This module is the one source: :mod:`infra.settings_checks` takes defaults, allowed ranges and
the known fields of nested objects from it, and ``python -m infra.config_docs`` generates
``Pulumi.yaml``'s ``config:`` block and ``docs/configuration.md`` from it. Keys live in the
project namespace ``tfserving-eks``; in ``Pulumi.<stack>.yaml`` they are written
``tfserving-eks:<key>``.

Nested objects (a model entry, a GPU pool entry, the system pool, a model's batching) are
declared as :class:`NestedObject` with one :class:`ConfigKey` per field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from contracts.tfconfig import WARMUP_MAX_BATCH
from infra import instances

# NVIDIA's release as its own DaemonSet example runs it (NVIDIA/dcgm-exporter,
# deployment/examples/dcgm-exporter.yaml: exporter 4.8.4 on DCGM 4.6.1). The stack's mirror pins
# its digest at deploy time (infra/components/image_mirror.py).
DCGM_EXPORTER_IMAGE = "nvcr.io/nvidia/k8s/dcgm-exporter:4.6.1-4.8.4-distroless"

PROJECT = "tfserving-eks"

ConfigType = Literal["string", "integer", "boolean", "array", "object"]

# Keys of other namespaces a stack file may set (provider configuration, read by the providers).
FOREIGN_KEYS = frozenset({"aws:region", "aws:profile", "aws:allowedAccountIds", "aws:defaultTags"})


class _Required:
    """The default of a nested field that has none: the stack must give it."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class NestedObject:
    """The fields of one kind of nested object. ``path`` is how its keys are written in problems
    and docs, e.g. ``models.<name>``."""

    path: str
    description: str
    fields: tuple[ConfigKey, ...]

    @property
    def names(self) -> set[str]:
        return {f.name for f in self.fields}

    def __getitem__(self, name: str) -> ConfigKey:
        return next(f for f in self.fields if f.name == name)


@dataclass(frozen=True)
class ConfigKey:
    """One declared key or nested field.

    ``items`` is the element type of an ``array``; ``minimum``/``maximum`` bound an ``integer``
    and ``choices`` lists the allowed values, where the checks enforce exactly that; ``nested``
    declares the fields of an ``object`` value (or of each entry, for maps by name).
    """

    name: str
    type: ConfigType
    default: Any
    description: str
    items: ConfigType | None = None
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[Any, ...] = ()
    nested: NestedObject | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


# -- nested objects (declared before the keys that hold them)

# fmt: off
SYSTEM_POOL_OBJECT = NestedObject(
    "systemNodePool",
    "The CPU node group (on-demand, AL2023 standard AMI). Every field is required.",
    (
        ConfigKey("instanceTypes", "array", REQUIRED,
                  "EC2 instance types; no GPU types (those go in gpuNodePools).", items="string"),
        ConfigKey("minSize", "integer", REQUIRED,
                  "Fewest nodes; 1+ whenever maxSize is above 0 (CoreDNS and the autoscaler run "
                  "here).", minimum=0),
        ConfigKey("maxSize", "integer", REQUIRED, "Most nodes the autoscaler may add.", minimum=1),
        ConfigKey("desiredSize", "integer", REQUIRED,
                  "Nodes at creation, between minSize and maxSize.", minimum=0),
        ConfigKey("diskSizeGiB", "integer", REQUIRED, "Root volume size per node.",
                  minimum=20, maximum=16384),
    ),
)

GPU_POOL_OBJECT = NestedObject(
    "gpuNodePools.<pool>",
    "One GPU pool, tainted and labelled with its pool name: a node group (nodeGroups) or a "
    "NodePool (autoMode). The pool name is a lowercase DNS label (max 40 characters) other than "
    "\"system\".",
    (
        ConfigKey("instanceTypes", "array", REQUIRED,
                  "NVIDIA x86_64 instance types, all with the same GPU count per node.",
                  items="string"),
        ConfigKey("capacityType", "string", "ON_DEMAND",
                  "On-demand or spot capacity; in autoMode SPOT means spot first with on-demand "
                  "as the fallback.", choices=("ON_DEMAND", "SPOT")),
        ConfigKey("minSize", "integer", REQUIRED,
                  "Fewest nodes; 0 lets the pool scale to zero. Node groups only: autoMode keeps "
                  "no idle node, so it must be 0 there.", minimum=0),
        ConfigKey("maxSize", "integer", REQUIRED,
                  "Most nodes; room for every model's maxReplicas plus one rollout surge pod. "
                  "In autoMode it sets the NodePool's GPU and CPU limits.",
                  minimum=1),
        ConfigKey("desiredSize", "integer", REQUIRED,
                  "Nodes at creation, between minSize and maxSize.", minimum=0),
        ConfigKey("diskSizeGiB", "integer", REQUIRED,
                  "Root volume size per node (the GPU build of TF Serving is several GiB).",
                  minimum=50, maximum=16384),
        ConfigKey("amiType", "string", instances.GPU_AMI_TYPES[0],
                  "EKS AMI type with NVIDIA drivers (node groups; Auto Mode brings its own).",
                  choices=instances.GPU_AMI_TYPES),
    ),
)

BATCHING_OBJECT = NestedObject(
    "models.<name>.batching",
    "TF Serving's batching parameters (batching_parameters_file); TF Serving's own rules apply "
    "too (e.g. allowedBatchSizes ascending, the last equal to maxBatchSize).",
    (
        ConfigKey("maxBatchSize", "integer", REQUIRED,
                  "Largest batch; at least the largest warmup batch the model stage exports.",
                  minimum=WARMUP_MAX_BATCH),
        ConfigKey("batchTimeoutMicros", "integer", REQUIRED,
                  "How long a partial batch waits for more requests."),
        ConfigKey("maxEnqueuedBatches", "integer", REQUIRED,
                  "Batches that may queue before requests are refused."),
        ConfigKey("numBatchThreads", "integer", REQUIRED, "Threads that run batches."),
        ConfigKey("allowedBatchSizes", "array", None,
                  "Sizes batches are padded to; unset pads to none.", items="integer"),
    ),
)

MODEL_OBJECT = NestedObject(
    "models.<name>",
    "One model to serve, in its own namespace named after the model.",
    (
        ConfigKey("versionPolicy", "string", "latest",
                  "Versions to serve: latest[:N], all, or specific:V1,V2,..."),
        ConfigKey("labels", "object", {},
                  "Version labels, label -> version; each version must be one the policy "
                  "serves."),
        ConfigKey("nodePool", "string", "system",
                  "A gpuNodePools name, or \"system\" to serve on CPU."),
        ConfigKey("gpus", "integer", 0,
                  "GPUs per pod: 1 up to the pool's GPUs per node on a GPU pool, 0 on the "
                  "system pool.", minimum=0),
        ConfigKey("minReplicas", "integer", REQUIRED,
                  "Fewest serving pods (2+ for zero-downtime version swaps); 0 scales the model "
                  "to zero when idle: no pod, and no GPU node, until someone scales it up or, with "
                  "wakeOnRequest, a REST request arrives (docs/gpu-capacity.md).", minimum=0),
        ConfigKey("wakeOnRequest", "boolean", False,
                  "Only with minReplicas 0: the first REST request wakes the model (KEDA HTTP "
                  "add-on, installed once per stack; clients call the interceptor proxy, which "
                  "holds the request while a pod starts). gRPC still needs a warm pod "
                  "(docs/gpu-capacity.md)."),
        ConfigKey("maxReplicas", "integer", REQUIRED, "Most serving pods (HPA).", minimum=1),
        ConfigKey("targetCpuUtilization", "integer", 70, "HPA target CPU utilization, percent.",
                  minimum=1, maximum=100),
        ConfigKey("canaryWeight", "integer", 10,
                  "Percent of the serving pods (at minReplicas) in the canary track while the "
                  "canary label names another version than stable; 0: no canary track "
                  "(docs/observability.md).", minimum=0, maximum=50),
        ConfigKey("cpuMillicores", "integer", REQUIRED, "CPU request of the TF Serving container.",
                  minimum=100),
        ConfigKey("modelMemoryMiB", "integer", REQUIRED,
                  "Memory one loaded version needs; sizes the container's memory.", minimum=1),
        ConfigKey("modelDiskMiB", "integer", REQUIRED,
                  "Disk one version needs; sizes the model volume.", minimum=1),
        ConfigKey("maxVersionsOnDisk", "integer", None,
                  "Versions kept on disk; required with versionPolicy all and only allowed "
                  "there.", minimum=1),
        ConfigKey("allowedNamespaces", "array", [],
                  "Namespaces whose pods may call the model (NetworkPolicy).", items="string"),
        ConfigKey("batching", "object", REQUIRED, "TF Serving batching parameters.",
                  nested=BATCHING_OBJECT),
    ),
)

# fmt: on

_DEFAULT_LOG_TYPES = ["api", "audit", "authenticator", "controllerManager", "scheduler"]

KEYS: tuple[ConfigKey, ...] = (
    # -- network
    ConfigKey("vpcCidr", "string", "10.0.0.0/16",
              "CIDR of the VPC the program creates (ignored with existingVpcId)."),
    ConfigKey("availabilityZoneCount", "integer", 2,
              "How many AZs the VPC spans; one public and one private subnet in each.",
              minimum=2, maximum=3),
    ConfigKey("natGatewayPerAz", "boolean", False,
              "One NAT gateway per AZ (zonal resilience) instead of a single shared one."),
    ConfigKey("existingVpcId", "string", "",
              "Use this VPC instead of creating one; empty creates a VPC."),
    ConfigKey("existingPrivateSubnetIds", "array", [],
              "Private subnets (2+ AZs) for nodes and the control plane when existingVpcId is "
              "set.", items="string"),
    ConfigKey("existingScraperSubnets", "object", {},
              "With existingVpcId and managedPrometheus: the managed Prometheus scraper's own "
              "subnets (2+ AZs, nothing else in them), as {subnet id: its CIDR}; the serving "
              "NetworkPolicy admits these CIDRs on the metrics ports (docs/observability.md)."),
    # -- cluster
    ConfigKey("clusterName", "string", "",
              "EKS cluster name (a contract: IAM and autoscaler tags use it); empty means "
              "tfserving-<stack>."),
    ConfigKey("kubernetesVersion", "string", instances.DEFAULT_KUBERNETES_VERSION,
              "EKS Kubernetes version (major.minor); infra/instances.py holds its support "
              "dates (settings warn 90 days before end of standard support, refuse past end of "
              "extended support).",
              choices=instances.SUPPORTED_KUBERNETES_VERSIONS),
    ConfigKey("upgradeSupportType", "string", "STANDARD",
              "EKS upgrade policy at end of standard support: STANDARD auto-upgrades the "
              "cluster, EXTENDED keeps the version and bills extended support. Set it per "
              "stack.", choices=instances.UPGRADE_SUPPORT_TYPES),
    ConfigKey("endpointPublicAccess", "boolean", False,
              "Expose the Kubernetes API endpoint publicly (private access is always on)."),
    ConfigKey("publicAccessCidrs", "array", [],
              "CIDRs allowed to reach the public API endpoint; required when it is public.",
              items="string"),
    ConfigKey("apiAccessCidrs", "array", [],
              "Networks (CI runner subnets, VPN ranges) allowed to reach the private API endpoint "
              "on 443: one ingress rule each on the cluster security group.", items="string"),
    ConfigKey("clusterLogTypes", "array", _DEFAULT_LOG_TYPES,
              "Control-plane log types sent to CloudWatch.", items="string",
              choices=tuple(_DEFAULT_LOG_TYPES)),
    ConfigKey("clusterLogRetentionDays", "integer", 90,
              "Retention of the control-plane log group (a CloudWatch-supported value).",
              choices=instances.LOG_RETENTION_DAYS),
    ConfigKey("deployerPrincipalArns", "array", [],
              "IAM roles that run pulumi up (the CI role of each environment): each gets an EKS "
              "access entry with cluster-admin. Required; the cluster creator gets no implicit "
              "access.", items="string"),
    ConfigKey("adminPrincipalArns", "array", [],
              "IAM role/user ARNs of people given cluster-admin through EKS access entries.",
              items="string"),
    ConfigKey("addonVersions", "object",
              {"vpc-cni": "v1.22.4-eksbuild.3", "coredns": "v1.14.3-eksbuild.14",
               "kube-proxy": "v1.36.0-eksbuild.17", "metrics-server": "v0.8.1-eksbuild.6"},
              "Pinned EKS add-on versions: vpc-cni, coredns, kube-proxy (kube-proxy must match "
              "kubernetesVersion), metrics-server (CPU metrics for the HPAs)."),
    ConfigKey("kmsDeletionWindowDays", "integer", 30,
              "Waiting period before a deleted KMS key is destroyed.", minimum=7, maximum=30),
    # -- nodes
    ConfigKey("computeMode", "string", "nodeGroups",
              "Where nodes come from: nodeGroups (managed node groups, cluster-autoscaler, NVIDIA "
              "device plugin), autoMode (EKS Auto Mode: a NodeClass and a Karpenter NodePool per "
              "pool, nodes only while pods need them), or migrating (both, no cluster-autoscaler: "
              "the step between them, docs/gpu-capacity.md).",
              choices=("nodeGroups", "migrating", "autoMode")),
    ConfigKey("nodeConsolidateAfterMinutes", "integer", 10,
              "autoMode: minutes a node stays empty or underused before Auto Mode removes or "
              "replaces it.", minimum=0, maximum=1440),
    ConfigKey("nodeExpireAfterHours", "integer", 336,
              "autoMode: node lifetime before Auto Mode replaces it (Auto Mode's ceiling is 21 "
              "days).", minimum=24, maximum=504),
    ConfigKey("systemNodePool", "object",
              {"instanceTypes": ["m6i.large"], "minSize": 2, "maxSize": 3, "desiredSize": 2,
               "diskSizeGiB": 50},
              "CPU node group for cluster add-ons and CPU-only models.",
              nested=SYSTEM_POOL_OBJECT),
    ConfigKey("gpuNodePools", "object",
              {"gpu": {"instanceTypes": ["g5.xlarge"], "capacityType": "ON_DEMAND", "minSize": 0,
                       "maxSize": 5, "desiredSize": 0, "diskSizeGiB": 100,
                       "amiType": "AL2023_x86_64_NVIDIA"}},
              "GPU node groups by pool name.", nested=GPU_POOL_OBJECT),
    # -- model bucket
    ConfigKey("protectData", "boolean", True,
              "Pulumi protect on the buckets and KMS keys, and EKS deletion protection."),
    ConfigKey("bucketForceDestroy", "boolean", False,
              "Let pulumi destroy delete non-empty buckets (every model version is lost)."),
    ConfigKey("noncurrentVersionRetentionDays", "integer", 30,
              "Days a replaced or deleted model object version is kept.", minimum=1),
    ConfigKey("abortIncompleteUploadDays", "integer", 7,
              "Days after which incomplete multipart uploads are aborted.", minimum=1),
    ConfigKey("accessLogRetentionDays", "integer", 365,
              "Days the bucket's access logs are kept.", minimum=1),
    # -- images and models
    ConfigKey("servingImage", "string", "tensorflow/serving:2.20.0",
              "TF Serving image for CPU models (pinned tag or digest); copied into the stack's "
              "ECR at deploy time, pods pull the copy by digest."),
    ConfigKey("servingGpuImage", "string", "tensorflow/serving:2.20.0-gpu",
              "TF Serving image for models on a GPU pool (pinned tag or digest); copied into the "
              "stack's ECR at deploy time, pods pull the copy by digest."),
    ConfigKey("dockerHubCredentialArn", "string", "",
              "Secrets Manager secret (JSON username and accessToken of a Docker Hub account) "
              "the deploy runner logs in with when it copies Docker Hub images into the stack's "
              "ECR (once per change of the reference); empty pulls them anonymously. Nodes "
              "never pull from Docker Hub."),
    ConfigKey("syncImage", "string", "",
              "Model-sync image reference, pinned by @sha256 digest; empty builds "
              "images/sync/Dockerfile and pushes it to the stack's ECR repository (referenced "
              "by digest)."),
    ConfigKey("models", "object",
              {"mnist": {"versionPolicy": "latest:2", "labels": {}, "nodePool": "gpu",
                         "gpus": 1, "minReplicas": 2, "maxReplicas": 4,
                         "targetCpuUtilization": 70, "cpuMillicores": 1000,
                         "modelMemoryMiB": 512, "modelDiskMiB": 256, "allowedNamespaces": [],
                         "batching": {"maxBatchSize": 32, "batchTimeoutMicros": 2000,
                                      "maxEnqueuedBatches": 100, "numBatchThreads": 4}}},
              "Models to serve, by name.", nested=MODEL_OBJECT),
    ConfigKey("awaitServingRollout", "boolean", False,
              "Let pulumi up wait (30m) for serving pods to be ready. Off by default: a new "
              "stack's bucket is empty, and the pods turn ready by themselves after the first "
              "model publish (readiness probes, no second up)."),
    # -- monitoring (docs/observability.md)
    ConfigKey("managedPrometheus", "boolean", True,
              "Amazon Managed Service for Prometheus workspace, managed scraper, alert rules "
              "from monitoring/rules/ and an SNS alert topic."),
    ConfigKey("dcgmExporterImage", "string", DCGM_EXPORTER_IMAGE,
              "DCGM exporter image (pinned tag or digest) run on the GPU pools; copied into the "
              "stack's ECR at deploy time, pods pull the copy by digest. The GPU alerts need it; "
              "empty leaves it out with a warning."),
    ConfigKey("alertEmails", "array", [],
              "E-mail addresses subscribed to the alert topic (each must confirm).",
              items="string"),
    ConfigKey("s3PollSeconds", "integer", 60,
              "How often the model-sync sidecar lists S3 for new versions (S3 requests cost).",
              minimum=10, maximum=3600),
    ConfigKey("tags", "object", {},
              "Extra tags on every AWS resource (merged over the project's base tags)."),
)  # fmt: skip

KEYS_BY_NAME: dict[str, ConfigKey] = {k.name: k for k in KEYS}


def nested_objects() -> list[NestedObject]:
    """Every nested object declaration, outer before inner (the docs' table order)."""
    found: list[NestedObject] = []
    pending = [k.nested for k in KEYS if k.nested]
    while pending:
        current = pending.pop(0)
        found.append(current)
        pending.extend(f.nested for f in current.fields if f.nested)
    return found


def full_name(key: str) -> str:
    """The namespaced key as written in ``Pulumi.<stack>.yaml``."""
    return f"{PROJECT}:{key}"
