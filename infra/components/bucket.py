"""The S3 model bucket and the bucket that receives its access logs.

`ModelBucket` creates:

- a log bucket: private, ACLs disabled, SSE-S3 (S3 server access logging cannot write to an
  SSE-KMS bucket), TLS only plus a grant for the S3 logging service, logs expire after N days;
- the model bucket (``aws.s3.Bucket`` with the v7 split resources): all four public-access
  blocks, ACLs disabled (``BucketOwnerEnforced``), versioning, SSE-KMS with the customer key and
  the S3 bucket key on, a TLS-only bucket policy, lifecycle rules for noncurrent versions,
  expired delete markers and incomplete multipart uploads, and access logging to the log bucket.

``protect`` and ``force_destroy`` come from settings; models live under ``models/<name>/``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.naming import child, merge_tags
from infra.settings import Settings

TYPE_TOKEN = "tfserving-eks:bucket:ModelBucket"
MODEL_PREFIX = "models/"


@dataclass(frozen=True)
class ModelBucketArgs:
    # The retention days (noncurrentVersionRetentionDays, abortIncompleteUploadDays,
    # accessLogRetentionDays), bucketForceDestroy and protectData.
    settings: Settings
    kms_key_arn: pulumi.Input[str]
    tags: Mapping[str, str]


def log_bucket_policy(bucket_arn: str, source_bucket_arn: str, account_id: str) -> str:
    """TLS-only, plus PutObject for the S3 logging service from the model bucket only."""
    doc = iam.tls_only_bucket_policy_document(bucket_arn)
    doc["Statement"].append(
        {
            "Sid": "S3ServerAccessLogs",
            "Effect": "Allow",
            "Principal": {"Service": "logging.s3.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": f"{bucket_arn}/*",
            "Condition": {
                "ArnLike": {"aws:SourceArn": source_bucket_arn},
                "StringEquals": {"aws:SourceAccount": account_id},
            },
        }
    )
    return json.dumps(doc, indent=2)


class ModelBucket(pulumi.ComponentResource):
    """Outputs: ``bucket_name``, ``bucket_arn``, ``log_bucket_name``."""

    def __init__(
        self, name: str, args: ModelBucketArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        here = pulumi.ResourceOptions(parent=self)
        settings = args.settings
        keep = pulumi.ResourceOptions(parent=self, protect=settings.protect_data)

        def private(role: str, bucket: aws.s3.Bucket) -> list[pulumi.Resource]:
            block = aws.s3.BucketPublicAccessBlock(
                child(name, f"{role}-public-access"),
                bucket=bucket.id,
                block_public_acls=True,
                block_public_policy=True,
                ignore_public_acls=True,
                restrict_public_buckets=True,
                opts=here,
            )
            owner = aws.s3.BucketOwnershipControls(
                child(name, f"{role}-ownership"),
                bucket=bucket.id,
                rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
                opts=here,
            )
            return [block, owner]

        logs = aws.s3.Bucket(
            child(name, "logs"),
            force_destroy=settings.bucket_force_destroy,
            tags=merge_tags({"Name": child(name, "logs")}, args.tags),
            opts=keep,
        )
        logs_guard = private("logs", logs)
        aws.s3.BucketServerSideEncryptionConfiguration(
            child(name, "logs-sse"),
            bucket=logs.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="AES256"
                    )
                )
            ],
            opts=here,
        )
        aws.s3.BucketLifecycleConfiguration(
            child(name, "logs-lifecycle"),
            bucket=logs.id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-access-logs",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(
                        days=settings.access_log_retention_days
                    ),
                )
            ],
            opts=here,
        )

        bucket = aws.s3.Bucket(
            child(name, "models"),
            force_destroy=settings.bucket_force_destroy,
            tags=merge_tags({"Name": child(name, "models")}, args.tags),
            opts=keep,
        )
        guard = private("models", bucket)
        aws.s3.BucketVersioning(
            child(name, "models-versioning"),
            bucket=bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
                status="Enabled"
            ),
            opts=here,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            child(name, "models-sse"),
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="aws:kms", kms_master_key_id=args.kms_key_arn
                    ),
                    # One data key per bucket instead of per object: far fewer KMS calls.
                    bucket_key_enabled=True,
                )
            ],
            opts=here,
        )
        # The policy waits for the public-access block so S3 never judges it "public".
        aws.s3.BucketPolicy(
            child(name, "models-policy"),
            bucket=bucket.id,
            policy=iam.tls_only_bucket_policy(bucket.arn),
            opts=pulumi.ResourceOptions(parent=self, depends_on=guard),
        )
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        aws.s3.BucketPolicy(
            child(name, "logs-policy"),
            bucket=logs.id,
            policy=pulumi.Output.all(logs.arn, bucket.arn, account.account_id).apply(
                lambda a: log_bucket_policy(*a)
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=logs_guard),
        )
        aws.s3.BucketLifecycleConfiguration(
            child(name, "models-lifecycle"),
            bucket=bucket.id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-noncurrent-versions",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                        noncurrent_days=settings.noncurrent_version_retention_days
                    ),
                    expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(
                        expired_object_delete_marker=True
                    ),
                ),
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="abort-incomplete-multipart-uploads",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=settings.abort_incomplete_upload_days
                    ),
                ),
            ],
            opts=here,
        )
        aws.s3.BucketLogging(
            child(name, "models-logging"),
            bucket=bucket.id,
            target_bucket=logs.id,
            target_prefix="models-bucket/",
            opts=here,
        )
        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.log_bucket_name = logs.bucket
        self.register_outputs(
            {
                "bucket_name": self.bucket_name,
                "bucket_arn": self.bucket_arn,
                "log_bucket_name": self.log_bucket_name,
            }
        )
