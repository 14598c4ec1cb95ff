"""The account bootstrap: what the program's workflows need before the first ``pulumi up``.

Run once per AWS account with administrator credentials (docs/deploy.md, "First deploy"):

- the Pulumi state bucket (versioned, SSE-KMS with a key of its own, public access blocked,
  TLS only, server access logs in a bucket of their own, protected) and that key, also the
  stacks' secrets provider (``awskms://<alias>``); the program's policy pack passes all of it;
- GitHub's OIDC provider (``token.actions.githubusercontent.com``, audience ``sts.amazonaws.com``);
- one role per workflow job, each trusting only the token of that job (its ``sub`` claim):
  ``<prefix>-previewer`` (``repo:OWNER/REPO:pull_request``) reads, with AWS ReadOnlyAccess, but
  no secret or object data except the state; ``<prefix>-<stack>-deployer``
  (``repo:OWNER/REPO:environment:<stack>``) holds the stack's generated policy, its state and
  the preflight's reads; ``<prefix>-<stack>-publisher`` (same ``sub``) writes ``models/`` of the
  stack's bucket; ``<prefix>-<stack>-canary-gate`` (same ``sub``) queries the stack's Prometheus.

  A deploy role's permissions are the stack's ``deploy-policy.json`` (``python -m infra.synth``,
  generated from what the program declares: ``infra/deploy_policy.py``), read from ``synthDir``;
  re-run the bootstrap when a pull request changes it. No role may change the roles or the OIDC
  provider made here, itself included (an explicit deny);
- the EC2 Spot service-linked role, which a spot GPU pool needs and no service creates for it.

Nothing here imports the program: the bootstrap reads only the synth's output files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from account.settings import KEYS, AccountSettings, AccountSettingsError, parse

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
STS_AUDIENCE = "sts.amazonaws.com"
READ_ONLY_ACCESS = "arn:aws:iam::aws:policy/ReadOnlyAccess"
# IAM's limit on the inline policies of one role, together, in characters without whitespace
# (IAM user guide, "IAM and AWS STS quotas").
INLINE_POLICY_LIMIT = 10240
# What `python -m ops.preflight` reads besides what the deploy policy already grants.
PREFLIGHT_READS = (
    "acm:DescribeCertificate",  # endpoint-certificate: the model endpoint's certificate
    "ec2:DescribeAvailabilityZones",
    "ec2:DescribeInstanceTypeOfferings",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeInstances",
    "ec2:DescribeSubnets",
    "ec2:DescribeVpcEndpoints",
    "ec2:DescribeVpcs",
    "eks:DescribeAddonVersions",
    "eks:DescribeClusterVersions",
    "iam:GetRole",
    "iam:SimulatePrincipalPolicy",
    "logs:DescribeLogGroups",
    "servicequotas:GetServiceQuota",
)
# Kept from the preview role although ReadOnlyAccess would allow them: secrets and data.
PREVIEW_DENIED = (
    "secretsmanager:GetSecretValue",
    "ssm:GetParameter",
    "ssm:GetParameterHistory",
    "ssm:GetParameters",
    "ssm:GetParametersByPath",
)
# The IAM writes no workflow role may make on the bootstrap's own roles and provider.
GUARDED_IAM_WRITES = (
    "iam:AttachRolePolicy",
    "iam:DeleteOpenIDConnectProvider",
    "iam:DeleteRole",
    "iam:DeleteRolePermissionsBoundary",
    "iam:DeleteRolePolicy",
    "iam:DetachRolePolicy",
    "iam:PutRolePermissionsBoundary",
    "iam:PutRolePolicy",
    "iam:TagRole",
    "iam:UntagRole",
    "iam:UpdateAssumeRolePolicy",
    "iam:UpdateOpenIDConnectProviderThumbprint",
    "iam:AddClientIDToOpenIDConnectProvider",
    "iam:UpdateRole",
)
# Config values Pulumi hands over as plain text; the others arrive as JSON.
TEXT_KEYS = frozenset({"githubRepository", "synthDir", "namePrefix"})
LOG_RETENTION_DAYS = 365
TAGS = {"project": "tfserving-eks", "managed-by": "pulumi", "stack": "account"}


class BootstrapError(Exception):
    """A file the bootstrap reads is missing or unusable; the message says what to run."""


def github_trust(provider_arn: str, repository: str, subject: str) -> dict[str, Any]:
    """Trust for one job's token: audience STS, ``sub`` exactly ``repo:<repository>:<subject>``."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{GITHUB_OIDC_HOST}:aud": STS_AUDIENCE,
                        f"{GITHUB_OIDC_HOST}:sub": f"repo:{repository}:{subject}",
                    }
                },
            }
        ],
    }


