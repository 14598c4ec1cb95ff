"""The read-only checks of ``python -m ops.preflight``: one function per blocker a first
``pulumi up`` would otherwise hit half-way.

Every check takes a :class:`Context` (the stack's validated settings, its raw config, and a
factory of boto3 clients built with the caller's credentials) and returns one :class:`Check`.
They only call Describe/Get/Head/List APIs; nothing here writes to the account.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from infra import instances
from infra.capture import REPO_ROOT
from infra.settings import NodePool, Settings

PASS, FAIL, SKIP = "pass", "fail", "skip"

# Documentation values that must never reach a real `up` (RFC 5737 TEST-NET ranges, the account
# id AWS uses in its examples).
PLACEHOLDER_NETWORKS = tuple(
    ipaddress.IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
)
PLACEHOLDER_ACCOUNT = "111122223333"

# EC2 vCPU quotas (Service Quotas, service code ec2) by capacity type and instance family letter.
# G and VT: L-DB2E81BA "Running On-Demand G and VT instances", L-3819A6DF "All G and VT Spot
# Instance Requests"; P: L-417A185B "Running On-Demand P instances", L-7212CCBC "All P Spot
# Instance Requests". Quotas count vCPUs, not instances.
VCPU_QUOTAS: dict[tuple[str, str], tuple[str, str]] = {
    ("ON_DEMAND", "g"): ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    ("SPOT", "g"): ("L-3819A6DF", "All G and VT Spot Instance Requests"),
    ("ON_DEMAND", "p"): ("L-417A185B", "Running On-Demand P instances"),
    ("SPOT", "p"): ("L-7212CCBC", "All P Spot Instance Requests"),
}

ClientFactory = Callable[[str], Any]


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str

    def line(self) -> str:
        return f"{self.status.upper():4}  {self.name:28} {self.detail}"

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


@dataclass
class Context:
    settings: Settings
    config: Mapping[str, Any]  # the stack file's config block, as written
    clients: ClientFactory
    backend_url: str = ""
    secrets_provider: str = ""
    today: date = field(default_factory=date.today)
    # The local address this machine would use to reach ``host`` (no packet is sent).
    source_address: Callable[[str], str] = field(default=lambda host: _source_address(host))
    caller_arn: str = ""
    # The stack's policy pack settings (policies/config.<stack>.json), which repeat some stack
    # values (dev's allowed API ranges): a placeholder there refuses the real value at preview.
    policy_config: Mapping[str, Any] = field(default_factory=dict)
    # This machine's public egress address, asked once (ops.preflight_runner.ask_egress); None
    # when the preflight runs --offline.
    egress_address: Callable[[], str] | None = None
    # Where to look for the tools (PATH when None), and the project holding the stack files.
    tools_path: str | None = None
    root: Path = REPO_ROOT


def _source_address(host: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, 443))  # UDP connect only picks a route and a source address
        return str(s.getsockname()[0])


def error_text(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'error')}: {err.get('Message', '')}".rstrip(": ")
    return str(exc)


# ---------------------------------------------------------------------------------------------


def role_arn_of(caller_arn: str) -> str:
    """The IAM ARN an access entry names for a caller: ``assumed-role/R/session`` -> ``role/R``.
    (An assumed-role ARN drops the role's path; entries are matched on account and name.)"""
    if ":assumed-role/" in caller_arn:
        head, _, rest = caller_arn.partition(":assumed-role/")
        account = head.rsplit(":", 1)[-1]
        partition = head.split(":")[1]
        return f"arn:{partition}:iam::{account}:role/{rest.split('/', 1)[0]}"
    return caller_arn


def _account_and_name(arn: str) -> tuple[str, str]:
    account = arn.split(":")[4]
    return account, arn.rsplit("/", 1)[-1]


def check_caller(ctx: Context) -> Check:
    name = "caller-has-access-entry"
    caller = role_arn_of(ctx.caller_arn)
    listed = [*ctx.settings.deployer_principal_arns, *ctx.settings.admin_principal_arns]
    if _account_and_name(caller) in {_account_and_name(a) for a in listed}:
        return Check(name, PASS, f"{caller} is listed and gets cluster-admin")
    return Check(
        name,
        FAIL,
        f"{caller} is not in deployerPrincipalArns or adminPrincipalArns: it would create the "
        "cluster and then get 401 on every Kubernetes object; add it to deployerPrincipalArns "
        "or run as a listed role",
    )


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]")


