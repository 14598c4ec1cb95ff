"""EKS control-plane rules: endpoint exposure, secrets encryption, logs, version, IRSA."""

from __future__ import annotations

import ipaddress

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from ._helpers import as_list, get, judge, of_type

CLUSTER = "aws:eks/cluster:Cluster"
OIDC_PROVIDER = "aws:iam/openIdConnectProvider:OpenIdConnectProvider"

# Every control-plane log type EKS offers (EKS user guide, "Control plane logs").
CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
OPEN_CIDRS = frozenset({"0.0.0.0/0", "::/0"})
STS_AUDIENCE = "sts.amazonaws.com"
# Standard-support EKS versions when a stack's config names none; stacks list theirs in
# policies/config.<stack>.json so a version leaving support is a reviewed config change.
DEFAULT_SUPPORTED_VERSIONS = ["1.32", "1.33", "1.34", "1.35", "1.36"]


def _endpoint(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CLUSTER:
        return
    vpc = get(args.props, "vpcConfig", default={})
    # EKS defaults endpointPublicAccess to true: only an explicit false makes it private.
    if get(vpc, "endpointPublicAccess") is False:
        return
    cidrs = [str(c) for c in as_list(get(vpc, "publicAccessCidrs"))]
    if not cidrs:
        report(
            "The EKS API endpoint is public to 0.0.0.0/0: set vpcConfig.endpointPublicAccess "
            "to false, or list the allowed networks in vpcConfig.publicAccessCidrs."
        )
        return
    open_cidrs = sorted(c for c in cidrs if c in OPEN_CIDRS)
    if open_cidrs:
        report(
            f"vpcConfig.publicAccessCidrs contains {', '.join(open_cidrs)}: a public EKS API "
            "endpoint must be limited to listed networks, never the whole internet."
        )
        return
    allowed = [
        ipaddress.ip_network(c, strict=False) for c in args.get_config().get("allowedCidrs", [])
    ]
    if not allowed:
        return
    outside = [c for c in cidrs if not _within(c, allowed)]
    if outside:
        report(
            f"vpcConfig.publicAccessCidrs {', '.join(outside)} lie outside this stack's "
            "allowedCidrs policy setting: the public EKS API endpoint may only admit those."
        )


def _within(cidr: str, allowed: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False
    return any(
        network.version == a.version and network.subnet_of(a)  # type: ignore[arg-type]
        for a in allowed
    )


eks_endpoint_not_public = ResourceValidationPolicy(
    name="eks-endpoint-not-public",
    description="The EKS API endpoint is private, or public only to listed networks.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_endpoint,
    config_schema=PolicyConfigSchema(
        properties={
            "allowedCidrs": {
                "type": "array",
                "items": {"type": "string"},
                "default": [],
                "description": "When not empty, every public-access CIDR must lie inside one "
                "of these networks.",
            }
        }
    ),
)


def _secrets(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CLUSTER:
        return
    encryption = get(args.props, "encryptionConfig")
    resources = [str(r) for r in as_list(get(encryption, "resources"))]
    key_arn = get(encryption, "provider", "keyArn")
    if "secrets" not in resources or not key_arn:
        report(
            "encryptionConfig must encrypt the `secrets` resource with a customer-managed KMS "
            "key (encryptionConfig.provider.keyArn)."
        )
    elif ":alias/aws/" in str(key_arn):
        report(
            f"encryptionConfig.provider.keyArn {key_arn} is an AWS-managed key: use a "
            "customer-managed KMS key you can rotate and audit."
        )


eks_secrets_encrypted = ResourceValidationPolicy(
    name="eks-secrets-encrypted",
    description="Kubernetes secrets are envelope-encrypted with a customer-managed KMS key.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_secrets,
)


def _logging(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CLUSTER:
        return
    enabled = {str(t) for t in as_list(get(args.props, "enabledClusterLogTypes"))}
    missing = [t for t in CONTROL_PLANE_LOG_TYPES if t not in enabled]
    if missing:
        report(
            f"enabledClusterLogTypes is missing {', '.join(missing)}: every control-plane log "
            f"type ({', '.join(CONTROL_PLANE_LOG_TYPES)}) must be on."
        )


eks_control_plane_logging = ResourceValidationPolicy(
    name="eks-control-plane-logging",
    description="Every EKS control-plane log type is sent to CloudWatch Logs.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_logging,
)


def _version(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CLUSTER:
        return
    supported = [
        str(v) for v in args.get_config().get("supportedVersions", DEFAULT_SUPPORTED_VERSIONS)
    ]
    version = get(args.props, "version")
    if not version:
        report(
            "The cluster does not pin `version`: EKS would pick its current default. Pin one "
            f"of {', '.join(supported)}."
        )
    elif str(version) not in supported:
        report(
            f"Kubernetes version {version} is not in this stack's supportedVersions "
            f"({', '.join(supported)}): upgrade the cluster or update the policy config."
        )


# Advisory by default: a version leaving standard support still runs (at extended-support
# prices), so it should not block unrelated changes the day support ends; prod's config makes
# every rule mandatory.
eks_supported_version = ResourceValidationPolicy(
    name="eks-supported-version",
    description="The cluster pins a Kubernetes version that EKS still supports.",
    enforcement_level=EnforcementLevel.ADVISORY,
    validate=_version,
    config_schema=PolicyConfigSchema(
        properties={
            "supportedVersions": {
                "type": "array",
                "items": {"type": "string", "pattern": r"^1\.\d+$"},
                "minItems": 1,
                "default": DEFAULT_SUPPORTED_VERSIONS,
                "description": "Kubernetes minor versions (e.g. 1.33) allowed for clusters.",
            }
        }
    ),
)


def _access(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CLUSTER:
        return
    access = get(args.props, "accessConfig", default={})
    if judge(lambda: get(access, "authenticationMode")) not in ("API", None):
        report(
            "accessConfig.authenticationMode must be API: access is granted by EKS access "
            "entries the program declares, not by the aws-auth ConfigMap."
        )
    # EKS defaults the creator's admin entry to true; only an explicit false turns it off.
    if get(access, "bootstrapClusterCreatorAdminPermissions") is not False:
        report(
            "accessConfig.bootstrapClusterCreatorAdminPermissions must be false: the creator's "
            "implicit admin cannot be changed later without replacing the cluster; give the "
            "deploy role an explicit access entry instead."
        )
    if not get(get(args.props, "upgradePolicy", default={}), "supportType"):
        report(
            "upgradePolicy.supportType is not set: choose STANDARD (EKS upgrades at end of "
            "standard support) or EXTENDED (extended support is billed) per stack."
        )


eks_explicit_access = ResourceValidationPolicy(
    name="eks-explicit-access",
    description="Cluster access comes only from explicit access entries (no implicit creator "
    "admin), and the upgrade policy is chosen, not defaulted.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_access,
)


def _oidc(args: StackValidationArgs, report: ReportViolation) -> None:
    clusters = list(of_type(args.resources, CLUSTER))
    if not clusters:
        return
    providers = list(of_type(args.resources, OIDC_PROVIDER))

    def trusts_sts(provider) -> bool:
        return STS_AUDIENCE in [str(c) for c in as_list(get(provider.props, "clientIdLists"))]

    # Unknown client ids count as trusting STS: the value is checked again at `pulumi up`.
    if not any(judge(lambda p=p: trusts_sts(p)) is not False for p in providers):
        for cluster in clusters:
            report(
                "No IAM OpenIdConnectProvider with client id sts.amazonaws.com exists for this "
                "cluster: IRSA (pod IAM roles) needs one for the cluster's OIDC issuer.",
                cluster.urn,
            )


eks_oidc_provider = StackValidationPolicy(
    name="eks-oidc-provider",
    description="Each EKS cluster has an IAM OIDC provider so pods get IAM roles through IRSA.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=_oidc,
)

POLICIES = [
    eks_endpoint_not_public,
    eks_secrets_encrypted,
    eks_control_plane_logging,
    eks_supported_version,
    eks_explicit_access,
    eks_oidc_provider,
]
