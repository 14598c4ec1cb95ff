"""IAM policy documents as pure functions. Nothing here creates a resource.

Each document has two forms:

- ``*_document(...)`` takes plain strings and returns the policy as a ``dict``; tests and the
  policy pack read these directly.
- the short name (``irsa_trust_policy``, ``model_reader_policy``, ...) takes ``pulumi.Input[str]``
  values (plain strings or Outputs) and returns ``pulumi.Output[str]`` holding the JSON text that
  ``aws.iam.Role(assume_role_policy=...)`` / ``aws.iam.RolePolicy(policy=...)`` expect.

The shapes follow terraform-aws-iam ``iam-role-for-service-accounts`` (trust pinned on both
``sub`` and ``aud``) and the cluster-autoscaler AWS provider's documented least-privilege policy.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pulumi

PolicyDocument = dict[str, Any]

IAM_VERSION = "2012-10-17"
STS_AUDIENCE = "sts.amazonaws.com"

# Read-only describe calls cluster-autoscaler makes; AWS does not support resource-level
# permissions for Describe*, so these stay on "*" (cluster-autoscaler/cloudprovider/aws/README.md).
CLUSTER_AUTOSCALER_DESCRIBE_ACTIONS = (
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLaunchConfigurations",
    "autoscaling:DescribeScalingActivities",
    "autoscaling:DescribeTags",
    "ec2:DescribeImages",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:GetInstanceTypesFromInstanceRequirements",
    "eks:DescribeNodegroup",
)
CLUSTER_AUTOSCALER_MUTATING_ACTIONS = (
    "autoscaling:SetDesiredCapacity",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
)


# The AWS Load Balancer Controller's published policy (docs/install/iam_policy.json at v3.5.0,
# infra/upstream/README.md); the controller's role gets a subset of it.
LB_CONTROLLER_UPSTREAM_POLICY = (
    Path(__file__).resolve().parent / "upstream" / "aws-load-balancer-controller_iam_policy.json"
)
LB_CONTROLLER_TARGET_ACTIONS = (
    "elasticloadbalancing:RegisterTargets",
    "elasticloadbalancing:DeregisterTargets",
)
# Tag on every target group of the model endpoint: the controller may change the targets of
# tagged groups of its own cluster only.
ENDPOINT_TAG = "tfserving-eks/cluster"


def issuer_host(issuer_url: str) -> str:
    """Strips the scheme from an OIDC issuer URL: IAM condition keys use the bare host/path."""
    return issuer_url.removeprefix("https://").removeprefix("http://").rstrip("/")


def autoscaler_ownership_tag(cluster_name: str) -> str:
    """Tag key cluster-autoscaler auto-discovery uses to recognise this cluster's node groups."""
    return f"k8s.io/cluster-autoscaler/{cluster_name}"


def irsa_trust_policy_document(
    oidc_provider_arn: str, oidc_issuer_host: str, namespace: str, service_account: str
) -> PolicyDocument:
    """Trust policy letting exactly one Kubernetes ServiceAccount assume the role via IRSA."""
    host = issuer_host(oidc_issuer_host)
    return {
        "Version": IAM_VERSION,
        "Statement": [
            {
                "Sid": "AssumeFromServiceAccount",
                "Effect": "Allow",
                "Principal": {"Federated": oidc_provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    # StringEquals, not StringLike: one exact service account, no wildcards.
                    "StringEquals": {
                        f"{host}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                        f"{host}:aud": STS_AUDIENCE,
                    }
                },
            }
        ],
    }


def s3_via_service(kms_key_arn: str) -> str:
    """``s3.<region>.amazonaws.com``: the kms:ViaService value for S3 in the key's region (a
    customer KMS key is regional, so its ARN names the region the bucket uses)."""
    region = kms_key_arn.split(":")[3]
    suffix = "amazonaws.com.cn" if kms_key_arn.startswith("arn:aws-cn:") else "amazonaws.com"
    return f"s3.{region}.{suffix}"


def model_reader_policy_document(
    bucket_arn: str, kms_key_arn: str, model_prefix: str
) -> PolicyDocument:
    """Read-only access to one model's prefix of the bucket and decrypt with the bucket's key.

    ``model_prefix`` is the key prefix of one model, e.g. ``models/mnist/``; a trailing slash is
    added when missing so ``models/mnist`` cannot also read ``models/mnist-v2/``.
    """
    prefix = model_prefix if model_prefix.endswith("/") else f"{model_prefix}/"
    return {
        "Version": IAM_VERSION,
        "Statement": [
            {
                "Sid": "ReadModelObjects",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": f"{bucket_arn}/{prefix}*",
            },
            {
                "Sid": "ListModelPrefix",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": bucket_arn,
                # "*" also matches the empty rest, so listing the prefix itself is allowed.
                "Condition": {"StringLike": {"s3:prefix": f"{prefix}*"}},
            },
            {
                "Sid": "DecryptModelObjects",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": kms_key_arn,
                # Only through S3 (SSE-KMS reads), never a direct kms:Decrypt call with the
                # pod's credentials (AWS KMS developer guide, kms:ViaService).
                "Condition": {"StringEquals": {"kms:ViaService": s3_via_service(kms_key_arn)}},
            },
        ],
    }