def _placeholder_in(text: str) -> str | None:
    if PLACEHOLDER_ACCOUNT in text:
        return f"the example account {PLACEHOLDER_ACCOUNT}"
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    for doc in PLACEHOLDER_NETWORKS:
        if net.version == 4 and net.overlaps(doc):
            return f"the documentation range {doc} (TEST-NET)"
    return None


def check_placeholders(ctx: Context) -> Check:
    name = "no-placeholders"

    def found_in(values: Mapping[str, Any]) -> list[str]:
        return sorted(
            f"{key} ({what})"
            for key, text in _strings(dict(values), "")
            if (what := _placeholder_in(text)) is not None
        )

    in_stack, in_policy = found_in(ctx.config), found_in(ctx.policy_config)
    if not in_stack and not in_policy:
        return Check(name, PASS, "no example account or TEST-NET range in the stack config")
    parts = []
    if in_stack:
        parts.append(f"replace the example values in the stack file: {'; '.join(in_stack)}")
    if in_policy:
        parts.append(
            "replace the example values in the policy pack's settings "
            f"(policies/config.<stack>.json): {'; '.join(in_policy)}"
        )
    return Check(name, FAIL, ", and ".join(parts))


def _zones(ctx: Context) -> list[str]:
    """The AZs the node groups will use: the existing subnets' zones, or the first N as the
    program picks them."""
    ec2 = ctx.clients("ec2")
    s = ctx.settings
    if s.existing_vpc_id:
        found = ec2.describe_subnets(SubnetIds=list(s.existing_private_subnet_ids))["Subnets"]
        return sorted({sub["AvailabilityZone"] for sub in found})
    zones = ec2.describe_availability_zones(
        Filters=[
            {"Name": "state", "Values": ["available"]},
            {"Name": "zone-type", "Values": ["availability-zone"]},
        ]
    )["AvailabilityZones"]
    return sorted(z["ZoneName"] for z in zones)[: s.availability_zone_count]


def _pools(s: Settings) -> list[NodePool]:
    return [s.system_node_pool, *s.gpu_node_pools]


def check_instance_types(ctx: Context) -> Check:
    name = "instance-types-offered"
    wanted = sorted({t for p in _pools(ctx.settings) for t in p.instance_types})
    try:
        zones = _zones(ctx)
        pages = (
            ctx.clients("ec2")
            .get_paginator("describe_instance_type_offerings")
            .paginate(
                LocationType="availability-zone",
                Filters=[
                    {"Name": "instance-type", "Values": wanted},
                    {"Name": "location", "Values": zones},
                ],
            )
        )
        offered = {
            (o["InstanceType"], o["Location"])
            for page in pages
            for o in page["InstanceTypeOfferings"]
        }
    except (ClientError, BotoCoreError) as exc:
        return Check(name, FAIL, f"could not list offerings: {error_text(exc)}")
    missing = [f"{t} in {z}" for t in wanted for z in zones if (t, z) not in offered]
    if missing:
        return Check(
            name,
            FAIL,
            f"not offered in {ctx.settings.region}: {', '.join(missing)}; pick types offered in "
            "every zone (aws ec2 describe-instance-type-offerings --location-type "
            "availability-zone)",
        )
    return Check(name, PASS, f"{', '.join(wanted)} offered in {', '.join(zones)}")


def vcpu_needs(
    pools: list[NodePool], vcpus: Mapping[str, int], auto_mode: bool = False
) -> dict[tuple[str, str], int]:
    """vCPUs each quota must cover with every GPU pool at maxSize (its largest type each). Under
    Auto Mode a SPOT pool's NodePool falls back to on-demand (infra.components.auto_mode), so it
    needs the on-demand quota too."""
    needs: dict[tuple[str, str], int] = {}
    for pool in pools:
        if not pool.is_gpu:
            continue
        family = "p" if pool.instance_types[0].startswith("p") else "g"
        largest = max(vcpus[t] for t in pool.instance_types)
        kinds = {pool.capacity_type} | ({"ON_DEMAND"} if auto_mode else set())
        for kind in sorted(kinds):
            needs[(kind, family)] = needs.get((kind, family), 0) + pool.max_size * largest
    return needs


