"""Monitoring rules: the metrics workspace and the alert topic are encrypted with a customer key,
only the workspace may publish alerts, and the managed scraper's Kubernetes role only reads."""

from __future__ import annotations

import json
from collections.abc import Mapping

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from ._helpers import get, is_list

WORKSPACE = "aws:amp/workspace:Workspace"
TOPIC = "aws:sns/topic:Topic"
TOPIC_POLICY = "aws:sns/topicPolicy:TopicPolicy"
CLUSTER_ROLE = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"
SCRAPER_ROLE = "aps-collector-role"
READ_VERBS = frozenset({"get", "list", "watch"})
SCOPING_KEYS = ("aws:sourcearn", "aws:sourceaccount")


def _workspace_kms(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == WORKSPACE and not get(args.props, "kmsKeyArn"):
        report("kmsKeyArn must name a customer-managed KMS key: metrics are encrypted with it.")


def _topic_kms(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == TOPIC and not get(args.props, "kmsMasterKeyId"):
        report("kmsMasterKeyId must be set: alert messages are encrypted at rest (SSE-KMS).")


def _statements(policy: object) -> list[Mapping]:
    if isinstance(policy, str):
        try:
            policy = json.loads(policy)
        except ValueError:
            return []
    found = get(policy, "Statement", default=[])
    if isinstance(found, Mapping):
        return [found]
    return [s for s in found if isinstance(s, Mapping)] if is_list(found) else []


def _topic_publishers(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != TOPIC_POLICY:
        return
    for statement in _statements(get(args.props, "policy")):
        if statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal")
        if principal == "*" or get(principal, "AWS") == "*":
            report('A topic policy statement allows Principal "*": name the publishing service.')
            continue
        if get(principal, "Service") is None:
            continue
        keys = {
            key.lower()
            for condition in (statement.get("Condition") or {}).values()
            if isinstance(condition, Mapping)
            for key in condition
        }
        if not keys & set(SCOPING_KEYS):
            report(
                "A service principal may publish only with an aws:SourceArn or "
                "aws:SourceAccount condition (confused-deputy protection)."
            )


def _scraper_read_only(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CLUSTER_ROLE or get(args.props, "metadata", "name") != SCRAPER_ROLE:
        return
    for rule in get(args.props, "rules", default=[]) or []:
        verbs = set(get(rule, "verbs", default=[]) or [])
        resources = set(get(rule, "resources", default=[]) or [])
        if not verbs <= READ_VERBS or "*" in resources or "secrets" in resources:
            report(
                f"{SCRAPER_ROLE} may only get/list/watch named resources, never secrets or '*' "
                f"(found verbs {sorted(verbs)} on {sorted(resources)})."
            )


amp_workspace_encrypted = ResourceValidationPolicy(
    name="amp-workspace-kms",
    description="Managed Prometheus workspaces are encrypted with a customer-managed KMS key.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_workspace_kms,
)
sns_topic_encrypted = ResourceValidationPolicy(
    name="sns-topic-kms",
    description="SNS topics encrypt messages at rest with KMS.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_topic_kms,
)
sns_topic_scoped_publishers = ResourceValidationPolicy(
    name="sns-topic-scoped-publishers",
    description="Topic policies allow no one to publish but named services scoped by source.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_topic_publishers,
)
amp_scraper_read_only = ResourceValidationPolicy(
    name="amp-scraper-read-only",
    description="The managed scraper's Kubernetes role only reads, and never secrets.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_scraper_read_only,
)

POLICIES = [
    amp_workspace_encrypted,
    sns_topic_encrypted,
    sns_topic_scoped_publishers,
    amp_scraper_read_only,
]
