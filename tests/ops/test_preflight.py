"""The read-only preflight, against botocore's Stubber (exact requests and answers) and a moto
server on 127.0.0.1 (AWS_ENDPOINT_URL is honoured). Every failure message is asserted.

The stacks' figures (region, versions, pools, zones, network ids) are read from the committed
stack files, so a legitimate config change keeps these green; what AWS answers is test data.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import socket
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.stub import Stubber

from infra import instances
from infra.capture import REPO_ROOT, stack_config
from infra.settings import Settings, settings_from_config
from ops import preflight, preflight_account
from ops.preflight_checks import (
    FAIL,
    PASS,
    SKIP,
    Context,
    check_addon_versions,
    check_caller,
    check_existing_network,
    check_gpu_quotas,
    check_image_digests,
    check_instance_types,
    check_kubernetes_version,
    check_log_group,
    check_placeholders,
    check_secrets_provider,
    check_state_backend,
    role_arn_of,
)
from ops.preflight_runner import check_api_reachable

ACCOUNT = "123456789012"
DIGEST = "@sha256:" + "ab" * 32


def _real_values(text: str) -> str:
    """The committed stack file with its documented placeholders replaced by real-looking ones."""
    return text.replace("111122223333", ACCOUNT).replace("203.0.113.0/24", "100.64.10.0/24")


def _committed(stack: str) -> Settings:
    return settings_from_config(stack, stack_config(stack, REPO_ROOT))


DEV, PROD = _committed("dev"), _committed("prod")
REGION = DEV.region
K8S = DEV.kubernetes_version
K8S_SUPPORT = instances.EKS_VERSIONS[K8S]
# A day well inside the version's standard support: no warning from the calendar.
TODAY = K8S_SUPPORT.end_of_standard - timedelta(days=instances.STANDARD_SUPPORT_WARNING_DAYS + 30)
DEPLOYER_ROLE = DEV.deployer_principal_arns[0].rsplit("/", 1)[-1]
DEPLOYER = f"arn:aws:sts::{ACCOUNT}:assumed-role/{DEPLOYER_ROLE}/ci-42"
ADDONS = dict(DEV.addon_versions)


def _pin_images(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Digest-pinned images everywhere (the values are test data, not real digests)."""
    doc = yaml.safe_load(path.read_text())
    doc["config"]["tfserving-eks:servingImage"] = f"tensorflow/serving:2.20.0{DIGEST}"
    doc["config"]["tfserving-eks:servingGpuImage"] = f"tensorflow/serving:2.20.0-gpu{DIGEST}"
    path.write_text(yaml.safe_dump(doc))
    from infra.components import cluster_autoscaler, device_plugin

    monkeypatch.setitem(cluster_autoscaler.IMAGE_TAGS, K8S, f"v{K8S}.1{DIGEST}")
    monkeypatch.setattr(
        device_plugin, "DEVICE_PLUGIN_IMAGE", f"{device_plugin.DEVICE_PLUGIN_IMAGE}{DIGEST}"
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "Pulumi.yaml").write_text((REPO_ROOT / "Pulumi.yaml").read_text())
    for stack in ("dev", "prod"):
        text = _real_values((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text())
        (tmp_path / f"Pulumi.{stack}.yaml").write_text(text)
    return tmp_path


def _context(root: Path, stack: str = "dev", **kw: Any) -> Context:
    settings = settings_from_config(stack, stack_config(stack, root))
    config = yaml.safe_load((root / f"Pulumi.{stack}.yaml").read_text())["config"]
    return Context(
        settings=settings, config=config, clients=kw.pop("clients", None), today=TODAY, **kw
    )


class Stubs:
    """Real boto3 clients with fake credentials, each behind a Stubber."""

    def __init__(self) -> None:
        self.clients: dict[str, Any] = {}
        self.stubbers: dict[str, Stubber] = {}

    def __call__(self, service: str) -> Any:
        return self.clients[service]

    def stub(self, service: str) -> Stubber:
        if service not in self.clients:
            client = boto3.client(
                service,
                region_name=REGION,
                aws_access_key_id="AKIDEXAMPLE",
                aws_secret_access_key="secret",
            )
            self.clients[service] = client
            self.stubbers[service] = Stubber(client)
            self.stubbers[service].activate()
        return self.stubbers[service]

    def verify(self) -> None:
        for stubber in self.stubbers.values():
            stubber.assert_no_pending_responses()


ALL_ZONES = tuple(f"{REGION}{letter}" for letter in "abcdef")  # what the region answers


def _zones(stubs: Stubs, names: tuple[str, ...] = ALL_ZONES) -> None:
    stubs.stub("ec2").add_response(
        "describe_availability_zones",
        {"AvailabilityZones": [{"ZoneName": n, "State": "available"} for n in names]},
    )


def _offerings(stubs: Stubs, pairs: list[tuple[str, str]]) -> None:
    stubs.stub("ec2").add_response(
        "describe_instance_type_offerings",
        {
            "InstanceTypeOfferings": [
                {"InstanceType": t, "Location": z, "LocationType": "availability-zone"}
                for t, z in pairs
            ]
        },
    )


DEV_TYPES = tuple(
    sorted({t for p in (DEV.system_node_pool, *DEV.gpu_node_pools) for t in p.instance_types})
)
DEV_ZONES = ALL_ZONES[: DEV.availability_zone_count]


def _all_offered(types=DEV_TYPES, zones=DEV_ZONES) -> list[tuple[str, str]]:
    return [(t, z) for t in types for z in zones]


def _vcpus(stubs: Stubs, types: dict[str, int]) -> None:
    stubs.stub("ec2").add_response(
        "describe_instance_types",
        {
            "InstanceTypes": [
                {"InstanceType": t, "VCpuInfo": {"DefaultVCpus": v}} for t, v in types.items()
            ]
        },
    )


VCPUS = 4  # what the stubbed DescribeInstanceTypes answers for every GPU type
# The quota of each (capacity type, family): AWS's codes, the rule under test.
QUOTAS = {
    ("ON_DEMAND", "g"): ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    ("SPOT", "g"): ("L-3819A6DF", "All G and VT Spot Instance Requests"),
}


def _gpu_vcpus(stubs: Stubs, settings: Settings) -> None:
    types = {t for p in settings.gpu_node_pools for t in p.instance_types}
    _vcpus(stubs, dict.fromkeys(sorted(types), VCPUS))


def _needs(settings: Settings) -> dict[tuple[str, str], int]:
    """vCPUs each quota must cover: every GPU pool at maxSize, VCPUS per node; under Auto Mode a
    SPOT pool falls back to on-demand, so it needs both quotas."""
    needs: dict[tuple[str, str], int] = {}
    for pool in settings.gpu_node_pools:
        kinds = {pool.capacity_type} | ({"ON_DEMAND"} if settings.auto_mode else set())
        for kind in kinds:
            key = (kind, pool.instance_types[0][0])
            needs[key] = needs.get(key, 0) + pool.max_size * VCPUS
    return dict(sorted(needs.items()))


def _instances(stubs: Stubs, instances: list[dict[str, Any]]) -> None:
    """DescribeInstances of the G/VT quota's running and pending instances."""
    stubs.stub("ec2").add_response(
        "describe_instances",
        {"Reservations": [{"Instances": instances}]},
        {
            "Filters": [
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
                {"Name": "instance-type", "Values": ["g*", "vt*"]},
            ]
        },
    )


def _instance(vcpus: int, spot: bool = False, tags: dict[str, str] | None = None) -> dict:
    found: dict[str, Any] = {
        "InstanceId": "i-0123456789abcdef0",
        "CpuOptions": {"CoreCount": vcpus // 2, "ThreadsPerCore": 2},
        "Tags": [{"Key": k, "Value": v} for k, v in (tags or {}).items()],
    }
    if spot:
        found["InstanceLifecycle"] = "spot"
    return found


def _quotas(stubs: Stubs, settings: Settings, spare: int, used: int = 0) -> list[str]:
    """Answer each quota the stack needs with its need plus ``spare`` (``used`` of it taken by
    other instances); the expected texts."""
    texts = []
    for key, need in _needs(settings).items():
        code, label = QUOTAS[key]
        _quota(stubs, code, float(need + spare))
        texts.append(
            f"{label} ({code}) {need + spare} vCPUs, {used} in use elsewhere: "
            f"{need + spare - used} free for {need}"
        )
    return texts


def _quota(stubs: Stubs, code: str, value: float) -> None:
    stubs.stub("service-quotas").add_response(
        "get_service_quota",
        {"Quota": {"QuotaCode": code, "Value": value}},
        {"ServiceCode": "ec2", "QuotaCode": code},
    )


def _addon_versions(stubs: Stubs, offered: dict[str, str]) -> None:
    for addon in sorted(offered):
        stubs.stub("eks").add_response(
            "describe_addon_versions",
            {"addons": [{"addonName": addon, "addonVersions": [{"addonVersion": offered[addon]}]}]},
            {"addonName": addon, "kubernetesVersion": K8S},
        )


# -- single checks -----------------------------------------------------------------------------


def test_role_arn_of_an_assumed_role_session() -> None:
    assert role_arn_of(DEPLOYER) == f"arn:aws:iam::{ACCOUNT}:role/tfserving-dev-deployer"
    user = f"arn:aws:iam::{ACCOUNT}:user/alice"
    assert role_arn_of(user) == user


def test_caller_must_hold_an_access_entry(root: Path) -> None:
    ok = check_caller(_context(root, caller_arn=DEPLOYER))
    assert ok.status == PASS
    stranger = f"arn:aws:sts::{ACCOUNT}:assumed-role/someone-else/s"
    bad = check_caller(_context(root, caller_arn=stranger))
    assert (bad.status, bad.detail) == (
        FAIL,
        f"arn:aws:iam::{ACCOUNT}:role/someone-else is not in deployerPrincipalArns or "
        "adminPrincipalArns: it would create the cluster and then get 401 on every Kubernetes "
        "object; add it to deployerPrincipalArns or run as a listed role",
    )


def test_placeholders_are_named_by_key() -> None:
    committed = _context(REPO_ROOT)
    result = check_placeholders(committed)
    assert result.status == FAIL
    assert result.detail == (
        "replace the example values in the stack file: tfserving-eks:adminPrincipalArns[0] (the "
        "example account 111122223333); tfserving-eks:deployRunner.cidrs[0] (the documentation "
        "range 203.0.113.0/24 (TEST-NET)); tfserving-eks:deployerPrincipalArns[0] (the example "
        "account 111122223333); tfserving-eks:modelEndpoint.allowedCidrs[0] (the documentation "
        "range 203.0.113.0/24 (TEST-NET)); tfserving-eks:modelEndpoint.certificateArn (the "
        "example account 111122223333); tfserving-eks:modelEndpoint.trustStoreArn (the example "
        "account 111122223333); tfserving-eks:publicAccessCidrs[0] (the documentation range "
        "203.0.113.0/24 (TEST-NET)); tfserving-eks:viewerPrincipalArns[0] (the example account "
        "111122223333)"
    )


def test_placeholders_in_the_policy_settings_are_named_too(root: Path) -> None:
    policy_config = json.loads((REPO_ROOT / "policies" / "config.dev.json").read_text())
    result = check_placeholders(_context(root, policy_config=policy_config))
    assert result.status == FAIL
    assert result.detail == (
        "replace the example values in the policy pack's settings (policies/config.<stack>.json): "
        "eks-endpoint-not-public.allowedCidrs[0] (the documentation range 203.0.113.0/24 "
        "(TEST-NET))"
    )


def test_no_placeholders_passes(root: Path) -> None:
    assert check_placeholders(_context(root)).status == PASS


def test_instance_type_missing_in_one_zone(root: Path) -> None:
    gone = (DEV.gpu_node_pools[0].instance_types[-1], DEV_ZONES[-1])
    stubs = Stubs()
    _zones(stubs)
    _offerings(stubs, [p for p in _all_offered() if p != gone])
    result = check_instance_types(_context(root, clients=stubs))
    stubs.verify()
    assert (result.status, result.detail) == (
        FAIL,
        f"not offered in {REGION}: {gone[0]} in {gone[1]}; pick types offered in every zone "
        "(aws ec2 describe-instance-type-offerings --location-type availability-zone)",
    )


def test_instance_types_offered_in_the_first_zones(root: Path) -> None:
    stubs = Stubs()
    _zones(stubs, tuple(reversed(ALL_ZONES)))
    _offerings(stubs, _all_offered())
    result = check_instance_types(_context(root, clients=stubs))
    assert result.status == PASS
    assert result.detail == f"{', '.join(DEV_TYPES)} offered in {', '.join(DEV_ZONES)}"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_gpu_quota_headroom_must_cover_the_pools_at_max_size(root: Path, stack: str) -> None:
    # Each quota (by capacity type and family) minus what other instances run, against the sum
    # of its pools at maxSize; the cluster's own nodes are part of its need, not of the use.
    settings = {"dev": DEV, "prod": PROD}[stack]
    kinds = {k for k, _ in _needs(settings)}
    stubs = Stubs()
    _gpu_vcpus(stubs, settings)
    others = [_instance(VCPUS, spot=(k == "SPOT")) for k in sorted(kinds)]
    _instances(stubs, others)
    short = _quotas(stubs, settings, spare=0, used=VCPUS)  # the others take one node's worth
    result = check_gpu_quotas(_context(root, stack, clients=stubs))
    stubs.verify()
    assert (result.status, result.detail) == (
        FAIL,
        f"too little headroom: {'; '.join(short)} (GPU pools at maxSize); request an increase "
        "in Service Quotas (aws service-quotas request-service-quota-increase), free capacity, "
        "or lower maxSize",
    )
    _gpu_vcpus(stubs, settings)
    own = {"eks:cluster-name": settings.cluster_name}
    _instances(stubs, [_instance(VCPUS, spot=(k == "SPOT"), tags=own) for k in sorted(kinds)])
    covered = _quotas(stubs, settings, spare=0)
    result = check_gpu_quotas(_context(root, stack, clients=stubs))
    stubs.verify()
    assert (result.status, result.detail) == (PASS, "; ".join(covered))


def test_auto_mode_spot_pools_need_the_on_demand_quota_too() -> None:
    assert DEV.auto_mode and {p.capacity_type for p in DEV.gpu_node_pools} == {"SPOT"}
    assert {k for k, _ in _needs(DEV)} == {"SPOT", "ON_DEMAND"}


def test_kubernetes_version_not_offered(root: Path) -> None:
    stubs = Stubs()
    stubs.stub("eks").add_response(
        "describe_cluster_versions", {"clusterVersions": []}, {"clusterVersions": [K8S]}
    )
    result = check_kubernetes_version(_context(root, clients=stubs))
    assert (result.status, result.detail) == (
        FAIL,
        f"EKS does not offer Kubernetes {K8S} here; pick another kubernetesVersion",
    )


def _eks_version(stubs: Stubs, standard: date, extended: date) -> None:
    stubs.stub("eks").add_response(
        "describe_cluster_versions",
        {
            "clusterVersions": [
                {
                    "clusterVersion": K8S,
                    "versionStatus": "STANDARD_SUPPORT",
                    "endOfStandardSupportDate": datetime.combine(standard, time(), UTC),
                    "endOfExtendedSupportDate": datetime.combine(extended, time(), UTC),
                }
            ]
        },
        {"clusterVersions": [K8S]},
    )


def test_support_dates_come_from_eks(root: Path) -> None:
    # EKS's own dates decide; the hand-kept table is named when it differs.
    standard = K8S_SUPPORT.end_of_standard + timedelta(days=10)
    extended = K8S_SUPPORT.end_of_extended
    stubs = Stubs()
    _eks_version(stubs, standard, extended)
    ctx = _context(root, clients=stubs)
    ctx.today = standard - timedelta(days=32)
    result = check_kubernetes_version(ctx)
    assert (result.status, result.detail) == (
        PASS,
        f"EKS offers {K8S} (STANDARD_SUPPORT), standard support to {standard}, extended to "
        f"{extended}; leaves standard support on {standard} (32 days): plan the upgrade; "
        f"infra/instances.py says {K8S_SUPPORT.end_of_standard}/{extended}, EKS "
        f"{standard}/{extended}: update the table",
    )
    _eks_version(stubs, K8S_SUPPORT.end_of_standard, extended)
    ctx.today = extended + timedelta(days=1)
    gone = check_kubernetes_version(ctx)
    assert (gone.status, gone.detail) == (
        FAIL,
        f"Kubernetes {K8S} left EKS extended support on {extended} (EKS's own date); upgrade "
        "kubernetesVersion",
    )
    stubs.verify()


def test_addon_version_not_offered_for_the_kubernetes_version(root: Path) -> None:
    addon, pinned = sorted(ADDONS.items())[-1]
    other = f"{pinned}-not-the-pin"
    stubs = Stubs()
    _addon_versions(stubs, {**ADDONS, addon: other})
    result = check_addon_versions(_context(root, clients=stubs))
    stubs.verify()
    assert (result.status, result.detail) == (
        FAIL,
        f"not offered for Kubernetes {K8S}: {addon} {pinned} (offered e.g. {other}); "
        "re-pin addonVersions",
    )


def test_addon_versions_offered(root: Path) -> None:
    stubs = Stubs()
    _addon_versions(stubs, ADDONS)
    assert check_addon_versions(_context(root, clients=stubs)).status == PASS


def test_state_backend(root: Path) -> None:
    assert check_state_backend(_context(root)).detail == (
        "PULUMI_BACKEND_URL is not set; pulumi login checks it"
    )
    stubs = Stubs()
    stubs.stub("s3").add_client_error("head_bucket", "404", "Not Found", 404)
    result = check_state_backend(
        _context(root, clients=stubs, backend_url="s3://state-bucket/tfserving?region=eu-west-1")
    )
    assert (result.status, result.detail) == (
        FAIL,
        "state bucket state-bucket is not reachable (404: Not Found): create it or grant this "
        "role s3:ListBucket/GetObject/PutObject on it",
    )
    stubs.stub("s3").add_response("head_bucket", {}, {"Bucket": "state-bucket"})
    ok = check_state_backend(_context(root, clients=stubs, backend_url="s3://state-bucket"))
    assert ok.status == PASS


def test_secrets_provider(root: Path) -> None:
    assert check_secrets_provider(_context(root)).status == SKIP
    key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    stubs = Stubs()
    stubs.stub("kms").add_response(
        "describe_key", {"KeyMetadata": {"KeyId": "1234abcd", "KeyState": "PendingDeletion"}}
    )
    result = check_secrets_provider(
        _context(root, clients=stubs, secrets_provider=f"awskms://{key}")
    )
    assert (result.status, result.detail) == (FAIL, f"KMS key {key} is PendingDeletion; enable it")
    stubs.stub("kms").add_client_error("describe_key", "AccessDeniedException", "denied")
    denied = check_secrets_provider(
        _context(root, clients=stubs, secrets_provider=f"awskms://{key}")
    )
    assert denied.detail == (
        f"KMS key {key} is not reachable (AccessDeniedException: denied): grant kms:DescribeKey, "
        "kms:Encrypt and kms:Decrypt"
    )


def test_log_group_left_by_eks_must_be_fixed_before_adoption(root: Path) -> None:
    stubs = Stubs()
    group, days = f"/aws/eks/{DEV.cluster_name}/cluster", DEV.cluster_log_retention_days
    stubs.stub("logs").add_response("describe_log_groups", {"logGroups": [{"logGroupName": group}]})
    result = check_log_group(_context(root, clients=stubs))
    assert (result.status, result.detail) == (
        FAIL,
        f"{group} exists with retention never expire (not ours: EKS re-created it): up adopts it "
        f"only as configured; run aws logs put-retention-policy --log-group-name {group} "
        f"--retention-in-days {days}",
    )
    stubs.stub("logs").add_response(
        "describe_log_groups", {"logGroups": [{"logGroupName": group, "retentionInDays": days}]}
    )
    assert check_log_group(_context(root, clients=stubs)).detail == (
        f"{group} exists with retention {days}; up adopts it"
    )


PROD_VPC = PROD.existing_vpc_id
# The VPC's CIDR as EC2 answers it: the range prod admits to its private endpoint.
PROD_VPC_CIDR = ipaddress.ip_network(PROD.api_access_cidrs[0])


def _prod_network(stubs: Stubs, endpoints: list[dict[str, Any]]) -> None:
    ec2 = stubs.stub("ec2")
    ec2.add_response(
        "describe_vpcs", {"Vpcs": [{"VpcId": PROD_VPC, "CidrBlock": str(PROD_VPC_CIDR)}]}
    )
    ec2.add_response(
        "describe_subnets",
        {
            "Subnets": [
                {"SubnetId": s, "VpcId": PROD_VPC, "AvailabilityZone": z}
                for s, z in zip(PROD.existing_private_subnet_ids, ALL_ZONES, strict=False)
            ]
        },
    )
    ec2.add_response("describe_vpc_endpoints", {"VpcEndpoints": endpoints})


def test_existing_vpc_needs_an_s3_gateway_endpoint(root: Path) -> None:
    stubs = Stubs()
    _prod_network(stubs, [])
    result = check_existing_network(_context(root, "prod", clients=stubs))
    assert (result.status, result.detail) == (
        FAIL,
        f"{PROD_VPC} has no S3 gateway endpoint: model downloads and image layers would "
        "go through NAT; ask the network owner to add one on the private route tables",
    )
    stubs.stub("ec2").add_client_error("describe_vpcs", "InvalidVpcID.NotFound", "no such vpc")
    missing = check_existing_network(_context(root, "prod", clients=stubs))
    assert (
        missing.detail
        == "existingVpcId/existingPrivateSubnetIds: InvalidVpcID.NotFound: no such vpc"
    )
    assert check_existing_network(_context(root)).status == SKIP


def test_private_endpoint_needs_this_machine_in_api_access_cidrs(root: Path) -> None:
    stubs = Stubs()
    vpc = {"Vpcs": [{"VpcId": PROD_VPC, "CidrBlock": str(PROD_VPC_CIDR)}]}
    stubs.stub("ec2").add_response("describe_vpcs", vpc)
    asked: list[str] = []
    laptop_address = "192.0.2.20"  # TEST-NET-1: in no range a stack admits

    def laptop(host: str) -> str:
        asked.append(host)
        return laptop_address

    result = check_api_reachable(_context(root, "prod", clients=stubs, source_address=laptop))
    assert asked == [str(PROD_VPC_CIDR[2])]  # the VPC's resolver address, inside it
    assert (result.status, result.detail) == (
        FAIL,
        f"the endpoint is private and this machine ({laptop_address}) is not in apiAccessCidrs "
        f"({', '.join(PROD.api_access_cidrs)}): run from the runner inside {PROD_VPC}",
    )
    stubs.stub("ec2").add_response("describe_vpcs", vpc)
    runner_address = str(PROD_VPC_CIDR[775])
    runner = check_api_reachable(
        _context(root, "prod", clients=stubs, source_address=lambda host: runner_address)
    )
    assert (runner.status, runner.detail) == (
        PASS,
        f"{runner_address} is in {PROD.api_access_cidrs[0]} (apiAccessCidrs)",
    )
    assert check_api_reachable(_context(root)).status == SKIP


# -- the command -------------------------------------------------------------------------------


DEPLOYER_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{DEPLOYER_ROLE}"


def _deploy_actions(stack: str = "dev", root: Path = REPO_ROOT) -> list[str]:
    from infra import deploy_policy
    from infra.capture import capture_stack

    records = [r.as_dict() for r in capture_stack(stack, root).resources]
    return deploy_policy.actions_for(deploy_policy.custom_types(records))


def _simulation(stubs: Stubs, actions: list[str], denied: set[str] = frozenset()) -> None:
    """GetRole of the caller's role, then SimulatePrincipalPolicy's answers, batch by batch."""
    iam = stubs.stub("iam")
    iam.add_response(
        "get_role",
        {
            "Role": {
                "RoleName": DEPLOYER_ROLE,
                "Arn": DEPLOYER_ROLE_ARN,
                "Path": "/",
                "RoleId": "AROAEXAMPLEEXAMPLE123",
                "CreateDate": datetime(2026, 1, 1),
                "AssumeRolePolicyDocument": "{}",
            }
        },
        {"RoleName": DEPLOYER_ROLE},
    )
    for start in range(0, len(actions), preflight_account.SIMULATE_BATCH):
        batch = actions[start : start + preflight_account.SIMULATE_BATCH]
        iam.add_response(
            "simulate_principal_policy",
            {
                "EvaluationResults": [
                    {
                        "EvalActionName": a,
                        "EvalDecision": "implicitDeny" if a in denied else "allowed",
                    }
                    for a in batch
                ],
                "IsTruncated": False,
            },
        )


def _service_linked_roles(stubs: Stubs, settings: Settings, missing: set[str] = frozenset()):
    ctx = Context(settings=settings, config={}, clients=None)
    for _, role in preflight_account.needed_service_linked_roles(ctx):
        if role in missing:
            stubs.stub("iam").add_client_error("get_role", "NoSuchEntity", f"{role} not found", 404)
        else:
            stubs.stub("iam").add_response(
                "get_role",
                {"Role": {"RoleName": role, "Arn": f"arn:aws:iam::{ACCOUNT}:role/{role}",
                          "Path": "/aws-service-role/", "RoleId": "AROAEXAMPLEEXAMPLE456",
                          "CreateDate": datetime(2026, 1, 1), "AssumeRolePolicyDocument": "{}"}},
                {"RoleName": role},
            )  # fmt: skip


def _fake_tools(directory: Path, docker_answers: bool = True) -> str:
    """docker (answering `docker version` like a client with a daemon), aws and kubectl."""
    directory.mkdir(parents=True, exist_ok=True)
    scripts = {
        "docker": "echo 27.3.1" if docker_answers else "echo 'Cannot connect' >&2; exit 1",
        "aws": "echo aws-cli/2.22.0",
        "kubectl": "echo v1.36.0",
    }
    for tool, body in scripts.items():
        path = directory / tool
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    return str(directory)


def _dev_all_pass(stubs: Stubs, root: Path) -> None:
    stubs.stub("sts").add_response(
        "get_caller_identity", {"Arn": DEPLOYER, "Account": ACCOUNT, "UserId": "AROA:ci"}
    )
    _simulation(stubs, _deploy_actions("dev", root))
    _service_linked_roles(stubs, DEV)
    _zones(stubs)
    _offerings(stubs, _all_offered())
    _gpu_vcpus(stubs, DEV)
    _instances(stubs, [])
    _quotas(stubs, DEV, spare=0)
    _eks_version(stubs, K8S_SUPPORT.end_of_standard, K8S_SUPPORT.end_of_extended)
    _addon_versions(stubs, ADDONS)
    stubs.stub("logs").add_response("describe_log_groups", {"logGroups": []})
    # The model endpoint's certificate (tests/ops/test_preflight_endpoint.py has its cases).
    endpoint = DEV.model_endpoint
    certificate = _real_values(endpoint.certificate_arn)
    stubs.stub("acm").add_response(
        "describe_certificate",
        {
            "Certificate": {
                "CertificateArn": certificate,
                "DomainName": f"*.{endpoint.domain}",
                "Status": "ISSUED",
            }
        },
        {"CertificateArn": certificate},
    )


def test_all_pass_exits_0_with_one_line_per_check_and_json(
    root: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    _pin_images(root / "Pulumi.dev.yaml", monkeypatch)
    monkeypatch.setenv("PATH", f"{_fake_tools(tmp_path / 'bin')}:{os.environ['PATH']}")
    stubs = Stubs()
    _dev_all_pass(stubs, root)
    out = tmp_path / "out" / "preflight.json"
    code = preflight.main(
        ["--stack", "dev", "--json", str(out), "--backend", "", "--offline"],
        clients_for=lambda region: stubs,
        root=root,
        today=TODAY,
    )
    stubs.verify()
    printed = capsys.readouterr().out.splitlines()
    assert code == 0, "\n".join(printed)
    report = json.loads(out.read_text())
    assert report["ok"] is True and report["caller"] == DEPLOYER
    names = [c["name"] for c in report["checks"]]
    assert names == [
        "caller-has-access-entry",
        "no-placeholders",
        "runner-tools",
        "deploy-role-permissions",
        "service-linked-roles",
        "instance-types-offered",
        "gpu-vcpu-quotas",
        "kubernetes-version",
        "addon-versions",
        "existing-vpc",
        "scraper-subnets",
        "api-endpoint-reachable",
        "control-plane-log-group",
        "images-pinned-by-digest",
        "endpoint-certificate",
        "state-backend",
        "secrets-provider",
    ]
    assert len(names) == len(preflight.CHECKS)
    # One line per check, each starting with its status and naming the check.
    for check, line in zip(report["checks"], printed[1:-1], strict=True):
        assert line.startswith(check["status"].upper()) and check["name"] in line
    assert printed[-1] == "all checks passed"


def test_one_failure_exits_1(root: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    _pin_images(root / "Pulumi.dev.yaml", monkeypatch)
    monkeypatch.setenv("PATH", f"{_fake_tools(tmp_path / 'bin')}:{os.environ['PATH']}")
    stubs = Stubs()
    _dev_all_pass(stubs, root)
    stubs.stubbers["service-quotas"]._queue.clear()  # replace the quota answers with small ones
    _quotas(stubs, DEV, spare=-VCPUS)
    code = preflight.main(
        ["--stack", "dev", "--backend", "", "--offline"],
        clients_for=lambda r: stubs,
        root=root,
        today=TODAY,
    )
    out = capsys.readouterr().out
    assert code == 1
    total = len(preflight.CHECKS)
    assert "FAIL  gpu-vcpu-quotas" in out and out.rstrip().endswith(f"1 of {total} checks failed")


def test_unknown_stack_exits_2(root: Path, capsys) -> None:
    code = preflight.main(["--stack", "staging"], clients_for=lambda r: Stubs(), root=root)
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "preflight cannot run for stack 'staging': no stack file Pulumi.staging.yaml"
    )


def test_invalid_config_exits_2(root: Path, capsys) -> None:
    path = root / "Pulumi.dev.yaml"
    path.write_text(
        path.read_text().replace("upgradeSupportType: STANDARD", "upgradeSupportType: NEVER")
    )
    assert preflight.main(["--stack", "dev"], clients_for=lambda r: Stubs(), root=root) == 2
    assert "upgradeSupportType: 'NEVER': use STANDARD or EXTENDED" in capsys.readouterr().err


def test_no_credentials_exits_2(root: Path, monkeypatch, tmp_path: Path, capsys) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    assert preflight.main(["--stack", "dev"], root=root) == 2
    assert "no AWS credentials: Unable to locate credentials" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_aws_endpoint_url_is_honoured_against_a_moto_server(
    root: Path, monkeypatch, tmp_path, capsys
) -> None:
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(
        ip_address="127.0.0.1", port=_free_port(), verbose=False
    )
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
        out = tmp_path / "moto.json"
        code = preflight.main(
            ["--stack", "dev", "--json", str(out), "--backend", ""], root=root, today=TODAY
        )
    finally:
        server.stop()
    report = json.loads(out.read_text())
    # moto's identity: the preflight talked to the local endpoint, not to AWS.
    assert report["caller"] == f"arn:aws:sts::{ACCOUNT}:user/moto"
    by_name = {c["name"]: c for c in report["checks"]}
    # moto's user is not a listed deployer, and its EC2 offers the dev types in the first zones.
    assert by_name["caller-has-access-entry"]["status"] == FAIL
    assert by_name["instance-types-offered"]["status"] == PASS, by_name["instance-types-offered"]
    assert code == 1
    capsys.readouterr()


def test_mirrored_images_pass_and_a_tagged_sync_image_is_named(root: Path) -> None:
    ctx = _context(root)
    result = check_image_digests(ctx)
    assert result.status == PASS
    assert f"serving {DEV.serving_image} (mirrored, pulled by digest)" in result.detail
    assert "syncImage built here (pulled by digest)" in result.detail
    loose = dataclasses.replace(ctx, settings=dataclasses.replace(ctx.settings, sync_image="r/s:1"))
    result = check_image_digests(loose)
    assert result.status == FAIL and "syncImage r/s:1" in result.detail


def test_deploy_workflow_runs_the_preflight_before_pulumi_up() -> None:
    workflow = yaml.safe_load((REPO_ROOT / ".github/workflows/deploy.yml").read_text())
    for name, job in workflow["jobs"].items():
        if name == "stacks":
            continue
        steps = job["steps"]
        preflight_at = [i for i, s in enumerate(steps) if "ops.preflight" in s.get("run", "")]
        up_at = [i for i, s in enumerate(steps) if s.get("with", {}).get("command") == "up"]
        assert len(preflight_at) == 1 and len(up_at) == 1, name
        assert preflight_at[0] < up_at[0], name
        step = steps[preflight_at[0]]
        assert '--stack "$STACK"' in step["run"] and 'exit "$status"' in step["run"]
        assert step["env"]["PULUMI_BACKEND_URL"] == "${{ env.BACKEND }}"
        assert step["if"] == steps[up_at[0]]["if"]