# Instance types each quota counts (Service Quotas: G and VT, P), as EC2 filter patterns.
QUOTA_TYPES = {"g": ["g*", "vt*"], "p": ["p*"]}
# Tags that mark an instance as one of this cluster's nodes (managed node groups, Auto Mode,
# the Kubernetes cloud provider), which the stack's own need already counts.
_OWN_TAGS = ("eks:cluster-name", "eks:eks-cluster-name")


def vcpus_in_use(ctx: Context, family: str) -> dict[str, int]:
    """vCPUs of running or pending instances the quota of ``family`` counts, by capacity type,
    without this cluster's own nodes."""
    cluster = ctx.settings.cluster_name
    pages = (
        ctx.clients("ec2")
        .get_paginator("describe_instances")
        .paginate(
            Filters=[
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
                {"Name": "instance-type", "Values": QUOTA_TYPES[family]},
            ]
        )
    )
    used = {"ON_DEMAND": 0, "SPOT": 0}
    for page in pages:
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
                if any(tags.get(k) == cluster for k in _OWN_TAGS) or (
                    f"kubernetes.io/cluster/{cluster}" in tags
                ):
                    continue
                cpu = instance["CpuOptions"]
                kind = "SPOT" if instance.get("InstanceLifecycle") == "spot" else "ON_DEMAND"
                used[kind] += int(cpu["CoreCount"]) * int(cpu["ThreadsPerCore"])
    return used


def check_gpu_quotas(ctx: Context) -> Check:
    name = "gpu-vcpu-quotas"
    gpu_pools = list(ctx.settings.gpu_node_pools)
    if not gpu_pools:
        return Check(name, SKIP, "no GPU pools")
    types = sorted({t for p in gpu_pools for t in p.instance_types})
    try:
        described = ctx.clients("ec2").describe_instance_types(InstanceTypes=types)["InstanceTypes"]
        vcpus = {d["InstanceType"]: int(d["VCpuInfo"]["DefaultVCpus"]) for d in described}
        needs = vcpu_needs(gpu_pools, vcpus, ctx.settings.auto_mode)
        in_use = {family: vcpus_in_use(ctx, family) for family in sorted({f for _, f in needs})}
        quotas = ctx.clients("service-quotas")
        short: list[str] = []
        covered: list[str] = []
        for (kind, family), needed in sorted(needs.items()):
            code, label = VCPU_QUOTAS[(kind, family)]
            value = quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"]
            used = in_use[family][kind]
            text = (
                f"{label} ({code}) {value:g} vCPUs, {used} in use elsewhere: "
                f"{value - used:g} free for {needed}"
            )
            (covered if value - used >= needed else short).append(text)
    except (ClientError, BotoCoreError, KeyError) as exc:
        return Check(
            name, FAIL, f"could not read instance types, instances or quotas: {error_text(exc)}"
        )
    if short:
        return Check(
            name,
            FAIL,
            f"too little headroom: {'; '.join(short)} (GPU pools at maxSize); request an "
            "increase in Service Quotas (aws service-quotas request-service-quota-increase), "
            "free capacity, or lower maxSize",
        )
    return Check(name, PASS, "; ".join(covered))


def _day(value: Any) -> date | None:
    return value.date() if isinstance(value, datetime) else None


