"""S3 rules on small graphs: a model bucket and its log bucket with their v7 companions."""

from __future__ import annotations

import json

import pytest

from policies.rules import s3
from tests.policies.support import record, run, urn_of

MODEL_ID = "models-0a1b2c"
LOGS_ID = "logs-3d4e5f"
KEY_ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def tls_policy(bucket_id: str, extra: list | None = None) -> str:
    arn = f"arn:aws:s3:::{bucket_id}"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [arn, f"{arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                },
                *(extra or []),
            ],
        }
    )


def bucket_graph(prefix: str, bucket_id: str, *, data: bool) -> list[dict]:
    records = [
        record("aws:s3/bucket:Bucket", prefix, {"forceDestroy": False}, id_=bucket_id),
        record(
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            f"{prefix}-public-access",
            {"bucket": bucket_id, **{flag: True for flag in s3.PUBLIC_ACCESS_FLAGS}},
        ),
        record(
            "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
            f"{prefix}-ownership",
            {"bucket": bucket_id, "rule": {"objectOwnership": "BucketOwnerEnforced"}},
        ),
        record(
            "aws:s3/bucketPolicy:BucketPolicy",
            f"{prefix}-policy",
            {"bucket": bucket_id, "policy": tls_policy(bucket_id)},
        ),
    ]
    if data:
        records += [
            record(
                "aws:s3/bucketVersioning:BucketVersioning",
                f"{prefix}-versioning",
                {"bucket": bucket_id, "versioningConfiguration": {"status": "Enabled"}},
            ),
            record(
                "aws:s3/bucketServerSideEncryptionConfiguration:"
                "BucketServerSideEncryptionConfiguration",
                f"{prefix}-encryption",
                {
                    "bucket": bucket_id,
                    "rules": [
                        {
                            "applyServerSideEncryptionByDefault": {
                                "sseAlgorithm": "aws:kms",
                                "kmsMasterKeyId": KEY_ARN,
                            },
                            "bucketKeyEnabled": True,
                        }
                    ],
                },
            ),
            record(
                "aws:s3/bucketLogging:BucketLogging",
                f"{prefix}-logging",
                {"bucket": bucket_id, "targetBucket": LOGS_ID, "targetPrefix": "s3/"},
            ),
        ]
    return records


def good_graph() -> list[dict]:
    return bucket_graph("models", MODEL_ID, data=True) + bucket_graph("logs", LOGS_ID, data=False)


def named(graph: list[dict], name: str) -> dict:
    return next(r for r in graph if r["name"] == name)


def without(graph: list[dict], name: str) -> list[dict]:
    return [r for r in graph if r["name"] != name]


BUCKET_URN = urn_of("aws:s3/bucket:Bucket", "models")
LOGS_URN = urn_of("aws:s3/bucket:Bucket", "logs")


@pytest.mark.parametrize("policy", s3.POLICIES, ids=lambda p: p.name)
def test_good_buckets_pass(policy) -> None:
    assert run(policy, good_graph()) == []


def found(policy, graph) -> list[tuple[str | None, str]]:
    return [(r.urn, r.message) for r in run(policy, graph)]


def test_public_access_block_missing_or_partial() -> None:
    graph = without(good_graph(), "logs-public-access")
    assert found(s3.s3_public_access_blocked, graph) == [
        (
            LOGS_URN,
            "Bucket logs has no BucketPublicAccessBlock: declare one with blockPublicAcls, "
            "ignorePublicAcls, blockPublicPolicy, restrictPublicBuckets all true.",
        )
    ]
    graph = good_graph()
    block = named(graph, "models-public-access")
    block["inputs"].update(blockPublicPolicy=False)
    block["inputs"].pop("restrictPublicBuckets")
    assert found(s3.s3_public_access_blocked, graph) == [
        (
            block["urn"],
            "BucketPublicAccessBlock models-public-access of bucket models must set "
            "blockPublicPolicy, restrictPublicBuckets to true (all four public-access blocks on).",
        )
    ]


def test_acls_disabled() -> None:
    expected = (
        BUCKET_URN,
        "Bucket models must have BucketOwnershipControls with "
        "rule.objectOwnership=BucketOwnerEnforced (ACLs disabled).",
    )
    assert found(s3.s3_acls_disabled, without(good_graph(), "models-ownership")) == [expected]
    graph = good_graph()
    named(graph, "models-ownership")["inputs"]["rule"]["objectOwnership"] = "ObjectWriter"
    assert found(s3.s3_acls_disabled, graph) == [expected]

    graph = good_graph()
    acl = record(
        "aws:s3/bucketAcl:BucketAcl", "models-acl", {"bucket": MODEL_ID, "acl": "public-read"}
    )
    named(graph, "models")["inputs"]["acl"] = "public-read"
    assert found(s3.s3_acls_disabled, [*graph, acl]) == [
        (BUCKET_URN, "Bucket models sets acl=public-read: remove it, ACLs stay disabled."),
        (
            acl["urn"],
            "BucketAcl models-acl grants ACLs on bucket models: remove it, access is granted by "
            "IAM and the bucket policy only.",
        ),
    ]


