"""The rules of single setting values that no type, bound or choice can say: CIDRs, AWS ids and
ARNs, image references, e-mail addresses. Each is a ``parse`` converter of a declaration: it
returns the value or raises ``ValueError`` with a message that names what is wrong and what to
use (:class:`SettingError` to name a part of the value)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from contracts import rules
from infra import instances
from infra.settings.declare import SettingError

REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_PRINCIPAL_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$")
_ADDON_VERSION = re.compile(r"^v\d+\.\d+\.\d+-eksbuild\.\d+$")
_SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_VPC_ID = re.compile(r"^vpc-[0-9a-f]{8,17}$")
_ACM_ARN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}$")
_TRUST_STORE_ARN = re.compile(
    r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:truststore/[A-Za-z0-9-]{1,32}/[0-9a-f]{16}$"
)
_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_HOSTED_ZONE = re.compile(r"^Z[A-Z0-9]{1,31}$")
_SSL_POLICY = re.compile(r"^ELBSecurityPolicy-[A-Za-z0-9-]+$")


def cidr(value: str) -> str:
    try:
        ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IPv4 CIDR ({exc})") from None
    return value


def cidrs(values: tuple[str, ...]) -> tuple[str, ...]:
    for value in values:
        cidr(value)
    return values


def vpc_cidr(value: str) -> str:
    if ipaddress.IPv4Network(cidr(value)).prefixlen > 20:
        raise ValueError("use a /20 or larger block: each AZ gets a /22 or larger private subnet")
    return value


def api_cidrs(values: tuple[str, ...]) -> tuple[str, ...]:
    for value in cidrs(values):
        if ipaddress.IPv4Network(value).prefixlen == 0:
            raise ValueError(f"{value} admits every address; list the runner/VPN ranges")
    if len(set(values)) != len(values):
        raise ValueError("lists a CIDR twice (each one becomes one security group rule)")
    return values


def vpc_id(value: str) -> str:
    if value and not _VPC_ID.match(value):
        raise ValueError(f"{value!r} is not a VPC id (vpc-...)")
    return value


def subnet_ids(values: tuple[str, ...]) -> tuple[str, ...]:
    for value in values:
        if not _SUBNET_ID.match(value):
            raise ValueError(f"{value!r} is not a subnet id (subnet-...)")
    return values


def scraper_subnets(given: Mapping[str, str]) -> Mapping[str, str]:
    """{subnet id: its CIDR}, the CIDRs apart from each other."""
    return _subnet_cidrs(given, "scraper")


def endpoint_subnets(given: Mapping[str, str]) -> Mapping[str, str]:
    """The model endpoint's own subnets: {subnet id: its CIDR}, the CIDRs apart."""
    return _subnet_cidrs(given, "endpoint")


def _subnet_cidrs(given: Mapping[str, str], what: str) -> Mapping[str, str]:
    subnet_ids(tuple(given))
    nets = []
    for subnet, block in given.items():
        try:
            nets.append(ipaddress.IPv4Network(block))
        except ValueError:
            why = f"{block!r} is not an IPv4 CIDR (the subnet's CIDR block)"
            raise SettingError(why, subnet) from None
    if any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :]):
        raise ValueError(f"the {what} subnets' CIDRs overlap: give each subnet's own CIDR block")
    return given


def principal_arns(values: tuple[str, ...]) -> tuple[str, ...]:
    for arn in values:
        if not _PRINCIPAL_ARN.match(arn):
            raise ValueError(f"{arn!r} is not an IAM role or user ARN")
    return values


def deployer_arns(values: tuple[str, ...]) -> tuple[str, ...]:
    # The cluster creator gets no implicit admin (changing that later replaces the cluster), so
    # whoever runs `pulumi up` must be listed: without an access entry every Kubernetes object
    # of the first `up` fails with 401.
    if not values:
        raise ValueError(
            "list the IAM role(s) that run pulumi up (e.g. the CI role): the cluster creator "
            "gets no implicit access"
        )
    return principal_arns(values)


def addon_versions(pins: Mapping[str, str]) -> Mapping[str, str]:
    known = instances.CORE_ADDONS
    for extra in sorted(set(pins) - set(known)):
        raise ValueError(f"unknown field {extra!r}; known fields: {', '.join(sorted(known))}")
    for addon in known:
        if not _ADDON_VERSION.match(pins.get(addon, "")):
            raise SettingError(
                f"{pins.get(addon)!r}: pin an EKS add-on version like v1.19.2-eksbuild.5", addon
            )
    return pins


def pinned_image(value: str) -> str:
    """A third-party image by tag or digest (the stack's mirror fixes its digest)."""
    return rules.validate_image_reference(value)


def optional_image(value: str) -> str:
    return value and pinned_image(value)


def sync_image(value: str) -> str:
    """Not mirrored: a given sync image must carry its digest itself."""
    if value:
        try:
            rules.validate_image_reference(value, require_digest=True)
        except rules.RuleError as exc:
            raise ValueError(f"{exc}; or leave it empty to build the image here") from None
    return value


def emails(values: tuple[str, ...]) -> tuple[str, ...]:
    for value in values:
        if "@" not in value.strip("@"):
            raise ValueError(f"{value!r} is not an e-mail address")
    return values


def tags(given: Mapping[str, str]) -> Mapping[str, str]:
    for key in given:
        if key.lower().startswith("aws:"):
            raise SettingError("tag keys may not start with aws:", key)
    return given


def namespaces(values: tuple[str, ...]) -> tuple[str, ...]:
    if not all(rules.is_short_dns_label(n) for n in values):
        raise ValueError("give a list of namespace names (DNS labels)")
    return values


def dns_name(value: str) -> str:
    """A lowercase DNS name of 2+ labels (a domain the models get hosts under)."""
    labels = value.split(".")
    if len(labels) < 2 or not all(_DNS_LABEL.match(label) for label in labels):
        raise ValueError(
            f"{value!r} is not a lowercase DNS name of two or more labels (e.g. models.example.com)"
        )
    return value


def acm_certificate_arn(value: str) -> str:
    if not _ACM_ARN.match(value):
        raise ValueError(
            f"{value!r} is not an ACM certificate ARN "
            "(arn:aws:acm:<region>:<account>:certificate/<id>)"
        )
    return value


def trust_store_arn(value: str) -> str:
    if value and not _TRUST_STORE_ARN.match(value):
        raise ValueError(
            f"{value!r} is not an ELB trust store ARN "
            "(arn:aws:elasticloadbalancing:<region>:<account>:truststore/<name>/<id>)"
        )
    return value


def ssl_policy(value: str) -> str:
    if not _SSL_POLICY.match(value):
        raise ValueError(f"{value!r} is not an ELB security policy name (ELBSecurityPolicy-...)")
    return value


def hosted_zone_id(value: str) -> str:
    if value and not _HOSTED_ZONE.match(value):
        raise ValueError(f"{value!r} is not a Route 53 hosted zone id (Z...)")
    return value