def check_kubernetes_version(ctx: Context) -> Check:
    """EKS's own support dates for the version (DescribeClusterVersions), against today; the
    hand-kept table in infra/instances.py (which the settings and the policy pack read) is
    named when it differs."""
    name = "kubernetes-version"
    version = ctx.settings.kubernetes_version
    try:
        found = ctx.clients("eks").describe_cluster_versions(clusterVersions=[version])
    except (ClientError, BotoCoreError) as exc:
        return Check(name, FAIL, f"could not ask EKS about {version}: {error_text(exc)}")
    rows = found.get("clusterVersions", [])
    if not rows:
        return Check(
            name,
            FAIL,
            f"EKS does not offer Kubernetes {version} here; pick another kubernetesVersion",
        )
    row = rows[0]
    standard, extended = (
        _day(row.get("endOfStandardSupportDate")),
        _day(row.get("endOfExtendedSupportDate")),
    )
    if standard is None or extended is None:
        return Check(name, FAIL, f"EKS answered no support dates for {version}: {row}")
    if ctx.today > extended:
        return Check(name, FAIL, f"Kubernetes {version} left EKS extended support on {extended} "
                     "(EKS's own date); upgrade kubernetesVersion")  # fmt: skip
    notes = []
    if ctx.today > standard:
        notes.append(
            f"past end of standard support ({standard}): "
            + ("extended support is billed" if ctx.settings.upgrade_support_type == "EXTENDED"
               else "EKS upgrades the cluster (upgradeSupportType STANDARD)")
        )  # fmt: skip
    elif (standard - ctx.today).days <= instances.STANDARD_SUPPORT_WARNING_DAYS:
        notes.append(f"leaves standard support on {standard} ({(standard - ctx.today).days} days): "
                     "plan the upgrade")  # fmt: skip
    kept = instances.EKS_VERSIONS.get(version)
    if kept and (kept.end_of_standard, kept.end_of_extended) != (standard, extended):
        notes.append(
            f"infra/instances.py says {kept.end_of_standard}/{kept.end_of_extended}, EKS "
            f"{standard}/{extended}: update the table"
        )
    detail = (
        f"EKS offers {version} ({row.get('versionStatus', 'listed')}), standard support to "
        f"{standard}, extended to {extended}"
    )
    return Check(name, PASS, "; ".join([detail, *notes]))


def check_addon_versions(ctx: Context) -> Check:
    name = "addon-versions"
    version = ctx.settings.kubernetes_version
    eks = ctx.clients("eks")
    missing: list[str] = []
    try:
        for addon, pinned in sorted(ctx.settings.addon_versions.items()):
            pages = eks.get_paginator("describe_addon_versions").paginate(
                addonName=addon, kubernetesVersion=version
            )
            offered = {
                v["addonVersion"]
                for page in pages
                for a in page["addons"]
                for v in a["addonVersions"]
            }
            if pinned not in offered:
                newest = sorted(offered)[-3:]
                missing.append(f"{addon} {pinned} (offered e.g. {', '.join(newest) or 'none'})")
    except (ClientError, BotoCoreError) as exc:
        return Check(name, FAIL, f"could not list add-on versions: {error_text(exc)}")
    if missing:
        return Check(
            name,
            FAIL,
            f"not offered for Kubernetes {version}: {'; '.join(missing)}; re-pin addonVersions",
        )
    pins = ", ".join(f"{a} {v}" for a, v in sorted(ctx.settings.addon_versions.items()))
    return Check(name, PASS, f"offered for {version}: {pins}")


def check_state_backend(ctx: Context) -> Check:
    name = "state-backend"
    url = ctx.backend_url
    if not url.startswith("s3://"):
        why = f"backend {url!r} is not an S3 bucket" if url else "PULUMI_BACKEND_URL is not set"
        return Check(name, SKIP, f"{why}; pulumi login checks it")
    bucket = url.removeprefix("s3://").split("/", 1)[0].split("?", 1)[0]
    try:
        ctx.clients("s3").head_bucket(Bucket=bucket)
    except (ClientError, BotoCoreError) as exc:
        return Check(
            name,
            FAIL,
            f"state bucket {bucket} is not reachable ({error_text(exc)}): create it or "
            "grant this role s3:ListBucket/GetObject/PutObject on it",
        )
    return Check(name, PASS, f"state bucket {bucket} reachable")