def metrics_query_policy_document(workspace_arn: str) -> PolicyDocument:
    """PromQL queries on one Amazon Managed Service for Prometheus workspace, nothing else:
    ``aps:QueryMetrics`` is what ``GET /workspaces/<id>/api/v1/query`` needs (AMP API reference;
    AWS managed policy AmazonPrometheusQueryAccess)."""
    return {
        "Version": IAM_VERSION,
        "Statement": [
            {
                "Sid": "QueryTheStackWorkspace",
                "Effect": "Allow",
                "Action": "aps:QueryMetrics",
                "Resource": workspace_arn,
            }
        ],
    }


def cluster_autoscaler_policy_document(cluster_name: str) -> PolicyDocument:
    """Describe anywhere; scale and terminate only ASGs tagged as owned by and enabled for
    this cluster's autoscaler (the tags the node groups carry)."""
    return {
        "Version": IAM_VERSION,
        "Statement": [
            {
                "Sid": "Describe",
                "Effect": "Allow",
                "Action": list(CLUSTER_AUTOSCALER_DESCRIBE_ACTIONS),
                "Resource": "*",
            },
            {
                "Sid": "ScaleOwnedNodeGroups",
                "Effect": "Allow",
                "Action": list(CLUSTER_AUTOSCALER_MUTATING_ACTIONS),
                "Resource": "*",
                "Condition": {
                    "StringEquals": {
                        f"aws:ResourceTag/{autoscaler_ownership_tag(cluster_name)}": "owned",
                        "aws:ResourceTag/k8s.io/cluster-autoscaler/enabled": "true",
                    }
                },
            },
        ],
    }


@functools.cache
def lb_controller_read_actions() -> tuple[str, ...]:
    """The published policy's read-only statement (Describe/Get on "*"), as published."""
    upstream = json.loads(LB_CONTROLLER_UPSTREAM_POLICY.read_text())
    (found,) = [
        s["Action"]
        for s in upstream["Statement"]
        if s.get("Resource") == "*"
        and "Condition" not in s
        and all(a.split(":", 1)[1].startswith(("Describe", "Get")) for a in s["Action"])
        and any(a.startswith("elasticloadbalancing:") for a in s["Action"])
    ]
    return tuple(found)


def lb_controller_policy_document(cluster_name: str) -> PolicyDocument:
    """What the controller needs to keep target group bindings in step: read anything (the
    published read-only statement), register and deregister targets only in target groups
    tagged as this cluster's endpoint groups (`ENDPOINT_TAG`). The published policy's
    statement for these two actions has no condition; the tag narrows it to this stack."""
    return {
        "Version": IAM_VERSION,
        "Statement": [
            {
                "Sid": "Describe",
                "Effect": "Allow",
                "Action": list(lb_controller_read_actions()),
                "Resource": "*",
            },
            {
                "Sid": "BindTargetsOfThisCluster",
                "Effect": "Allow",
                "Action": list(LB_CONTROLLER_TARGET_ACTIONS),
                "Resource": "arn:aws:elasticloadbalancing:*:*:targetgroup/*/*",
                "Condition": {"StringEquals": {f"aws:ResourceTag/{ENDPOINT_TAG}": cluster_name}},
            },
        ],
    }


def tls_only_bucket_policy_document(bucket_arn: str) -> PolicyDocument:
    """Bucket policy denying every request made without TLS, on the bucket and its objects."""
    return {
        "Version": IAM_VERSION,
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def _json_output(build: Any, *args: pulumi.Input[str]) -> pulumi.Output[str]:
    # Output.all accepts plain values too, so one path serves strings and Outputs alike.
    return pulumi.Output.all(*args).apply(lambda values: json.dumps(build(*values), indent=2))


def irsa_trust_policy(
    oidc_provider_arn: pulumi.Input[str],
    oidc_issuer_host: pulumi.Input[str],
    namespace: pulumi.Input[str],
    service_account: pulumi.Input[str],
) -> pulumi.Output[str]:
    """JSON of :func:`irsa_trust_policy_document`; the issuer may be a host or a full URL."""
    return _json_output(
        irsa_trust_policy_document, oidc_provider_arn, oidc_issuer_host, namespace, service_account
    )


def model_reader_policy(
    bucket_arn: pulumi.Input[str], kms_key_arn: pulumi.Input[str], model_prefix: pulumi.Input[str]
) -> pulumi.Output[str]:
    """JSON of :func:`model_reader_policy_document`."""
    return _json_output(model_reader_policy_document, bucket_arn, kms_key_arn, model_prefix)


def metrics_query_policy(workspace_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """JSON of :func:`metrics_query_policy_document`."""
    return _json_output(metrics_query_policy_document, workspace_arn)


def cluster_autoscaler_policy(cluster_name: pulumi.Input[str]) -> pulumi.Output[str]:
    """JSON of :func:`cluster_autoscaler_policy_document`."""
    return _json_output(cluster_autoscaler_policy_document, cluster_name)


def tls_only_bucket_policy(bucket_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """JSON of :func:`tls_only_bucket_policy_document`."""
    return _json_output(tls_only_bucket_policy_document, bucket_arn)


def lb_controller_policy(cluster_name: pulumi.Input[str]) -> pulumi.Output[str]:
    """JSON of :func:`lb_controller_policy_document`."""
    return _json_output(lb_controller_policy_document, cluster_name)
