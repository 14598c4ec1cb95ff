"""The deploy role's policy: generated from what each stack declares, in every compute mode,
covering every type and data source, linted by parliament."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from infra import capture, deploy_policy
from infra.capture import StackCapture
from tests.infra.conftest import COMPUTE_MODES, STACKS

# What parliament (default auditors) may say of a deploy role, and why each is not a defect:
# - RESOURCE_STAR: the program's roles, buckets, keys, repositories and groups are auto-named by
#   Pulumi (a random suffix) and created by this role, so no ARN exists to name beforehand;
# - RESOURCE_POLICY_PRIVILEGE_ESCALATION: the role writes bucket policies (the model bucket's
#   TLS-only policy) without object access, which parliament reads as a way to grant itself that
#   access. Bucket policies are declared in the program and reviewed in each pull request.
EXPECTED_FINDINGS = {"RESOURCE_STAR", "RESOURCE_POLICY_PRIVILEGE_ESCALATION"}


def _records(cap: StackCapture) -> list[dict[str, Any]]:
    return [r.as_dict() for r in cap.resources]


def _actions(document: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for statement in document["Statement"]:
        action = statement["Action"]
        found.update([action] if isinstance(action, str) else action)
    return found


@pytest.fixture(scope="module")
def every_mode(mode_captures: Callable[[str, str], StackCapture]) -> list[StackCapture]:
    return [mode_captures(stack, mode) for stack in STACKS for mode in COMPUTE_MODES]


def test_every_declared_type_is_covered_in_every_mode(every_mode: list[StackCapture]) -> None:
    for cap in every_mode:
        types = deploy_policy.custom_types(_records(cap))
        uncovered = [
            t
            for t in types
            if t not in deploy_policy.ACTIONS and not t.startswith(deploy_policy.NO_IAM_PREFIXES)
        ]
        assert not uncovered, (cap.stack, uncovered)
        document = deploy_policy.policy_document(_records(cap))
        for t in types:
            assert set(deploy_policy.ACTIONS.get(t, ())) <= _actions(document), t


def test_a_type_the_map_does_not_cover_is_refused() -> None:
    records = [{"type": "aws:rds/instance:Instance", "custom": True}]
    with pytest.raises(deploy_policy.UncoveredTypeError) as err:
        deploy_policy.policy_document(records)
    assert str(err.value).startswith(
        "no IAM actions known for aws:rds/instance:Instance: add what its create, read, update "
        "and delete call to infra/deploy_policy.py"
    )
    with pytest.raises(deploy_policy.UncoveredTypeError, match="aws:index/getAmi:getAmi"):
        deploy_policy.actions_for([], invokes=["aws:index/getAmi:getAmi"])


def test_every_data_source_the_program_calls_is_covered(monkeypatch: pytest.MonkeyPatch) -> None:
    called: set[str] = set()
    original = capture._Mocks.call

    def recording(self: Any, args: Any) -> Any:
        called.add(args.token)
        return original(self, args)

    monkeypatch.setattr(capture._Mocks, "call", recording)
    for stack in STACKS:
        capture.capture_stack(stack)
    assert called and called <= set(deploy_policy.INVOKES), called - set(deploy_policy.INVOKES)
    # The program reads no secret: nothing of Secrets Manager in any invoke or grant.
    assert not any("secretsmanager" in t for t in called)
    assert not any(a.startswith("secretsmanager:") for a in deploy_policy.actions_for([]))


def test_scoped_grants(captures: dict[str, StackCapture]) -> None:
    document = deploy_policy.policy_document(_records(captures["prod"]))
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    passing = by_sid["PassStackRolesToEksAndEc2"]
    assert passing["Action"] == "iam:PassRole"
    assert passing["Condition"] == {
        "StringEquals": {"iam:PassedToService": ["ec2.amazonaws.com", "eks.amazonaws.com"]}
    }
    linked = by_sid["ServiceLinkedRolesOfUsedServices"]["Condition"]["StringEquals"]
    assert "spot.amazonaws.com" in linked["iam:AWSServiceName"]
    unscoped = by_sid["DeclaredResources"]["Action"]
    assert "iam:PassRole" not in unscoped and "iam:CreateServiceLinkedRole" not in unscoped


@pytest.mark.parametrize("stack", STACKS)
def test_parliament_finds_nothing_unexpected(captures: dict[str, StackCapture], stack: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # parliament imports pkg_resources
        from parliament import analyze_policy_string

    document = json.dumps(deploy_policy.policy_document(_records(captures[stack])))
    findings = analyze_policy_string(document).findings
    unexpected = [(f.issue, f.detail) for f in findings if f.issue not in EXPECTED_FINDINGS]
    # UNKNOWN_ACTION, UNKNOWN_PREFIX, MALFORMED, RESOURCE_MISMATCH, ... would land here.
    assert not unexpected


def test_the_scaling_query_right_is_the_workloads_not_the_deployers(
    captures: dict[str, StackCapture],
) -> None:
    # Each model's scaling role (infra/components/scaling.py) may run PromQL queries on the
    # stack's workspace; the deploy role creates that role and its inline policy (iam:CreateRole,
    # iam:PutRolePolicy) but never holds the right itself. The query policy lints clean too.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from parliament import analyze_policy_string

    for stack, cap in captures.items():
        inline = {
            r.name: r.inputs["policy"]
            for r in cap.resources
            if r.type == "aws:iam/rolePolicy:RolePolicy" and r.name.endswith("-scaling-query")
        }
        assert inline, stack  # the committed stacks' models scale on request signals
        for name, text in inline.items():
            assert _actions(json.loads(text)) == {"aps:QueryMetrics"}, name
            assert analyze_policy_string(text).findings == [], name
        deployer = _actions(deploy_policy.policy_document(_records(cap)))
        assert "aps:QueryMetrics" not in deployer
        assert {"iam:CreateRole", "iam:PutRolePolicy"} <= deployer


def test_a_misspelt_action_is_what_parliament_catches() -> None:
    # The lint above can fail: an action AWS does not define is reported.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from parliament import analyze_policy_string

    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "eks:CreateClusters", "Resource": "*"}],
    }
    issues = {f.issue for f in analyze_policy_string(json.dumps(policy)).findings}
    assert "UNKNOWN_ACTION" in issues


def test_synth_writes_the_policy_beside_its_plan(tmp_path, captures) -> None:
    from infra import synth

    out = tmp_path / "dev"
    assert synth.main(["--stack", "dev", "--out", str(out)]) == 0
    written = json.loads((out / "deploy-policy.json").read_text())
    records = json.loads((out / "resources.json").read_text())
    assert written == deploy_policy.policy_document(records)
    assert written == deploy_policy.policy_document(_records(captures["dev"]))
