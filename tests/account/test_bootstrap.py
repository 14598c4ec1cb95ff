"""The account bootstrap under Pulumi's mocks: the state bucket and key, GitHub's OIDC provider and
one role per job, each trusting one token and holding what its job needs."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi.runtime import mocks, settings

from account import program
from account.settings import KEYS, AccountSettings, AccountSettingsError, parse
from infra import deploy_policy
from infra.capture import REPO_ROOT, _Mocks, _Monitor, _plain, capture_stack
from tests.infra.conftest import STACKS

REPO = "example-org/tfserving-eks"


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each stack's deploy-policy.json as synth writes it."""
    root = tmp_path_factory.mktemp("synth")
    for stack in STACKS:
        records = [r.as_dict() for r in capture_stack(stack).resources]
        (root / stack).mkdir()
        deploy_policy.write(root / stack / "deploy-policy.json", records)
    return root


class _Recorder(_Monitor):
    def __init__(self, mock: _Mocks) -> None:
        super().__init__(mock)
        self.protected: set[str] = set()

    def RegisterResource(self, request: Any) -> Any:
        if request.protect:
            self.protected.add(request.name)
        return super().RegisterResource(request)


def run(account: AccountSettings, root: Path) -> tuple[dict[str, dict[str, Any]], _Recorder]:
    """Runs ``program.build`` under mocks; resources by name (inputs), and the monitor."""
    monitor = _Recorder(_Mocks("account", "eu-west-1"))
    settings.reset_options(project="tfserving-eks-account", stack="account", preview=False)
    mocks.set_mocks(
        monitor.mocks, project="tfserving-eks-account", stack="account", monitor=monitor
    )
    try:
        mocks.test(lambda: pulumi.Output.from_input(program.build(account, root)))()
    finally:
        settings.reset_options(project="tfserving-eks", stack="dev")
    return {r.name: r.inputs for r in monitor.records}, monitor


@pytest.fixture(scope="module")
def bootstrap(synth_dir: Path) -> tuple[dict[str, dict[str, Any]], _Recorder]:
    account = AccountSettings(
        github_repository=REPO, synth_dir=str(synth_dir), model_buckets={"dev": "model-store-1"}
    )
    return run(account, synth_dir)


def _policy(resources: dict[str, dict[str, Any]], role: str) -> dict[str, Any]:
    return json.loads(resources[f"{role}-policy"]["policy"])


def _trust(resources: dict[str, dict[str, Any]], role: str) -> dict[str, str]:
    (statement,) = json.loads(resources[role]["assumeRolePolicy"])["Statement"]
    assert statement["Principal"]["Federated"].endswith(
        ":oidc-provider/" + program.GITHUB_OIDC_HOST
    )
    return statement["Condition"]["StringEquals"]


def test_state_bucket_and_key(bootstrap) -> None:
    resources, monitor = bootstrap
    assert {"state", "state-key"} <= monitor.protected
    assert resources["state-key"]["enableKeyRotation"] is True
    assert resources["state-versioning"]["versioningConfiguration"] == {"status": "Enabled"}
    (rule,) = resources["state-encryption"]["rules"]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    block = resources["state-public-access"]
    keys = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    assert all(block[k] is True for k in keys)
    (tls,) = json.loads(resources["state-tls-only"]["policy"])["Statement"]
    assert tls["Effect"] == "Deny" and tls["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}
    }
    assert resources["github"]["clientIdLists"] == ["sts.amazonaws.com"]
    assert resources["spot"]["awsServiceName"] == "spot.amazonaws.com"


def test_each_role_trusts_one_token(bootstrap) -> None:
    resources, _ = bootstrap
    audience = {f"{program.GITHUB_OIDC_HOST}:aud": "sts.amazonaws.com"}
    assert _trust(resources, "tfserving-previewer") == {
        **audience,
        f"{program.GITHUB_OIDC_HOST}:sub": f"repo:{REPO}:pull_request",
    }
    for stack in STACKS:
        for job in ("deployer", "canary-gate"):
            assert _trust(resources, f"tfserving-{stack}-{job}") == {
                **audience,
                f"{program.GITHUB_OIDC_HOST}:sub": f"repo:{REPO}:environment:{stack}",
            }
    # A publish role only where the stack's bucket is known (after its first up).
    assert "tfserving-dev-publisher" in resources and "tfserving-prod-publisher" not in resources


def test_the_preview_role_reads_without_secrets(bootstrap) -> None:
    resources, _ = bootstrap
    attached = [r["policyArn"] for n, r in resources.items() if n.startswith("tfserving-previewer-")
                and "policyArn" in r]  # fmt: skip
    assert attached == [program.READ_ONLY_ACCESS]
    statements = {s["Sid"]: s for s in _policy(resources, "tfserving-previewer")["Statement"]}
    assert statements["NoSecrets"]["Effect"] == "Deny"
    assert "secretsmanager:GetSecretValue" in statements["NoSecrets"]["Action"]
    assert statements["NoObjectDataButTheState"]["Effect"] == "Deny"
    allowed = [a for s in statements.values() if s["Effect"] == "Allow" for a in
               ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]  # fmt: skip
    assert not [a for a in allowed if a.endswith(("Put", "Create", "Delete")) or "Put" in a]