def state_access(bucket_arn: str, key_arn: str, write: bool) -> list[dict[str, Any]]:
    """Statements for the Pulumi state: read (preview, publish) or read and write (deploy)."""
    objects = ["s3:GetObject", *(["s3:PutObject", "s3:DeleteObject"] if write else [])]
    key = [
        "kms:Decrypt",
        "kms:DescribeKey",
        *(["kms:Encrypt", "kms:GenerateDataKey"] if write else []),
    ]
    return [
        {
            "Sid": "StateBucket",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket_arn,
        },
        {
            "Sid": "StateObjects",
            "Effect": "Allow",
            "Action": objects,
            "Resource": f"{bucket_arn}/*",
        },
        {"Sid": "StateKey", "Effect": "Allow", "Action": key, "Resource": key_arn},
    ]


def guard(role_arn_prefix: str, provider_arn: str) -> dict[str, Any]:
    """The explicit deny that keeps every workflow role off the bootstrap's own IAM objects."""
    return {
        "Sid": "NotTheBootstrapsOwnIam",
        "Effect": "Deny",
        "Action": list(GUARDED_IAM_WRITES),
        "Resource": [f"{role_arn_prefix}*", provider_arn],
    }


def preview_policy(bucket_arn: str, key_arn: str, guard_statement: dict[str, Any]) -> dict:
    """On top of ReadOnlyAccess: the state (read, decrypt), and no secret or object data."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            *state_access(bucket_arn, key_arn, write=False),
            {"Sid": "NoSecrets", "Effect": "Deny", "Action": list(PREVIEW_DENIED), "Resource": "*"},
            {
                "Sid": "NoObjectDataButTheState",
                "Effect": "Deny",
                "Action": "s3:GetObject",
                "NotResource": f"{bucket_arn}/*",
            },
            guard_statement,
        ],
    }


def deploy_extras(bucket_arn: str, key_arn: str, guard_statement: dict[str, Any]) -> dict:
    """The deploy role's state access, the preflight's reads, and the guard."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            *state_access(bucket_arn, key_arn, write=True),
            {
                "Sid": "Preflight",
                "Effect": "Allow",
                "Action": list(PREFLIGHT_READS),
                "Resource": "*",
            },
            guard_statement,
        ],
    }


def publish_policy(
    model_bucket: str, region: str, bucket_arn: str, key_arn: str, guard_statement: dict
) -> dict[str, Any]:
    """Publish (and check labels) under ``models/`` of the stack's bucket; its KMS key only
    through S3 for that bucket; read the state for ``pulumi stack output modelBucketName``."""
    bucket = f"arn:aws:s3:::{model_bucket}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ListModels",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": bucket,
                "Condition": {"StringLike": {"s3:prefix": ["models/*"]}},
            },
            {
                "Sid": "WriteModels",
                "Effect": "Allow",
                "Action": ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
                "Resource": f"{bucket}/models/*",
            },
            {
                "Sid": "ModelKeyThroughS3",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"},
                    "StringLike": {"kms:EncryptionContext:aws:s3:arn": [bucket, f"{bucket}/*"]},
                },
            },
            *state_access(bucket_arn, key_arn, write=False),
            guard_statement,
        ],
    }