def check_secrets_provider(ctx: Context) -> Check:
    name = "secrets-provider"
    provider = ctx.secrets_provider
    if not provider.startswith("awskms://"):
        why = (
            f"secrets provider {provider!r} is not AWS KMS"
            if provider
            else "no secretsprovider in the stack file"
        )
        return Check(name, SKIP, why)
    key = provider.removeprefix("awskms://").split("?", 1)[0]
    try:
        meta = ctx.clients("kms").describe_key(KeyId=key)["KeyMetadata"]
    except (ClientError, BotoCoreError) as exc:
        return Check(
            name,
            FAIL,
            f"KMS key {key} is not reachable ({error_text(exc)}): grant kms:DescribeKey, "
            "kms:Encrypt and kms:Decrypt",
        )
    if meta.get("KeyState") != "Enabled":
        return Check(name, FAIL, f"KMS key {key} is {meta.get('KeyState')}; enable it")
    return Check(name, PASS, f"KMS key {key} enabled")


def check_existing_network(ctx: Context) -> Check:
    name = "existing-vpc"
    s = ctx.settings
    if not s.existing_vpc_id:
        return Check(name, SKIP, "the stack creates its own VPC (with an S3 gateway endpoint)")
    ec2 = ctx.clients("ec2")
    try:
        ec2.describe_vpcs(VpcIds=[s.existing_vpc_id])
        subnets = ec2.describe_subnets(SubnetIds=list(s.existing_private_subnet_ids))["Subnets"]
        endpoints = ec2.describe_vpc_endpoints(
            Filters=[
                {"Name": "vpc-id", "Values": [s.existing_vpc_id]},
                {"Name": "service-name", "Values": [f"com.amazonaws.{s.region}.s3"]},
                {"Name": "vpc-endpoint-type", "Values": ["Gateway"]},
            ]
        )["VpcEndpoints"]
    except (ClientError, BotoCoreError) as exc:
        return Check(name, FAIL, f"existingVpcId/existingPrivateSubnetIds: {error_text(exc)}")
    elsewhere = [x["SubnetId"] for x in subnets if x["VpcId"] != s.existing_vpc_id]
    if elsewhere:
        return Check(name, FAIL, f"subnets {', '.join(elsewhere)} are not in {s.existing_vpc_id}")
    if not endpoints:
        return Check(
            name,
            FAIL,
            f"{s.existing_vpc_id} has no S3 gateway endpoint: model downloads and image layers "
            "would go through NAT; ask the network owner to add one on the private route tables",
        )
    return Check(
        name, PASS, f"{s.existing_vpc_id} with {len(subnets)} subnets and an S3 gateway endpoint"
    )


def check_scraper_subnets(ctx: Context) -> Check:
    """The managed scraper's own subnets in an existing VPC: they exist, lie in the VPC, carry
    the CIDRs the serving NetworkPolicy admits, and span two zones (AMP user guide: a scraper
    needs subnets in at least two Availability Zones)."""
    name = "scraper-subnets"
    s = ctx.settings
    given = dict(s.existing_scraper_subnets)
    if not (s.existing_vpc_id and s.managed_prometheus):
        return Check(name, SKIP, "no existing VPC with managedPrometheus: the stack cuts them")
    try:
        found = ctx.clients("ec2").describe_subnets(SubnetIds=sorted(given))["Subnets"]
    except (ClientError, BotoCoreError) as exc:
        return Check(name, FAIL, f"existingScraperSubnets: {error_text(exc)}")
    problems = [
        f"{x['SubnetId']} is in {x['VpcId']}, not {s.existing_vpc_id}"
        for x in found
        if x["VpcId"] != s.existing_vpc_id
    ]
    problems += [
        f"{x['SubnetId']} is {x['CidrBlock']}, not {given[x['SubnetId']]} as listed (the "
        "NetworkPolicy would admit the wrong range)"
        for x in found
        if given.get(x["SubnetId"]) != x["CidrBlock"]
    ]
    zones = sorted({x["AvailabilityZone"] for x in found})
    if len(zones) < 2:
        problems.append(f"all in {', '.join(zones) or 'no zone'}: the scraper needs two zones")
    if problems:
        return Check(name, FAIL, "existingScraperSubnets: " + "; ".join(problems))
    return Check(name, PASS, f"{len(found)} subnets of {s.existing_vpc_id} in {', '.join(zones)}")


