"""IAM documents: exact conditions and resources, least privilege."""

from __future__ import annotations

import asyncio
import json

import pulumi
import pytest

from infra import iam

ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF"
HOST = "oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF"
PROVIDER = f"arn:aws:iam::123456789012:oidc-provider/{HOST}"
BUCKET = "arn:aws:s3:::models-bucket"
KEY = "arn:aws:kms:eu-west-1:123456789012:key/1111"


@pytest.mark.parametrize("issuer", [ISSUER, HOST, ISSUER + "/"])
def test_irsa_trust_pins_sub_and_aud(issuer: str) -> None:
    doc = iam.irsa_trust_policy_document(PROVIDER, issuer, "mnist", "mnist-serving")
    [stmt] = doc["Statement"]
    assert stmt["Principal"] == {"Federated": PROVIDER}
    assert stmt["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert stmt["Condition"] == {
        "StringEquals": {
            f"{HOST}:sub": "system:serviceaccount:mnist:mnist-serving",
            f"{HOST}:aud": "sts.amazonaws.com",
        }
    }


@pytest.mark.parametrize("prefix", ["models/mnist/", "models/mnist"])
def test_model_reader_is_scoped_to_one_prefix(prefix: str) -> None:
    doc = iam.model_reader_policy_document(BUCKET, KEY, prefix)
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    assert by_sid["ReadModelObjects"]["Action"] == "s3:GetObject"
    assert by_sid["ReadModelObjects"]["Resource"] == f"{BUCKET}/models/mnist/*"
    assert by_sid["ListModelPrefix"]["Resource"] == BUCKET
    assert by_sid["ListModelPrefix"]["Condition"] == {"StringLike": {"s3:prefix": "models/mnist/*"}}
    assert by_sid["DecryptModelObjects"] == {
        "Sid": "DecryptModelObjects",
        "Effect": "Allow",
        "Action": "kms:Decrypt",
        "Resource": KEY,
        # Decrypt only as part of an S3 read in the key's region, never called directly.
        "Condition": {"StringEquals": {"kms:ViaService": f"s3.{KEY.split(':')[3]}.amazonaws.com"}},
    }
    actions = [s["Action"] for s in doc["Statement"]]
    assert all(isinstance(a, str) and "*" not in a for a in actions)
    assert all(s["Effect"] == "Allow" for s in doc["Statement"])


def test_cluster_autoscaler_mutations_need_cluster_tags() -> None:
    doc = iam.cluster_autoscaler_policy_document("prod-eks")
    describe, mutate = doc["Statement"]
    assert all(a.split(":")[1].startswith(("Describe", "Get")) for a in describe["Action"])
    assert mutate["Action"] == [
        "autoscaling:SetDesiredCapacity",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
    ]
    assert mutate["Condition"] == {
        "StringEquals": {
            "aws:ResourceTag/k8s.io/cluster-autoscaler/prod-eks": "owned",
            "aws:ResourceTag/k8s.io/cluster-autoscaler/enabled": "true",
        }
    }


def test_tls_only_bucket_policy_denies_plain_http() -> None:
    [stmt] = iam.tls_only_bucket_policy_document(BUCKET)["Statement"]
    assert stmt["Effect"] == "Deny"
    assert stmt["Principal"] == "*"
    assert stmt["Resource"] == [BUCKET, f"{BUCKET}/*"]
    assert stmt["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_output_forms_equal_documents_and_accept_outputs() -> None:
    async def resolve_all() -> list[str | None]:
        # Outputs bind to the running loop, so build and await them inside one loop.
        outputs = [
            iam.irsa_trust_policy(pulumi.Output.from_input(PROVIDER), ISSUER, "ns", "sa"),
            iam.model_reader_policy(BUCKET, pulumi.Output.from_input(KEY), "models/a/"),
            iam.cluster_autoscaler_policy("c"),
            iam.tls_only_bucket_policy(BUCKET),
        ]
        return [await o.future() for o in outputs]

    # Not asyncio.run: it unsets the thread's event loop, which later Pulumi mock runs rely on.
    loop = asyncio.new_event_loop()
    try:
        trust, reader, autoscaler, tls = loop.run_until_complete(resolve_all())
    finally:
        loop.close()
    assert json.loads(trust) == iam.irsa_trust_policy_document(PROVIDER, ISSUER, "ns", "sa")
    assert json.loads(reader) == iam.model_reader_policy_document(BUCKET, KEY, "models/a/")
    assert json.loads(autoscaler) == iam.cluster_autoscaler_policy_document("c")
    assert json.loads(tls) == iam.tls_only_bucket_policy_document(BUCKET)


def test_kms_via_service_follows_the_key_region() -> None:
    assert (
        iam.s3_via_service("arn:aws:kms:us-east-2:123456789012:key/1")
        == "s3.us-east-2.amazonaws.com"
    )
    assert (
        iam.s3_via_service("arn:aws-cn:kms:cn-north-1:123456789012:key/1")
        == "s3.cn-north-1.amazonaws.com.cn"
    )
