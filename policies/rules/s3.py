"""S3 rules for the model bucket and its access-log bucket.

pulumi-aws v7 splits a bucket's settings into companion resources (BucketPublicAccessBlock,
BucketVersioning, ...), each naming its bucket in the `bucket` input. These are stack rules: a
bucket is joined to its companions through the companions' property dependencies on `bucket`
(the engine records which resource that input came from; `policies/runner.py` derives the
same join offline). The deprecated `...V2` type tokens are accepted as well.

A bucket that receives server access logs (the `targetBucket` of some BucketLogging) is a log
bucket: S3 log delivery supports only SSE-S3 on it and logging it into itself would loop, so
versioning, KMS encryption and access logging are required of the other buckets only.
"""

from __future__ import annotations

from collections.abc import Sequence

from pulumi_policy import (
    EnforcementLevel,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from ._helpers import (
    actions,
    as_list,
    deps,
    get,
    judge,
    none_pass,
    parse_document,
    principal_is_public,
    resources_of,
    statements,
)

BUCKET = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
PUBLIC_ACCESS_BLOCK = ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",)
OWNERSHIP_CONTROLS = ("aws:s3/bucketOwnershipControls:BucketOwnershipControls",)
BUCKET_ACL = ("aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2")
VERSIONING = (
    "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketVersioningV2:BucketVersioningV2",
)
ENCRYPTION = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)
LOGGING = ("aws:s3/bucketLogging:BucketLogging", "aws:s3/bucketLoggingV2:BucketLoggingV2")
BUCKET_POLICY = ("aws:s3/bucketPolicy:BucketPolicy",)

PUBLIC_ACCESS_FLAGS = (
    "blockPublicAcls",
    "ignorePublicAcls",
    "blockPublicPolicy",
    "restrictPublicBuckets",
)
KMS_ALGORITHMS = ("aws:kms", "aws:kms:dsse")


def buckets(resources: Sequence[PolicyResource]) -> list[PolicyResource]:
    return [r for r in resources if r.resource_type in BUCKET]


def companions(
    resources: Sequence[PolicyResource],
    bucket: PolicyResource,
    types: tuple[str, ...],
    prop: str = "bucket",
) -> list[PolicyResource]:
    """Resources of `types` whose input `prop` was computed from `bucket`."""
    return [
        r
        for r in resources
        if r.resource_type in types and any(d.urn == bucket.urn for d in deps(r, prop))
    ]


def log_bucket_urns(resources: Sequence[PolicyResource]) -> set[str]:
    return {
        d.urn
        for r in resources
        if r.resource_type in LOGGING
        for d in deps(r, "targetBucket")
        if d.resource_type in BUCKET
    }


def _public_access(args: StackValidationArgs, report: ReportViolation) -> None:
    for bucket in buckets(args.resources):
        blocks = companions(args.resources, bucket, PUBLIC_ACCESS_BLOCK)
        if not blocks:
            report(
                f"Bucket {bucket.name} has no BucketPublicAccessBlock: declare one with "
                f"{', '.join(PUBLIC_ACCESS_FLAGS)} all true.",
                bucket.urn,
            )
        for block in blocks:
            off = judge(
                lambda b=block: [f for f in PUBLIC_ACCESS_FLAGS if get(b.props, f) is not True]
            )
            if off:
                report(
                    f"BucketPublicAccessBlock {block.name} of bucket {bucket.name} must set "
                    f"{', '.join(off)} to true (all four public-access blocks on).",
                    block.urn,
                )


s3_public_access_blocked = StackValidationPolicy(
    name="s3-public-access-blocked",
    description="Every bucket has all four S3 public-access blocks on.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_public_access,
)


def _acls_disabled(args: StackValidationArgs, report: ReportViolation) -> None:
    for bucket in buckets(args.resources):
        acl = judge(lambda b=bucket: get(b.props, "acl"))
        if acl not in (None, "private"):
            report(
                f"Bucket {bucket.name} sets acl={acl}: remove it, ACLs stay disabled.", bucket.urn
            )
        for grant in companions(args.resources, bucket, BUCKET_ACL):
            report(
                f"BucketAcl {grant.name} grants ACLs on bucket {bucket.name}: remove it, "
                "access is granted by IAM and the bucket policy only.",
                grant.urn,
            )
        verdicts = [
            judge(lambda c=c: get(c.props, "rule", "objectOwnership") == "BucketOwnerEnforced")
            for c in companions(args.resources, bucket, OWNERSHIP_CONTROLS)
        ]
        if none_pass(verdicts):
            report(
                f"Bucket {bucket.name} must have BucketOwnershipControls with "
                "rule.objectOwnership=BucketOwnerEnforced (ACLs disabled).",
                bucket.urn,
            )


s3_acls_disabled = StackValidationPolicy(
    name="s3-acls-disabled",
    description="Every bucket has ACLs disabled (object ownership BucketOwnerEnforced).",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_acls_disabled,
)


