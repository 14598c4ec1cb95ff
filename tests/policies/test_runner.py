"""The offline runner: config resolution as the engine does it, unknown values, the
dependency join, record checks and the CLI."""

from __future__ import annotations

import json

import pytest
from pulumi_policy.proxy import UNKNOWN_BOOLEAN_VALUE, UNKNOWN_STRING_VALUE

from policies.rules import ecr, nodes, s3
from policies.runner import (
    PolicyConfigError,
    ResourceRecordError,
    main,
    property_dependencies,
    resolve_config,
    run_pack,
)
from tests.policies.support import record

REPO = "aws:ecr/repository:Repository"
BAD_REPO = record(REPO, "sync", {"imageTagMutability": "MUTABLE"})
ECR = ecr.POLICIES


def levels(config) -> list[tuple[str, str]]:
    return [(r.policy, r.level) for r in run_pack([BAD_REPO], config, policies=ECR)]


def test_levels_follow_policy_then_all_then_default() -> None:
    assert levels({}) == [
        ("ecr-immutable-tags", "mandatory"),
        ("ecr-scan-on-push", "advisory"),
    ]
    assert levels({"all": "advisory"}) == [
        ("ecr-immutable-tags", "advisory"),
        ("ecr-scan-on-push", "advisory"),
    ]
    assert levels({"all": {"enforcementLevel": "mandatory"}, "ecr-scan-on-push": "advisory"}) == [
        ("ecr-immutable-tags", "mandatory"),
        ("ecr-scan-on-push", "advisory"),
    ]
    assert levels({"ecr-immutable-tags": {"enforcementLevel": "disabled"}}) == [
        ("ecr-scan-on-push", "advisory"),
    ]
    # pulumi-policy reports remediate-level violations as mandatory.
    assert levels({"ecr-scan-on-push": "remediate"})[1] == ("ecr-scan-on-push", "mandatory")


def test_schema_defaults_reach_get_config() -> None:
    resolved = resolve_config({"nodes-max-size": {}}, [nodes.nodes_max_size])
    assert resolved["nodes-max-size"].config == {"maxNodes": nodes.DEFAULT_MAX_NODES}
    resolved = resolve_config({"nodes-max-size": {"maxNodes": 4}}, [nodes.nodes_max_size])
    assert resolved["nodes-max-size"].config == {"maxNodes": 4}


def test_config_problems_are_reported_together() -> None:
    config = {
        "all": {"enforcementLevel": "strict"},
        "no-such-rule": "mandatory",
        "nodes-max-size": {"maxNodes": "ten", "maxNode": 3},
        "nodes-gpu-instance-types": 7,
    }
    with pytest.raises(PolicyConfigError) as raised:
        resolve_config(config, nodes.POLICIES)
    assert str(raised.value).splitlines() == [
        "invalid policy config:",
        "  unknown policies no-such-rule (not in this pack)",
        "  all: enforcementLevel 'strict' is not one of advisory, mandatory, remediate, disabled",
        "  nodes-gpu-instance-types: must be an enforcement level or an object",
        "  nodes-max-size: Additional properties are not allowed ('maxNode' was unexpected)",
        "  nodes-max-size.maxNodes: 'ten' is not of type 'integer'",
    ]


def test_unknown_values_cannot_be_judged() -> None:
    unknown = record(REPO, "sync", {"imageTagMutability": UNKNOWN_STRING_VALUE})
    results = run_pack([unknown], {}, policies=[ecr.ecr_immutable_tags])
    assert [(r.level, r.message) for r in results] == [
        (
            "advisory",
            "can't run policy 'ecr-immutable-tags' from policy pack 'tfserving-eks' during "
            "preview: string value at .imageTagMutability can't be known during preview",
        )
    ]
    # A stack rule skips the unknown value instead of failing the bucket.
    bucket = record("aws:s3/bucket:Bucket", "models", {}, id_="models-1")
    block = record(
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "models-block",
        {"bucket": "models-1", **{f: True for f in s3.PUBLIC_ACCESS_FLAGS}},
    )
    block["inputs"]["blockPublicPolicy"] = UNKNOWN_BOOLEAN_VALUE
    assert run_pack([bucket, block], {}, policies=[s3.s3_public_access_blocked]) == []


def test_property_dependencies_join() -> None:
    role = record("aws:iam/role:Role", "reader", {})
    key = record("aws:kms/key:Key", "key", {}, id_="k-1")
    key["outputs"] = {"arn": "arn:aws:kms:eu-west-1:111122223333:key/k-1"}
    user = record(
        "aws:iam/rolePolicy:RolePolicy",
        "reader",
        {
            "role": "reader-0a1b2c3",  # auto-name of the role (and of this policy's own name)
            "policy": {"Statement": [{"Resource": "arn:aws:kms:eu-west-1:111122223333:key/k-1"}]},
            "provider": role["urn"],
            "other": "reader-notahex",
        },
    )
    deps = property_dependencies([role, key, user])
    assert deps[user["urn"]] == {
        "role": [role["urn"]],
        "policy": [key["urn"]],
        "provider": [role["urn"]],
    }
    assert deps[role["urn"]] == {}


def test_bad_records_are_named() -> None:
    with pytest.raises(ResourceRecordError) as raised:
        run_pack([{"urn": "u", "type": "t"}, "x", {**BAD_REPO, "inputs": []}, BAD_REPO], {})
    assert str(raised.value).splitlines() == [
        "invalid resource records:",
        "  record 0 (u) lacks name, inputs",
        "  record 1 is not an object",
        f"  record 2 ({BAD_REPO['urn']}): inputs must be an object",
        f"  record 3 repeats urn {BAD_REPO['urn']}",
    ]


def test_cli_exit_codes(tmp_path, capsys) -> None:
    resources = tmp_path / "resources.json"
    config = tmp_path / "config.json"
    resources.write_text(json.dumps([BAD_REPO]))
    config.write_text("{}")
    assert main(["--resources", str(resources), "--config", str(config)]) == 1
    out = capsys.readouterr()
    assert f"[mandatory] ecr-immutable-tags {BAD_REPO['urn']}" in out.out
    assert "2 violation(s), 1 mandatory" in out.err

    config.write_text(json.dumps({"ecr-immutable-tags": "advisory"}))
    assert main(["--resources", str(resources), "--config", str(config)]) == 0

    config.write_text('{"ecr-immutable-tags": "off"}')
    assert main(["--resources", str(resources), "--config", str(config)]) == 2
    assert "enforcementLevel 'off'" in capsys.readouterr().err

    config.write_text("{broken")
    assert main(["--resources", str(resources), "--config", str(config)]) == 2
    assert f"cannot read policy config {config}" in capsys.readouterr().err
    assert main(["--resources", str(tmp_path / "missing.json"), "--config", str(config)]) == 2
