"""Monitoring rules: start from a known-good resource, change one field, assert the message."""

from __future__ import annotations

import json

import pytest

from policies.rules import monitoring
from tests.policies.support import messages, mutate

TOPIC = {"kmsMasterKeyId": "arn:aws:kms:eu-west-1:1:key/k"}
PUBLISH = {
    "Effect": "Allow",
    "Principal": {"Service": "aps.amazonaws.com"},
    "Action": ["sns:Publish"],
    "Resource": "arn:aws:sns:eu-west-1:1:alerts",
    "Condition": {"ArnEquals": {"aws:SourceArn": "arn:aws:aps:eu-west-1:1:workspace/ws-1"}},
}
ROLE = {
    "metadata": {"name": "aps-collector-role"},
    "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
}


def topic_policy(*statements: dict) -> dict:
    return {"arn": "arn", "policy": json.dumps({"Version": "2012-10-17", "Statement": statements})}


def test_known_good_resources_pass() -> None:
    assert messages(monitoring.sns_topic_encrypted, monitoring.TOPIC, TOPIC) == []
    assert (
        messages(
            monitoring.sns_topic_scoped_publishers, monitoring.TOPIC_POLICY, topic_policy(PUBLISH)
        )
        == []
    )
    assert messages(monitoring.amp_scraper_read_only, monitoring.CLUSTER_ROLE, ROLE) == []


def test_unencrypted_topic_is_refused() -> None:
    assert messages(monitoring.sns_topic_encrypted, monitoring.TOPIC, {}) == [
        "kmsMasterKeyId must be set: alert messages are encrypted at rest (SSE-KMS)."
    ]


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        (
            {**PUBLISH, "Condition": {}},
            "A service principal may publish only with an aws:SourceArn or aws:SourceAccount "
            "condition (confused-deputy protection).",
        ),
        (
            {**PUBLISH, "Principal": "*"},
            'A topic policy statement allows Principal "*": name the publishing service.',
        ),
    ],
)
def test_topic_publishers_must_be_scoped(statement: dict, message: str) -> None:
    found = messages(
        monitoring.sns_topic_scoped_publishers, monitoring.TOPIC_POLICY, topic_policy(statement)
    )
    assert found == [message]


def test_a_deny_statement_needs_no_scope() -> None:
    deny = {**PUBLISH, "Effect": "Deny", "Principal": "*", "Condition": {}}
    assert (
        messages(
            monitoring.sns_topic_scoped_publishers, monitoring.TOPIC_POLICY, topic_policy(deny)
        )
        == []
    )


@pytest.mark.parametrize(
    "rule",
    [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "create"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["*"], "verbs": ["list"]},
    ],
)
def test_the_scraper_role_only_reads(rule: dict) -> None:
    role = mutate(ROLE, lambda r: r["rules"].append(rule))
    (found,) = messages(monitoring.amp_scraper_read_only, monitoring.CLUSTER_ROLE, role)
    assert found.startswith("aps-collector-role may only get/list/watch named resources")


def test_other_cluster_roles_are_not_this_rules_business() -> None:
    other = mutate(ROLE, lambda r: r["metadata"].update(name="cluster-autoscaler"))
    other["rules"][0]["verbs"] = ["*"]
    assert messages(monitoring.amp_scraper_read_only, monitoring.CLUSTER_ROLE, other) == []
