"""Every stack config key the program reads, with its type, default and description.

This table is the single source: ``Pulumi.yaml``'s ``config:`` block and the README's config table
are kept equal to it by tests (tests/infra/test_config_docs.py). Keys live in the project
namespace ``tfserving-eks``; in ``Pulumi.<stack>.yaml`` they are written ``tfserving-eks:<key>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

PROJECT = "tfserving-eks"

ConfigType = Literal["string", "integer", "boolean", "array", "object"]

# Keys of other namespaces a stack file may set (provider configuration, read by the providers).
FOREIGN_KEYS = frozenset({"aws:region", "aws:profile", "aws:allowedAccountIds", "aws:defaultTags"})


@dataclass(frozen=True)
class ConfigKey:
    """One declared key. ``items`` is the element type of an ``array``."""

    name: str
    type: ConfigType
    default: Any
    description: str
    items: ConfigType | None = None


_DEFAULT_LOG_TYPES = ["api", "audit", "authenticator", "controllerManager", "scheduler"]

KEYS: tuple[ConfigKey, ...] = (
    # -- network
    ConfigKey("vpcCidr", "string", "10.0.0.0/16",
              "CIDR of the VPC the program creates (ignored with existingVpcId)."),
    ConfigKey("availabilityZoneCount", "integer", 2,
              "How many AZs the VPC spans (2-3); one public and one private subnet in each."),
    ConfigKey("natGatewayPerAz", "boolean", False,
              "One NAT gateway per AZ (zonal resilience) instead of a single shared one."),
    ConfigKey("existingVpcId", "string", "",
              "Use this VPC instead of creating one; empty creates a VPC."),
    ConfigKey("existingPrivateSubnetIds", "array", [],
              "Private subnets (2+ AZs) for nodes and the control plane when existingVpcId is "
              "set.", items="string"),
    # -- cluster
    ConfigKey("clusterName", "string", "",
              "EKS cluster name (a contract: IAM and autoscaler tags use it); empty means "
              "tfserving-<stack>."),
    ConfigKey("kubernetesVersion", "string", "1.32",
              "EKS Kubernetes version (major.minor)."),
    ConfigKey("endpointPublicAccess", "boolean", False,
              "Expose the Kubernetes API endpoint publicly (private access is always on)."),
    ConfigKey("publicAccessCidrs", "array", [],
              "CIDRs allowed to reach the public API endpoint; required when it is public.",
              items="string"),
    ConfigKey("apiAccessCidrs", "array", [],
              "Networks (CI runner subnets, VPN ranges) allowed to reach the private API endpoint "
              "on 443: one ingress rule each on the cluster security group.", items="string"),
    ConfigKey("clusterLogTypes", "array", _DEFAULT_LOG_TYPES,
              "Control-plane log types sent to CloudWatch.", items="string"),
    ConfigKey("clusterLogRetentionDays", "integer", 90,
              "Retention of the control-plane log group (a CloudWatch-supported value)."),
    ConfigKey("clusterCreatorAdmin", "boolean", True,
              "Grant cluster-admin to the identity that runs pulumi up (bootstrap access entry)."),
    ConfigKey("adminPrincipalArns", "array", [],
              "IAM role/user ARNs given cluster-admin through EKS access entries.",
              items="string"),
    ConfigKey("addonVersions", "object",
              {"vpc-cni": "v1.19.2-eksbuild.5", "coredns": "v1.11.4-eksbuild.2",
               "kube-proxy": "v1.32.3-eksbuild.7", "metrics-server": "v0.8.0-eksbuild.2"},
              "Pinned EKS add-on versions: vpc-cni, coredns, kube-proxy (kube-proxy must match "
              "kubernetesVersion), metrics-server (CPU metrics for the HPAs)."),
    ConfigKey("kmsDeletionWindowDays", "integer", 30,
              "Waiting period (7-30 days) before a deleted KMS key is destroyed."),
    # -- nodes
    ConfigKey("systemNodePool", "object",
              {"instanceTypes": ["m6i.large"], "minSize": 2, "maxSize": 3, "desiredSize": 2,
               "diskSizeGiB": 50},
              "CPU node group for cluster add-ons and CPU-only models: instanceTypes, minSize, "
              "maxSize, desiredSize, diskSizeGiB."),
    ConfigKey("gpuNodePools", "object",
              {"gpu": {"instanceTypes": ["g5.xlarge"], "capacityType": "ON_DEMAND", "minSize": 0,
                       "maxSize": 5, "desiredSize": 0, "diskSizeGiB": 100,
                       "amiType": "AL2023_x86_64_NVIDIA"}},
              "GPU node groups by pool name: instanceTypes, capacityType (ON_DEMAND/SPOT), "
              "minSize (0 allowed), maxSize, desiredSize, diskSizeGiB, amiType."),
    # -- model bucket
    ConfigKey("protectData", "boolean", True,
              "Pulumi protect on the buckets and KMS keys, and EKS deletion protection."),
    ConfigKey("bucketForceDestroy", "boolean", False,
              "Let pulumi destroy delete non-empty buckets (every model version is lost)."),
    ConfigKey("noncurrentVersionRetentionDays", "integer", 30,
              "Days a replaced or deleted model object version is kept."),
    ConfigKey("abortIncompleteUploadDays", "integer", 7,
              "Days after which incomplete multipart uploads are aborted."),
    ConfigKey("accessLogRetentionDays", "integer", 365,
              "Days the bucket's access logs are kept."),
    # -- images and models
    ConfigKey("servingImage", "string", "tensorflow/serving:2.20.0",
              "TF Serving image for CPU models (pinned tag or digest)."),
    ConfigKey("servingGpuImage", "string", "tensorflow/serving:2.20.0-gpu",
              "TF Serving image for models on a GPU pool (pinned tag or digest)."),
    ConfigKey("syncImage", "string", "",
              "Model-sync image reference; empty builds images/sync/Dockerfile and pushes it to "
              "the stack's ECR repository (referenced by digest)."),
    ConfigKey("models", "object",
              {"mnist": {"versionPolicy": "latest:2", "labels": {}, "nodePool": "gpu",
                         "gpus": 1, "minReplicas": 2, "maxReplicas": 4,
                         "targetCpuUtilization": 70, "cpuMillicores": 1000,
                         "modelMemoryMiB": 512, "modelDiskMiB": 256, "allowedNamespaces": [],
                         "batching": {"maxBatchSize": 32, "batchTimeoutMicros": 2000,
                                      "maxEnqueuedBatches": 100, "numBatchThreads": 4}}},
              "Models to serve, by name: versionPolicy (latest[:N]/all/specific:V,...), labels "
              "(label -> version), nodePool (a gpuNodePools name or \"system\"), gpus, "
              "minReplicas, maxReplicas, targetCpuUtilization, cpuMillicores, modelMemoryMiB, "
              "modelDiskMiB, maxVersionsOnDisk (with policy all), allowedNamespaces, batching "
              "(maxBatchSize, batchTimeoutMicros, maxEnqueuedBatches, numBatchThreads, "
              "allowedBatchSizes)."),
    ConfigKey("awaitServingRollout", "boolean", True,
              "Let pulumi up wait (30m) for serving pods to be ready; false for a new stack's "
              "first up, before any model version is published."),
    ConfigKey("s3PollSeconds", "integer", 60,
              "How often the model-sync sidecar lists S3 for new versions (S3 requests cost)."),
    ConfigKey("tags", "object", {},
              "Extra tags on every AWS resource (merged over the project's base tags)."),
)  # fmt: skip

KEYS_BY_NAME: dict[str, ConfigKey] = {k.name: k for k in KEYS}


def full_name(key: str) -> str:
    """The namespaced key as written in ``Pulumi.<stack>.yaml``."""
    return f"{PROJECT}:{key}"