@pytest.mark.parametrize("change", ["remove", "suspend"])
def test_versioning(change) -> None:
    graph = good_graph()
    if change == "remove":
        graph = without(graph, "models-versioning")
    else:
        named(graph, "models-versioning")["inputs"]["versioningConfiguration"]["status"] = (
            "Suspended"
        )
    assert found(s3.s3_versioning_enabled, graph) == [
        (
            BUCKET_URN,
            "Bucket models must have BucketVersioning with versioningConfiguration.status=Enabled, "
            "so an overwritten or deleted model can be restored.",
        )
    ]


@pytest.mark.parametrize(
    "default",
    [
        {"sseAlgorithm": "AES256"},
        {"sseAlgorithm": "aws:kms"},
        {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": "alias/aws/s3"},
        None,
    ],
)
def test_kms_encryption(default) -> None:
    graph = good_graph()
    if default is None:
        graph = without(graph, "models-encryption")
    else:
        named(graph, "models-encryption")["inputs"]["rules"][0][
            "applyServerSideEncryptionByDefault"
        ] = default
    assert found(s3.s3_kms_encryption, graph) == [
        (
            BUCKET_URN,
            "Bucket models must have a BucketServerSideEncryptionConfiguration rule with "
            "sseAlgorithm aws:kms and kmsMasterKeyId set to a customer-managed key.",
        )
    ]


TLS_MESSAGE = (
    "Bucket models needs a BucketPolicy statement that denies s3:* to "
    'Principal "*" on the bucket and its objects when aws:SecureTransport is false.'
)


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.update(Effect="Allow"),
        lambda s: s["Condition"]["Bool"].update({"aws:SecureTransport": "true"}),
        lambda s: s.update(Resource=[s["Resource"][0]]),
        lambda s: s.update(Action="s3:GetObject"),
    ],
    ids=["allow", "secure-true", "bucket-only", "one-action"],
)
def test_tls_only(change) -> None:
    graph = good_graph()
    policy = named(graph, "models-policy")
    document = json.loads(policy["inputs"]["policy"])
    change(document["Statement"][0])
    policy["inputs"]["policy"] = json.dumps(document)
    assert found(s3.s3_tls_only, graph) == [(BUCKET_URN, TLS_MESSAGE)]
    assert found(s3.s3_tls_only, without(good_graph(), "models-policy")) == [
        (BUCKET_URN, TLS_MESSAGE)
    ]


def test_access_logging_required_of_data_buckets_only() -> None:
    extra = [r for r in bucket_graph("extra", "extra-9z", data=True) if "logging" not in r["name"]]
    assert found(s3.s3_access_logging, good_graph() + extra) == [
        (
            urn_of("aws:s3/bucket:Bucket", "extra"),
            "Bucket extra must have a BucketLogging that delivers server access logs to a "
            "separate log bucket.",
        )
    ]


def test_log_bucket_is_recognised_through_the_logging_target() -> None:
    # Without the BucketLogging pointing at it, the log bucket is a data bucket like any other.
    graph = without(good_graph(), "models-logging")
    assert [r.urn for r in run(s3.s3_versioning_enabled, graph)] == [LOGS_URN]


def test_no_public_principal_allow() -> None:
    public_read = {
        "Sid": "PublicRead",
        "Effect": "Allow",
        "Principal": {"AWS": "*"},
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{MODEL_ID}/*",
    }
    graph = good_graph()
    policy = named(graph, "models-policy")
    policy["inputs"]["policy"] = tls_policy(MODEL_ID, [public_read])
    assert found(s3.s3_no_public_policy, graph) == [
        (
            policy["urn"],
            'Statement PublicRead allows Principal "*": a bucket policy may grant access only to '
            "named principals.",
        )
    ]
    policy["inputs"]["policy"] = "{not json"
    assert found(s3.s3_no_public_policy, graph) == [
        (policy["urn"], "The bucket policy is not a JSON policy document.")
    ]


def test_deprecated_v2_tokens_are_joined_too() -> None:
    graph = good_graph()
    named(graph, "models")["type"] = "aws:s3/bucketV2:BucketV2"
    versioning = named(graph, "models-versioning")
    versioning["type"] = "aws:s3/bucketVersioningV2:BucketVersioningV2"
    versioning["inputs"]["versioningConfiguration"]["status"] = "Suspended"
    assert [r.policy for r in run(s3.s3_versioning_enabled, graph)] == ["s3-versioning-enabled"]