def check_log_group(ctx: Context) -> Check:
    name = "control-plane-log-group"
    group = f"/aws/eks/{ctx.settings.cluster_name}/cluster"
    try:
        found = ctx.clients("logs").describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    except (ClientError, BotoCoreError) as exc:
        return Check(name, FAIL, f"could not read log groups: {error_text(exc)}")
    match = [g for g in found if g["logGroupName"] == group]
    if not match:
        return Check(name, PASS, f"{group} does not exist yet; up creates it")
    retention = match[0].get("retentionInDays")
    wanted = ctx.settings.cluster_log_retention_days
    if retention != wanted:
        return Check(
            name,
            FAIL,
            f"{group} exists with retention {retention or 'never expire'} (not ours: EKS "
            f"re-created it): up adopts it only as configured; run aws logs put-retention-policy "
            f"--log-group-name {group} --retention-in-days {wanted}",
        )
    return Check(name, PASS, f"{group} exists with retention {wanted}; up adopts it")


def stack_images(settings: Settings) -> dict[str, str]:
    """Every image the stack's pods run and how each is pinned: third-party ones are copied into
    the stack's ECR and pulled by the copy's digest (infra.components.image_mirror); the sync
    image is built here and pulled by digest, or given (settings require its digest)."""
    # Imported here: the program imports pulumi, which the other checks do not need.
    from infra.program import mirrored_images

    images = {
        role: f"{ref} (mirrored, pulled by digest)"
        for role, ref in mirrored_images(settings).items()
    }
    images["syncImage"] = settings.sync_image or "built here (pulled by digest)"
    return images


def check_image_digests(ctx: Context) -> Check:
    name = "images-pinned-by-digest"
    images = stack_images(ctx.settings)
    loose = [f"{k} {v}" for k, v in images.items() if "@sha256:" not in v and "digest)" not in v]
    if loose:
        return Check(
            name,
            FAIL,
            f"pinned by tag only and not mirrored (a tag can be moved): {'; '.join(loose)}; "
            "append the digest from `docker buildx imagetools inspect IMAGE`",
        )
    return Check(
        name,
        PASS,
        f"every image is pulled by digest: {'; '.join(f'{k} {v}' for k, v in images.items())}",
    )


def host_covered(host: str, names: list[str]) -> bool:
    """Whether a certificate name covers ``host``: equal, or a wildcard ``*.rest`` standing for
    exactly one leftmost label (RFC 6125 section 6.4.3, as ACM issues wildcards)."""
    host = host.lower()
    for name in (n.lower() for n in names):
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def check_endpoint_certificate(ctx: Context) -> Check:
    """The model endpoint's certificate exists in the stack's region, is ISSUED, and covers
    every model's host (docs/endpoint.md): the HTTPS listener cannot be created with a
    certificate that is not issued, and clients refuse a name it does not cover."""
    name = "endpoint-certificate"
    endpoint = ctx.settings.model_endpoint
    if endpoint is None:
        return Check(name, SKIP, "no modelEndpoint: the models are reachable in the cluster only")
    arn = endpoint.certificate_arn
    try:
        found = ctx.clients("acm").describe_certificate(CertificateArn=arn)["Certificate"]
    except (ClientError, BotoCoreError) as exc:
        return Check(
            name,
            FAIL,
            f"{arn} is not readable ({error_text(exc)}): request a certificate for "
            f"*.{endpoint.domain} in {ctx.settings.region} (aws acm request-certificate, DNS "
            "validation) and put its ARN in modelEndpoint.certificateArn",
        )
    status = found.get("Status", "")
    if status != "ISSUED":
        return Check(
            name,
            FAIL,
            f"{arn} is {status or 'in no known state'}, not ISSUED: complete its DNS validation "
            "(aws acm describe-certificate shows the CNAME record to create), or request a new one",
        )
    names = [found.get("DomainName", ""), *found.get("SubjectAlternativeNames", [])]
    hosts = [endpoint.host(m.name) for m in ctx.settings.models]
    missing = [h for h in hosts if not host_covered(h, names)]
    if missing:
        return Check(
            name,
            FAIL,
            f"{arn} covers {', '.join(sorted(set(names)))} but not {', '.join(missing)}: issue "
            f"one for *.{endpoint.domain} (or name every model's host)",
        )
    return Check(name, PASS, f"{arn} is ISSUED and covers {', '.join(hosts)}")