def canary_policy(stack: str, guard_statement: dict[str, Any]) -> dict[str, Any]:
    """PromQL on the stack's workspace, found by its tags (every resource of a stack carries
    ``project`` and ``stack``: infra/naming.py)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "QueryTheStacksWorkspace",
                "Effect": "Allow",
                "Action": [
                    "aps:GetLabels",
                    "aps:GetMetricMetadata",
                    "aps:GetSeries",
                    "aps:QueryMetrics",
                ],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {
                        "aws:ResourceTag/project": "tfserving-eks",
                        "aws:ResourceTag/stack": stack,
                    }
                },
            },
            guard_statement,
        ],
    }


def log_delivery_policy(logs_arn: str, source_arn: str, account: str) -> dict[str, Any]:
    """Only the S3 logging service may write the logs, for the state bucket of this account;
    TLS only."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "S3ServerAccessLogs",
                "Effect": "Allow",
                "Principal": {"Service": "logging.s3.amazonaws.com"},
                "Action": "s3:PutObject",
                "Resource": f"{logs_arn}/*",
                "Condition": {
                    "ArnLike": {"aws:SourceArn": source_arn},
                    "StringEquals": {"aws:SourceAccount": account},
                },
            },
            {
                "Sid": "TlsOnly",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [logs_arn, f"{logs_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ],
    }


def read_deploy_policy(synth_dir: Path, stack: str) -> dict[str, Any]:
    path = synth_dir / stack / "deploy-policy.json"
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise BootstrapError(
            f"{path} is missing: run `python -m infra.synth --stack {stack}` in the repository "
            "root first (it writes the deploy role's policy), then pulumi up here again"
        ) from None
    except json.JSONDecodeError as exc:
        raise BootstrapError(f"{path} is not JSON ({exc}): run the synth again") from None
    if not isinstance(document, dict) or not document.get("Statement"):
        raise BootstrapError(f"{path} holds no policy statements: run the synth again")
    return document


def inline_size(*documents: dict[str, Any]) -> int:
    """Characters IAM counts against INLINE_POLICY_LIMIT (whitespace excluded)."""
    return sum(len("".join(json.dumps(d).split())) for d in documents)


def _json(build: Any, *inputs: Any) -> pulumi.Output[str]:
    return pulumi.Output.all(*inputs).apply(lambda a: json.dumps(build(*a), sort_keys=True))


def build(settings: AccountSettings, root: Path) -> dict[str, Any]:
    """Declares everything; returns the outputs (role ARNs by job, state URL, secrets provider)."""
    identity = aws.get_caller_identity_output()
    region = aws.get_region_output().region
    key = aws.kms.Key(
        "state-key",
        description="Pulumi state and stack secrets of tfserving-eks",
        enable_key_rotation=True,
        deletion_window_in_days=30,
        tags=TAGS,
        opts=pulumi.ResourceOptions(protect=True),
    )
    alias = aws.kms.Alias(
        "state-key-alias", name=f"alias/{settings.name_prefix}-pulumi-state", target_key_id=key.id
    )
    bucket = aws.s3.Bucket(
        "state", force_destroy=False, tags=TAGS, opts=pulumi.ResourceOptions(protect=True)
    )
    here = pulumi.ResourceOptions(parent=bucket)
    aws.s3.BucketVersioning(
        "state-versioning",
        bucket=bucket.id,
        versioning_configuration={"status": "Enabled"},
        opts=here,
    )
    aws.s3.BucketServerSideEncryptionConfiguration(
        "state-encryption",
        bucket=bucket.id,
        rules=[
            {
                "apply_server_side_encryption_by_default": {
                    "sse_algorithm": "aws:kms",
                    "kms_master_key_id": key.arn,
                },
                "bucket_key_enabled": True,
            }
        ],
        opts=here,
    )
    aws.s3.BucketPublicAccessBlock(
        "state-public-access",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=here,
    )
    aws.s3.BucketOwnershipControls(
        "state-ownership",
        bucket=bucket.id,
        rule={"object_ownership": "BucketOwnerEnforced"},
        opts=here,
    )
    # Server access logs of the state bucket (who read or wrote which stack's state), in a
    # bucket of their own: SSE-S3 (log delivery cannot write SSE-KMS), expiring, written only by
    # the S3 logging service for this bucket (S3 user guide, "Enabling Amazon S3 server access
    # logging": the logging.s3.amazonaws.com grant with aws:SourceArn and aws:SourceAccount).
    logs = aws.s3.Bucket(
        "state-logs", force_destroy=False, tags=TAGS, opts=pulumi.ResourceOptions(protect=True)
    )
    in_logs = pulumi.ResourceOptions(parent=logs)
    aws.s3.BucketServerSideEncryptionConfiguration(
        "state-logs-encryption",
        bucket=logs.id,
        rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
        opts=in_logs,
    )
    aws.s3.BucketPublicAccessBlock(
        "state-logs-public-access",
        bucket=logs.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=in_logs,
    )
    aws.s3.BucketOwnershipControls(
        "state-logs-ownership",
        bucket=logs.id,
        rule={"object_ownership": "BucketOwnerEnforced"},
        opts=in_logs,
    )
    aws.s3.BucketLifecycleConfiguration(
        "state-logs-lifecycle",
        bucket=logs.id,
        rules=[
            {
                "id": "expire-access-logs",
                "status": "Enabled",
                "filter": {"prefix": ""},
                "expiration": {"days": LOG_RETENTION_DAYS},
            }
        ],
        opts=in_logs,
    )
    aws.s3.BucketPolicy(
        "state-logs-policy",
        bucket=logs.id,
        policy=_json(log_delivery_policy, logs.arn, bucket.arn, identity.account_id),
        opts=in_logs,
    )
    aws.s3.BucketLogging(
        "state-logging",
        bucket=bucket.id,
        target_bucket=logs.id,
        target_prefix="state/",
        opts=here,
    )
    aws.s3.BucketPolicy(
        "state-tls-only",
        bucket=bucket.id,
        policy=_json(
            lambda arn: {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "TlsOnly",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": [arn, f"{arn}/*"],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    }
                ],
            },
            bucket.arn,
        ),
        opts=here,
    )
    if settings.create_github_oidc_provider:
        provider_arn: pulumi.Output[str] = aws.iam.OpenIdConnectProvider(
            "github",
            url=f"https://{GITHUB_OIDC_HOST}",
            client_id_lists=[STS_AUDIENCE],
            tags=TAGS,
        ).arn
    else:
        provider_arn = aws.iam.get_open_id_connect_provider_output(
            url=f"https://{GITHUB_OIDC_HOST}"
        ).arn
    if settings.create_spot_service_linked_role:
        aws.iam.ServiceLinkedRole("spot", aws_service_name="spot.amazonaws.com")

    role_prefix = pulumi.Output.concat(
        "arn:aws:iam::", identity.account_id, f":role/{settings.name_prefix}-"
    )
    guarded = pulumi.Output.all(role_prefix, provider_arn).apply(lambda a: guard(*a))
    roles: dict[str, pulumi.Output[str]] = {}

    def role(
        job: str,
        stack: str,
        subject: str,
        inline: pulumi.Output[str],
        managed: tuple[str, ...] = (),
        hours: int = 1,
    ) -> None:
        name = settings.role_name(job, stack)
        created = aws.iam.Role(
            name,
            name=name,  # a contract: the stack files and workflow variables name it
            assume_role_policy=_json(
                lambda arn: github_trust(arn, settings.github_repository, subject), provider_arn
            ),
            max_session_duration=hours * 3600,
            tags={**TAGS, "job": job},
        )
        aws.iam.RolePolicy(f"{name}-policy", role=created.name, policy=inline)
        for arn in managed:
            aws.iam.RolePolicyAttachment(
                f"{name}-{arn.rsplit('/', 1)[-1]}", role=created.name, policy_arn=arn
            )
        roles[name] = created.arn

    role(
        "previewer",
        "",
        "pull_request",
        _json(preview_policy, bucket.arn, key.arn, guarded),
        managed=(READ_ONLY_ACCESS,),
    )
    synth_dir = (root / settings.synth_dir).resolve()
    for stack in settings.stacks:
        generated = read_deploy_policy(synth_dir, stack)
        extras = _json(deploy_extras, bucket.arn, key.arn, guarded)
        inline = extras.apply(lambda e, g=generated: _merge(g, json.loads(e)))
        role(
            "deployer",
            stack,
            f"environment:{stack}",
            inline,
            hours=settings.deploy_session_hours,
        )
        role(
            "canary-gate",
            stack,
            f"environment:{stack}",
            guarded.apply(lambda g, s=stack: json.dumps(canary_policy(s, g), sort_keys=True)),
        )
        if stack in settings.model_buckets:
            role(
                "publisher",
                stack,
                f"environment:{stack}",
                _json(
                    lambda r, b, k, g, m=settings.model_buckets[stack]: publish_policy(
                        m, r, b, k, g
                    ),
                    region,
                    bucket.arn,
                    key.arn,
                    guarded,
                ),
            )
    return {
        "stateBackendUrl": pulumi.Output.concat("s3://", bucket.id),
        "secretsProvider": pulumi.Output.concat("awskms://", alias.name),
        "githubOidcProviderArn": provider_arn,
        "roles": roles,
    }


def _merge(generated: dict[str, Any], extras: dict[str, Any]) -> str:
    """One inline document: the generated statements, then the extras; refused over IAM's size
    limit (the message names it) rather than failing half-way through ``up``."""
    merged = {"Version": "2012-10-17", "Statement": [*generated["Statement"], *extras["Statement"]]}
    size = inline_size(merged)
    if size > INLINE_POLICY_LIMIT:
        raise BootstrapError(
            f"the deploy role's policy is {size} characters, over IAM's {INLINE_POLICY_LIMIT} "
            "for a role's inline policies: split ACTIONS in infra/deploy_policy.py by service "
            "into managed policies"
        )
    return json.dumps(merged, sort_keys=True)


def main() -> None:
    config = pulumi.Config()
    values: dict[str, Any] = {}
    for key in KEYS:
        raw = config.get(key)
        if raw is not None:
            values[key] = raw if key in TEXT_KEYS else json.loads(raw)
    try:
        outputs = build(parse(values), Path(__file__).resolve().parent)
    except (AccountSettingsError, BootstrapError) as exc:
        raise pulumi.RunError(str(exc)) from None
    for name, value in outputs.items():
        pulumi.export(name, value)
