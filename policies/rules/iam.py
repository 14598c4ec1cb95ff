"""IAM rules: IRSA trust pinning, S3 least privilege for pod roles, no S3 on node roles.

A role's permissions come from its `inlinePolicies`, from RolePolicy resources and from
RolePolicyAttachment resources (of a Policy in the stack, or of an AWS-managed policy ARN);
stack rules join those to the role through property dependencies on `role` and `policyArn`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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
    parse_document,
    resources_of,
    statements,
)

ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
POLICY = "aws:iam/policy:Policy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"

WEB_IDENTITY = "sts:assumerolewithwebidentity"
STS_AUDIENCE = "sts.amazonaws.com"
# What a pod that only reads models needs; everything else in s3:* can change or delete data.
S3_READ_ACTIONS = frozenset({"s3:getobject", "s3:getobjectversion", "s3:listbucket"})
AWS_MANAGED_S3 = "arn:aws:iam::aws:policy/AmazonS3"


def _trust(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != ROLE:
        return
    document = parse_document(get(args.props, "assumeRolePolicy"))
    if document is None:
        report("assumeRolePolicy is not a JSON policy document.")
        return
    for index, statement in enumerate(statements(document)):
        if get(statement, "Effect") != "Allow" or WEB_IDENTITY not in actions(statement):
            continue
        sid = get(statement, "Sid", default=f"#{index}")
        equals = get(statement, "Condition", "StringEquals", default={})
        sub = [v for k, v in equals.items() if str(k).endswith(":sub")]
        aud = [v for k, v in equals.items() if str(k).endswith(":aud")]
        if not sub or any("*" in str(v) or "?" in str(v) for v in as_list(sub[0])):
            report(
                f"Statement {sid} must pin <issuer>:sub with StringEquals to one "
                "system:serviceaccount:<namespace>:<name>, without wildcards."
            )
        if as_list(aud[0] if aud else None) != [STS_AUDIENCE]:
            report(f"Statement {sid} must pin <issuer>:aud with StringEquals to {STS_AUDIENCE}.")


iam_irsa_trust_pinned = ResourceValidationPolicy(
    name="iam-irsa-trust-pinned",
    description="IRSA role trust is pinned to one service account (sub) and to STS (aud).",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_trust,
)


def _documents_of(args: ResourceValidationArgs) -> list[tuple[str, Any]]:
    if args.resource_type in (ROLE_POLICY, POLICY):
        return [("policy", get(args.props, "policy"))]
    if args.resource_type == ROLE:
        return [
            (f"inlinePolicies[{i}]", get(p, "policy"))
            for i, p in enumerate(as_list(get(args.props, "inlinePolicies")))
        ]
    return []


def _is_s3(action: str) -> bool:
    return action.startswith("s3:") or action == "*"


def _wildcards(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, text in _documents_of(args):
        document = parse_document(text)
        if document is None:
            report(f"{where} is not a JSON policy document.")
            continue
        for index, statement in enumerate(statements(document)):
            if get(statement, "Effect") != "Allow":
                continue
            sid = get(statement, "Sid", default=f"#{index}")
            granted = actions(statement)
            broad = sorted({a for a in granted if a in ("*", "s3:*")})
            if broad:
                report(f"{where} statement {sid} allows {', '.join(broad)}: name the actions.")
            elif any(_is_s3(a) for a in granted) and "*" in resources_of(statement):
                report(
                    f'{where} statement {sid} allows S3 actions on Resource "*": name the '
                    "bucket and key prefix."
                )


iam_no_s3_wildcards = ResourceValidationPolicy(
    name="iam-no-s3-wildcards",
    description='No IAM policy allows "*" or "s3:*", or S3 actions on every resource.',
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_wildcards,
)


def _trust_document(role: PolicyResource) -> Mapping[str, Any] | None:
    return parse_document(get(role.props, "assumeRolePolicy"))


def _trusted_by(role: PolicyResource, check) -> bool:
    document = _trust_document(role)
    return document is not None and any(
        get(s, "Effect") == "Allow" and check(s) for s in statements(document)
    )


def is_irsa_role(role: PolicyResource) -> bool:
    return _trusted_by(role, lambda s: WEB_IDENTITY in actions(s))


def is_node_role(role: PolicyResource) -> bool:
    """A role EC2 instances assume: the instance role of worker nodes."""
    return _trusted_by(
        role,
        lambda s: "ec2.amazonaws.com" in as_list(get(s, "Principal", "Service")),
    )


def role_policies(
    resources: Sequence[PolicyResource], role: PolicyResource
) -> list[tuple[str, Any]]:
    """`(source, document-or-ARN)` for every policy granted to `role` in the stack.

    An attachment of a policy outside the stack yields its ARN string instead of a document.
    """
    found: list[tuple[str, Any]] = [
        (f"Role {role.name} inlinePolicies[{i}]", get(p, "policy"))
        for i, p in enumerate(as_list(get(role.props, "inlinePolicies")))
    ]
    for r in resources:
        if not any(d.urn == role.urn for d in deps(r, "role")):
            continue
        if r.resource_type == ROLE_POLICY:
            found.append((f"RolePolicy {r.name}", get(r.props, "policy")))
        elif r.resource_type == ATTACHMENT:
            policies = [d for d in deps(r, "policyArn") if d.resource_type == POLICY]
            for policy in policies:
                found.append((f"Policy {policy.name}", get(policy.props, "policy")))
            if not policies:
                found.append((f"RolePolicyAttachment {r.name}", get(r.props, "policyArn")))
    return found


def _s3_statements(document: Any) -> list[Mapping[str, Any]]:
    parsed = parse_document(document)
    if parsed is None:
        return []
    return [
        s
        for s in statements(parsed)
        if get(s, "Effect") == "Allow" and any(_is_s3(a) for a in actions(s))
    ]


def _reader_problems(source: str, document: Any) -> list[str]:
    problems = []
    for statement in _s3_statements(document):
        extra = sorted(a for a in actions(statement) if _is_s3(a) and a not in S3_READ_ACTIONS)
        if extra:
            problems.append(
                f"{source} allows {', '.join(extra)}: a model reader may only "
                "s3:GetObject/s3:GetObjectVersion/s3:ListBucket."
            )
        granted = actions(statement)
        if any(a.startswith("s3:getobject") for a in granted):
            # `arn:aws:s3:::bucket/models/name/*` names a prefix; `bucket/*` is the whole bucket.
            keys = [r.split(":::", 1)[-1].partition("/")[2] for r in resources_of(statement)]
            if any(k in ("", "*") for k in keys):
                problems.append(
                    f"{source} reads objects of the whole bucket: name the model prefix."
                )
        if (
            "s3:listbucket" in granted
            and get(statement, "Condition", "StringLike", "s3:prefix") is None
        ):
            problems.append(
                f"{source} lists the whole bucket: add a StringLike s3:prefix condition."
            )
    return problems


def _reader_read_only(args: StackValidationArgs, report: ReportViolation) -> None:
    for role in (r for r in args.resources if r.resource_type == ROLE):
        if not judge(lambda r=role: is_irsa_role(r)):
            continue
        for source, document in judge(lambda r=role: role_policies(args.resources, r)) or []:
            for problem in judge(lambda s=source, d=document: _reader_problems(s, d)) or []:
                report(f"IRSA role {role.name}: {problem}", role.urn)


iam_reader_read_only = StackValidationPolicy(
    name="iam-irsa-s3-read-only",
    description="Pod (IRSA) roles only read S3 objects under a named prefix, never write.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_reader_read_only,
)


def _node_no_s3(args: StackValidationArgs, report: ReportViolation) -> None:
    for role in (r for r in args.resources if r.resource_type == ROLE):
        if not judge(lambda r=role: is_node_role(r)):
            continue
        for source, document in judge(lambda r=role: role_policies(args.resources, r)) or []:
            if isinstance(document, str) and document.startswith(AWS_MANAGED_S3):
                granted = True
            else:
                granted = bool(judge(lambda d=document: _s3_statements(d)))
            if granted:
                report(
                    f"Node role {role.name} gets S3 access from {source}: nodes must not read "
                    "the model bucket; only the model reader's IRSA role may.",
                    role.urn,
                )


iam_node_role_no_s3 = StackValidationPolicy(
    name="iam-node-role-no-s3",
    description="The worker node role has no S3 permissions.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_node_no_s3,
)

POLICIES = [iam_irsa_trust_pinned, iam_no_s3_wildcards, iam_reader_read_only, iam_node_role_no_s3]