@pytest.mark.parametrize("stack", STACKS)
def test_the_deploy_role_holds_the_generated_policy(bootstrap, synth_dir, stack) -> None:
    resources, _ = bootstrap
    name = f"tfserving-{stack}-deployer"
    generated = json.loads((synth_dir / stack / "deploy-policy.json").read_text())
    statements = _policy(resources, name)["Statement"]
    for statement in generated["Statement"]:
        assert statement in statements
    assert program.inline_size(_policy(resources, name)) <= program.INLINE_POLICY_LIMIT
    guard = next(s for s in statements if s.get("Sid") == "NotTheBootstrapsOwnIam")
    assert guard["Effect"] == "Deny" and any(
        r.endswith(":role/tfserving-*") for r in guard["Resource"]
    )


def test_the_deploy_session_outlasts_the_deploy_job(bootstrap) -> None:
    # The deploy workflow asks for the role's whole session; a first prod up mirrors multi-GB GPU
    # images, so the session must outlast the job's timeout.
    resources, _ = bootstrap
    workflow = yaml.safe_load((REPO_ROOT / ".github/workflows/deploy.yml").read_text())
    for stack in STACKS:
        seconds = resources[f"tfserving-{stack}-deployer"]["maxSessionDuration"]
        assert seconds == AccountSettings.deploy_session_hours * 3600
        job = workflow["jobs"][stack]
        creds = next(s for s in job["steps"] if "configure-aws-credentials" in s.get("uses", ""))
        assert int(creds["with"]["role-duration-seconds"]) == seconds
        assert job["timeout-minutes"] * 60 < seconds


def test_publisher_writes_only_its_models(bootstrap) -> None:
    resources, _ = bootstrap
    statements = {s["Sid"]: s for s in _policy(resources, "tfserving-dev-publisher")["Statement"]}
    assert statements["WriteModels"]["Resource"] == "arn:aws:s3:::model-store-1/models/*"
    assert statements["ModelKeyThroughS3"]["Condition"]["StringEquals"] == {
        "kms:ViaService": "s3.eu-west-1.amazonaws.com"
    }


def test_policies_pass_parliament(bootstrap) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from parliament import analyze_policy_string

    resources, _ = bootstrap
    for name, inputs in resources.items():
        if name.endswith("-policy") and "policy" in inputs:
            findings = analyze_policy_string(inputs["policy"]).findings
            issues = {f.issue for f in findings} - {
                "RESOURCE_STAR",
                "RESOURCE_POLICY_PRIVILEGE_ESCALATION",
            }
            assert not issues, (name, [(f.issue, f.detail) for f in findings])


def test_a_missing_synth_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(program.BootstrapError) as err:
        program.read_deploy_policy(tmp_path, "dev")
    assert str(err.value) == (
        f"{tmp_path}/dev/deploy-policy.json is missing: run `python -m infra.synth --stack dev` "
        "in the repository root first (it writes the deploy role's policy), then pulumi up "
        "here again"
    )


def test_config_problems_are_listed_together() -> None:
    with pytest.raises(AccountSettingsError) as err:
        parse({"githubRepository": "nope", "deploySessionHours": 13, "color": "red"})
    message = str(err.value)
    assert "color: unknown key" in message
    assert "githubRepository: 'nope': give OWNER/REPO" in message
    assert "deploySessionHours: 13: IAM allows 1 to 12 hours" in message


def test_pulumi_yaml_declares_exactly_the_settings() -> None:
    declared = yaml.safe_load((REPO_ROOT / "account/Pulumi.yaml").read_text())["config"]
    assert set(declared) == set(KEYS)
    defaults = AccountSettings(github_repository=REPO)
    for key, spec in declared.items():
        if "default" in spec:
            value = getattr(defaults, KEYS[key])
            assert spec["default"] == (list(value) if isinstance(value, tuple) else value), key


def test_outputs_name_the_backend_and_secrets_provider(synth_dir) -> None:
    captured: dict[str, Any] = {}
    monitor = _Recorder(_Mocks("account", "eu-west-1"))
    settings.reset_options(project="tfserving-eks-account", stack="account", preview=False)
    mocks.set_mocks(
        monitor.mocks, project="tfserving-eks-account", stack="account", monitor=monitor
    )

    def body() -> pulumi.Output[Any]:
        outputs = program.build(AccountSettings(github_repository=REPO, synth_dir=str(synth_dir)),
                                synth_dir)  # fmt: skip
        return pulumi.Output.all(outputs["stateBackendUrl"], outputs["secretsProvider"]).apply(
            lambda a: captured.update(url=a[0], provider=a[1])
        )

    try:
        mocks.test(body)()
    finally:
        settings.reset_options(project="tfserving-eks", stack="dev")
    assert _plain(captured["url"]).startswith("s3://state-")
    assert captured["provider"] == "awskms://alias/tfserving-pulumi-state"


def test_the_policy_pack_passes_the_bootstrap(bootstrap) -> None:
    # The program's CrossGuard pack judges what the bootstrap declares too: the state bucket as
    # a data bucket (versioned, encrypted, private, TLS only, access-logged), the roles' policies
    # (no S3 wildcard: a deploy role's S3 actions name the stack's buckets).
    from policies.runner import run_pack

    resources, monitor = bootstrap
    assert list(run_pack([r.as_dict() for r in monitor.records], {})) == []
    buckets = next(
        s for s in _policy(resources, "tfserving-dev-deployer")["Statement"]
        if s.get("Sid") == "TheStacksBuckets"
    )  # fmt: skip
    assert "*" not in buckets["Resource"]
    assert resources["state-logging"]["targetPrefix"] == "state/"
