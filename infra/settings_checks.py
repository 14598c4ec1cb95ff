"""Validation of one stack's config: a pure function from a dict of bare keys to Settings.

Every rule appends a :class:`Problem` instead of raising, so one run reports everything that is
wrong; :func:`parse_settings` raises a single :class:`InvalidSettingsError` at the end. This
module checks the network, the cluster, access, reachability, images and monitoring, and
assembles the result; node pools, models and the compute mode are checked in
:mod:`infra.settings_capacity`, both over the collector of :mod:`infra.settings_checker`.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from datetime import date
from types import MappingProxyType
from typing import Any

from contracts import rules
from infra import instances
from infra.config_keys import (
    KEYS,
    KEYS_BY_NAME,
)
from infra.settings_capacity import (
    check_compute_mode,
    check_gpu_pool,
    check_model,
    check_rollout_headroom,
    check_system_pool,
)
from infra.settings_checker import Checker, declared_key_range, type_ok
from infra.settings_types import (
    SYSTEM_POOL,
    InvalidSettingsError,
    Settings,
)

_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
_PRINCIPAL_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$")
_ADDON_VERSION = re.compile(r"^v\d+\.\d+\.\d+-eksbuild\.\d+$")
_SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_VPC_ID = re.compile(r"^vpc-[0-9a-f]{8,17}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
# The system pool is not configurable in these two: on-demand capacity, the standard AL2023 AMI.
_SYSTEM_POOL_CAPACITY = "ON_DEMAND"
_SYSTEM_POOL_AMI = instances.CPU_AMI_TYPES[0]


def _network(c: Checker, v: Mapping[str, Any]) -> None:
    if v["existingVpcId"]:
        if not _VPC_ID.match(v["existingVpcId"]):
            c.fail("existingVpcId", f"{v['existingVpcId']!r} is not a VPC id (vpc-...)")
        subnets = v["existingPrivateSubnetIds"]
        if len(subnets) < 2:
            c.fail("existingPrivateSubnetIds", "EKS needs private subnets in at least 2 AZs")
        for s in subnets:
            if not _SUBNET_ID.match(s):
                c.fail("existingPrivateSubnetIds", f"{s!r} is not a subnet id (subnet-...)")
    elif v["existingPrivateSubnetIds"]:
        c.fail("existingPrivateSubnetIds", "only used with existingVpcId; set both or neither")
    _scraper_subnets(c, v)
    c.cidr("vpcCidr", v["vpcCidr"])
    if _is_net(v["vpcCidr"]) and ipaddress.IPv4Network(v["vpcCidr"]).prefixlen > 20:
        c.fail("vpcCidr", "use a /20 or larger block: each AZ gets a /22 or larger private subnet")
    declared_key_range(c, v, "availabilityZoneCount")


def _scraper_subnets(c: Checker, v: Mapping[str, Any]) -> None:
    """In an existing VPC the managed scraper needs subnets of its own: the serving
    NetworkPolicy admits their CIDRs, so they must hold nothing else (docs/observability.md)."""
    key, given = "existingScraperSubnets", v["existingScraperSubnets"]
    if not (v["existingVpcId"] and v["managedPrometheus"]):
        if given:
            c.fail(key, "only used with existingVpcId and managedPrometheus: true")
        return
    if len(given) < 2:
        c.fail(
            key,
            "give the managed Prometheus scraper 2+ subnets of its own (distinct AZs) as "
            "{subnet id: CIDR}: one small subnet per AZ that holds no nodes or pods",
        )
    nets = []
    for subnet, cidr in given.items():
        if not _SUBNET_ID.match(str(subnet)):
            c.fail(key, f"{subnet!r} is not a subnet id (subnet-...)")
        try:
            nets.append(ipaddress.IPv4Network(cidr))
        except (TypeError, ValueError):
            c.fail(f"{key}.{subnet}", f"{cidr!r} is not an IPv4 CIDR (the subnet's CIDR block)")
    if any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :]):
        c.fail(key, "the scraper subnets' CIDRs overlap: give each subnet's own CIDR block")


def _is_net(value: str) -> bool:
    try:
        ipaddress.IPv4Network(value, strict=False)
    except ValueError:
        return False
    return True


def _cluster(c: Checker, v: Mapping[str, Any]) -> str:
    version = v["kubernetesVersion"]
    supported_versions = KEYS_BY_NAME["kubernetesVersion"].choices
    if version not in supported_versions:
        c.fail(
            "kubernetesVersion",
            f"{version!r} is not a supported EKS version; use one of "
            f"{', '.join(supported_versions)}",
        )
    name = v["clusterName"] or f"tfserving-{v['__stack']}"
    if not _CLUSTER_NAME.match(name):
        c.fail("clusterName", f"{name!r}: 1-100 letters, digits, '-' or '_', starting alphanumeric")
    if v["endpointPublicAccess"] and not v["publicAccessCidrs"]:
        c.fail("publicAccessCidrs", "the public endpoint is on: list the CIDRs allowed to reach it")
    if not v["endpointPublicAccess"] and v["publicAccessCidrs"]:
        c.fail("publicAccessCidrs", "set only when endpointPublicAccess is true")
    for cidr in v["publicAccessCidrs"]:
        c.cidr("publicAccessCidrs", cidr)
    for cidr in v["apiAccessCidrs"]:
        c.cidr("apiAccessCidrs", cidr)
        if _is_net(cidr) and ipaddress.IPv4Network(cidr, strict=False).prefixlen == 0:
            c.fail("apiAccessCidrs", f"{cidr} admits every address; list the runner/VPN ranges")
    if len(set(v["apiAccessCidrs"])) != len(v["apiAccessCidrs"]):
        c.fail("apiAccessCidrs", "lists a CIDR twice (each one becomes one security group rule)")
    allowed = KEYS_BY_NAME["clusterLogTypes"].choices
    for log_type in v["clusterLogTypes"]:
        if log_type not in allowed:
            c.fail("clusterLogTypes", f"{log_type!r}: use any of {', '.join(sorted(allowed))}")
    if v["clusterLogRetentionDays"] not in KEYS_BY_NAME["clusterLogRetentionDays"].choices:
        c.fail(
            "clusterLogRetentionDays",
            f"{v['clusterLogRetentionDays']} is not a CloudWatch "
            "retention (1, 3, 5, 7, 14, 30, 60, 90, 120, ...)",
        )
    _access(c, v)
    _reachability(c, v)
    addons = v["addonVersions"]
    c.unknown_fields("addonVersions", addons, set(instances.CORE_ADDONS))
    for addon in instances.CORE_ADDONS:
        pinned = addons.get(addon)
        if not isinstance(pinned, str) or not _ADDON_VERSION.match(pinned):
            c.fail(
                f"addonVersions.{addon}",
                f"{pinned!r}: pin an EKS add-on version like v1.19.2-eksbuild.5",
            )
    proxy = addons.get("kube-proxy")
    supported = version in supported_versions
    if supported and isinstance(proxy, str) and not proxy.startswith(f"v{version}."):
        # kube-proxy must run the cluster's minor version (Kubernetes version-skew policy).
        c.fail("addonVersions.kube-proxy", f"{proxy} does not match kubernetesVersion {version}")
    declared_key_range(c, v, "kmsDeletionWindowDays")
    return name


def _access(c: Checker, v: Mapping[str, Any]) -> None:
    # The cluster creator gets no implicit admin (changing that later replaces the cluster), so
    # whoever runs `pulumi up` must be listed: without an access entry every Kubernetes object
    # of the first `up` fails with 401.
    for key in ("deployerPrincipalArns", "adminPrincipalArns"):
        for arn in v[key]:
            if not _PRINCIPAL_ARN.match(arn):
                c.fail(key, f"{arn!r} is not an IAM role or user ARN")
            elif ":assumed-role/" in arn or ":sts::" in arn:
                c.fail(key, f"{arn!r} is a session; list the IAM role ARN (arn:aws:iam::...)")
    if not v["deployerPrincipalArns"]:
        c.fail(
            "deployerPrincipalArns",
            "list the IAM role(s) that run pulumi up (e.g. the CI role): the cluster creator "
            "gets no implicit access",
        )
    listed = [*v["deployerPrincipalArns"], *v["adminPrincipalArns"]]
    for arn in sorted({a for a in listed if listed.count(a) > 1}):
        c.fail("adminPrincipalArns", f"{arn} is listed twice (EKS allows one access entry each)")
    # Access entries are named after the role or user name (stable when others change).
    names = [a.rsplit("/", 1)[-1] for a in set(listed)]
    for name in sorted({n for n in names if names.count(n) > 1}):
        c.fail(
            "adminPrincipalArns",
            f"two principals are named {name!r} (other paths or accounts): give them "
            "distinct names",
        )


def _reachability(c: Checker, v: Mapping[str, Any]) -> None:
    # A private-only endpoint answers only inside the VPC. A VPC this `up` creates holds no runner
    # before the cluster exists, so the Kubernetes half of the first `up` could never connect.
    # The supported path: a self-hosted runner in an existing VPC (existingVpcId) whose subnets
    # are listed in apiAccessCidrs.
    if v["endpointPublicAccess"]:
        return
    if not v["existingVpcId"]:
        c.fail(
            "endpointPublicAccess",
            "a private-only endpoint needs existingVpcId: no runner can be inside a VPC this "
            "up creates; set existingVpcId/existingPrivateSubnetIds to the VPC of your "
            "self-hosted runner, or turn the public endpoint on with publicAccessCidrs",
        )
    if not v["apiAccessCidrs"]:
        c.fail(
            "apiAccessCidrs",
            "the endpoint is private-only: list the deploy runner's subnet (and your VPN range)",
        )


def _kubernetes_support(c: Checker, v: Mapping[str, Any], today: date) -> list[str]:
    status = instances.support_status(v["kubernetesVersion"], today)
    if status is None:
        return []
    level, why = status
    if level == "refuse":
        c.fail("kubernetesVersion", why)
        return []
    return [why]


def _monitoring(c: Checker, v: Mapping[str, Any]) -> None:
    """The DCGM image, unless turned off (empty), is pinned (the mirror fixes its digest);
    alert e-mails look like addresses."""
    image = v["dcgmExporterImage"]
    if image and (problem := rules.problem(rules.validate_image_reference, image)) is not None:
        c.fail("dcgmExporterImage", problem)
    for email in v["alertEmails"]:
        if not isinstance(email, str) or "@" not in email.strip("@"):
            c.fail("alertEmails", f"{email!r} is not an e-mail address")


_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+$")


def _images(c: Checker, v: Mapping[str, Any]) -> None:
    """Third-party images are pinned (the stack's mirror copies them and fixes each digest); a
    given syncImage is not mirrored, so it must carry its digest itself."""
    for key in ("servingImage", "servingGpuImage"):
        if (problem := rules.problem(rules.validate_image_reference, v[key])) is not None:
            c.fail(key, problem)
    sync = v["syncImage"]
    if sync != "":
        try:
            rules.validate_image_reference(sync, require_digest=True)
        except rules.RuleError as exc:
            c.fail("syncImage", f"{exc}; or leave it empty to build the image here")
    secret = v["dockerHubCredentialArn"]
    if secret and not _SECRET_ARN.match(secret):
        c.fail(
            "dockerHubCredentialArn",
            f"{secret!r}: give the ARN of a Secrets Manager secret (JSON username and "
            "accessToken of a Docker Hub account), or leave it empty",
        )


# Keys that existed once, with what replaced them (a plain "unknown key" would not say).
REMOVED_KEYS = {
    "clusterCreatorAdmin": "removed: the cluster creator never gets implicit admin (changing "
    "bootstrapClusterCreatorAdminPermissions replaces the cluster); list the role that runs "
    "pulumi up in deployerPrincipalArns and delete this key",
}


def parse_settings(
    stack: str, values: Mapping[str, Any], region: str | None, today: date | None = None
) -> Settings:
    """Validates one stack's config (bare keys, defaults not yet applied) into :class:`Settings`.

    ``today`` dates the Kubernetes support check (default: the real date). Raises
    :class:`InvalidSettingsError` naming every problem at once.
    """
    c = Checker()
    if not isinstance(region, str) or not _REGION.match(region):
        c.fail("aws:region", f"{region!r}: set the stack's AWS region (e.g. eu-west-1)")
    for key in sorted(set(values) - set(KEYS_BY_NAME)):
        c.fail(
            key, REMOVED_KEYS.get(key, "unknown config key; the declared keys are in Pulumi.yaml")
        )
    v: dict[str, Any] = {}
    for key in KEYS:
        value = values.get(key.name, key.default)
        if not type_ok(key, value):
            of = f" of {key.items}" if key.items else ""
            c.fail(key.name, f"expected {key.type}{of}, got {json.dumps(value)}")
            value = key.default
        v[key.name] = value
    v["__stack"] = stack
    _network(c, v)
    cluster_name = _cluster(c, v)
    c.one_of("upgradeSupportType", v["upgradeSupportType"], KEYS_BY_NAME["upgradeSupportType"])
    warnings = _kubernetes_support(c, v, today or date.today())
    system = check_system_pool(c, v["systemNodePool"])
    gpu_pools = [p for n, s in v["gpuNodePools"].items() if (p := check_gpu_pool(c, n, s))]
    pools = {SYSTEM_POOL: system, **{p.name: p for p in gpu_pools}}
    models = [m for n, s in v["models"].items() if (m := check_model(c, n, s, pools))]
    if not models:
        c.fail("models", "list at least one model to serve")
    check_rollout_headroom(c, gpu_pools, models)
    check_compute_mode(c, v, system, gpu_pools)
    _images(c, v)
    _monitoring(c, v)
    for key_name in (
        "noncurrentVersionRetentionDays",
        "abortIncompleteUploadDays",
        "accessLogRetentionDays",
        "s3PollSeconds",
    ):
        declared_key_range(c, v, key_name)
    if v["protectData"] and v["bucketForceDestroy"]:
        c.fail(
            "bucketForceDestroy",
            "contradicts protectData: a protected bucket is never force-destroyed; turn one off",
        )
    for tag_key, tag_value in v["tags"].items():
        if not isinstance(tag_value, str) or tag_key.lower().startswith("aws:"):
            c.fail(f"tags.{tag_key}", "tag values are strings and keys may not start with aws:")
    if c.problems:
        raise InvalidSettingsError(stack, c.problems)
    return Settings(
        stack=stack,
        region=str(region),
        vpc_cidr=v["vpcCidr"],
        availability_zone_count=v["availabilityZoneCount"],
        nat_gateway_per_az=v["natGatewayPerAz"],
        existing_vpc_id=v["existingVpcId"],
        existing_private_subnet_ids=tuple(v["existingPrivateSubnetIds"]),
        existing_scraper_subnets=MappingProxyType(dict(v["existingScraperSubnets"])),
        cluster_name=cluster_name,
        kubernetes_version=v["kubernetesVersion"],
        endpoint_public_access=v["endpointPublicAccess"],
        public_access_cidrs=tuple(v["publicAccessCidrs"]),
        api_access_cidrs=tuple(v["apiAccessCidrs"]),
        cluster_log_types=tuple(v["clusterLogTypes"]),
        cluster_log_retention_days=v["clusterLogRetentionDays"],
        upgrade_support_type=v["upgradeSupportType"],
        deployer_principal_arns=tuple(v["deployerPrincipalArns"]),
        admin_principal_arns=tuple(v["adminPrincipalArns"]),
        addon_versions=MappingProxyType(dict(v["addonVersions"])),
        kms_deletion_window_days=v["kmsDeletionWindowDays"],
        compute_mode=v["computeMode"],
        node_consolidate_after_minutes=v["nodeConsolidateAfterMinutes"],
        node_expire_after_hours=v["nodeExpireAfterHours"],
        system_node_pool=system,
        gpu_node_pools=tuple(gpu_pools),
        protect_data=v["protectData"],
        bucket_force_destroy=v["bucketForceDestroy"],
        noncurrent_version_retention_days=v["noncurrentVersionRetentionDays"],
        abort_incomplete_upload_days=v["abortIncompleteUploadDays"],
        access_log_retention_days=v["accessLogRetentionDays"],
        serving_image=v["servingImage"],
        serving_gpu_image=v["servingGpuImage"],
        sync_image=v["syncImage"],
        docker_hub_credential_arn=v["dockerHubCredentialArn"],
        models=tuple(models),
        await_serving_rollout=v["awaitServingRollout"],
        s3_poll_seconds=v["s3PollSeconds"],
        tags=MappingProxyType(dict(v["tags"])),
        warnings=tuple(warnings),
        managed_prometheus=v["managedPrometheus"],
        dcgm_exporter_image=v["dcgmExporterImage"],
        alert_emails=tuple(v["alertEmails"]),
    )