def _data_buckets(resources: Sequence[PolicyResource]) -> list[PolicyResource]:
    logs = log_bucket_urns(resources)
    return [b for b in buckets(resources) if b.urn not in logs]


def _versioning(args: StackValidationArgs, report: ReportViolation) -> None:
    for bucket in _data_buckets(args.resources):
        verdicts = [
            judge(lambda v=v: get(v.props, "versioningConfiguration", "status") == "Enabled")
            for v in companions(args.resources, bucket, VERSIONING)
        ]
        if none_pass(verdicts):
            report(
                f"Bucket {bucket.name} must have BucketVersioning with "
                "versioningConfiguration.status=Enabled, so an overwritten or deleted model "
                "can be restored.",
                bucket.urn,
            )


s3_versioning_enabled = StackValidationPolicy(
    name="s3-versioning-enabled",
    description="Data buckets keep every object version.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_versioning,
)


def _uses_customer_kms(config: PolicyResource) -> bool:
    for rule in as_list(get(config.props, "rules")):
        default = get(rule, "applyServerSideEncryptionByDefault", default={})
        key = get(default, "kmsMasterKeyId")
        if get(default, "sseAlgorithm") in KMS_ALGORITHMS and key and "alias/aws/" not in key:
            return True
    return False


def _kms_encryption(args: StackValidationArgs, report: ReportViolation) -> None:
    for bucket in _data_buckets(args.resources):
        verdicts = [
            judge(lambda c=c: _uses_customer_kms(c))
            for c in companions(args.resources, bucket, ENCRYPTION)
        ]
        if none_pass(verdicts):
            report(
                f"Bucket {bucket.name} must have a BucketServerSideEncryptionConfiguration "
                "rule with sseAlgorithm aws:kms and kmsMasterKeyId set to a customer-managed key.",
                bucket.urn,
            )


s3_kms_encryption = StackValidationPolicy(
    name="s3-kms-encryption",
    description="Data buckets encrypt objects by default with a customer-managed KMS key.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_kms_encryption,
)


def _denies_insecure_transport(policy: PolicyResource) -> bool:
    document = parse_document(get(policy.props, "policy"))
    if document is None:
        return False
    for statement in statements(document):
        condition = get(statement, "Condition", "Bool", "aws:SecureTransport")
        insecure = [str(c).lower() for c in as_list(condition)]
        targets = resources_of(statement)
        if (
            get(statement, "Effect") == "Deny"
            and principal_is_public(get(statement, "Principal"))
            and any(a in ("s3:*", "*") for a in actions(statement))
            and insecure == ["false"]
            and any(t.endswith("/*") for t in targets)
            and any(not t.endswith("/*") for t in targets)
        ):
            return True
    return False


def _tls_only(args: StackValidationArgs, report: ReportViolation) -> None:
    for bucket in buckets(args.resources):
        verdicts = [
            judge(lambda p=p: _denies_insecure_transport(p))
            for p in companions(args.resources, bucket, BUCKET_POLICY)
        ]
        if none_pass(verdicts):
            report(
                f"Bucket {bucket.name} needs a BucketPolicy statement that denies s3:* to "
                'Principal "*" on the bucket and its objects when aws:SecureTransport is false.',
                bucket.urn,
            )


s3_tls_only = StackValidationPolicy(
    name="s3-tls-only",
    description="Every bucket refuses requests not made over TLS.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_tls_only,
)


def _access_logging(args: StackValidationArgs, report: ReportViolation) -> None:
    for bucket in _data_buckets(args.resources):
        if not companions(args.resources, bucket, LOGGING):
            report(
                f"Bucket {bucket.name} must have a BucketLogging that delivers server access "
                "logs to a separate log bucket.",
                bucket.urn,
            )


s3_access_logging = StackValidationPolicy(
    name="s3-access-logging",
    description="Data buckets deliver server access logs to a log bucket.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_access_logging,
)


def _no_public_principal(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in BUCKET_POLICY:
        return
    document = parse_document(get(args.props, "policy"))
    if document is None:
        report("The bucket policy is not a JSON policy document.")
        return
    for index, statement in enumerate(statements(document)):
        if get(statement, "Effect") == "Allow" and principal_is_public(get(statement, "Principal")):
            sid = get(statement, "Sid", default=f"#{index}")
            report(
                f'Statement {sid} allows Principal "*": a bucket policy may grant access only '
                "to named principals."
            )


s3_no_public_policy = ResourceValidationPolicy(
    name="s3-no-public-bucket-policy",
    description='No bucket policy grants access to Principal "*".',
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_no_public_principal,
)

POLICIES = [
    s3_public_access_blocked,
    s3_acls_disabled,
    s3_versioning_enabled,
    s3_kms_encryption,
    s3_tls_only,
    s3_access_logging,
    s3_no_public_policy,
]
