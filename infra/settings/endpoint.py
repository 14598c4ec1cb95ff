"""The stack's model endpoint, declared: how clients outside the cluster reach every model over
TLS, authenticated, through one Application Load Balancer (docs/endpoint.md).

Each model is served at ``https://<model>.<domain>`` (REST) and ``<model>.<domain>:443`` (gRPC,
HTTP/2): gRPC paths (``/tensorflow.serving.PredictionService/Predict``) carry no model name, so
the load balancer routes by host name, one per model, and the certificate must cover them all
(``*.<domain>`` or one name each; the preflight checks it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import infra.settings.values as values
from infra.settings.declare import Checks, setting

INTERNAL, INTERNET_FACING = "internal", "internet-facing"
MUTUAL_TLS, NO_AUTHENTICATION = "mutualTls", "none"
# TLS 1.3 and 1.2 with forward-secret ciphers only (Elastic Load Balancing user guide, "Security
# policies for your Application Load Balancer").
DEFAULT_SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


@dataclass(frozen=True, kw_only=True)
class ModelEndpoint:
    """The model endpoint (an Application Load Balancer declared by the program): every model at
    https://<model>.<domain> for REST and <model>.<domain>:443 for gRPC, TLS always."""

    domain: str = setting(
        doc="DNS name under which each model gets its own host, <model>.<domain> (gRPC requests "
        "name no model, so each model needs a host of its own).",
        parse=values.dns_name,
    )
    certificate_arn: str = setting(
        "certificateArn",
        doc="ACM certificate (in the stack's region) the HTTPS listener presents; it must cover "
        "every <model>.<domain>, e.g. *.<domain> (the preflight checks it is ISSUED and covers "
        "them).",
        parse=values.acm_certificate_arn,
    )
    scheme: str = setting(
        doc="internal: reachable only inside the VPC (and networks routed to it); "
        "internet-facing: a public load balancer, allowed only with client authentication.",
        default=INTERNAL,
        choices=(INTERNAL, INTERNET_FACING),
    )
    client_authentication: str = setting(
        doc="mutualTls: the load balancer admits only clients presenting a certificate signed "
        "by a CA of trustStoreArn (verify mode), on REST and gRPC alike; none: TLS without "
        "client authentication (internal endpoints only; a policy rule refuses it "
        "internet-facing).",
        default=MUTUAL_TLS,
        choices=(MUTUAL_TLS, NO_AUTHENTICATION),
    )
    trust_store_arn: str = setting(
        doc="ELB trust store holding the CA bundle that signs client certificates; required "
        "with mutualTls (docs/endpoint.md has the commands to create one).",
        default="",
        parse=values.trust_store_arn,
    )
    allowed_cidrs: tuple[str, ...] = setting(
        "allowedCidrs",
        doc="Networks that may open connections to the endpoint (its security group admits "
        "them on 443 only).",
        parse=values.cidrs,
    )
    ssl_policy: str = setting(
        doc="The HTTPS listener's TLS security policy.",
        default=DEFAULT_SSL_POLICY,
        parse=values.ssl_policy,
    )
    hosted_zone_id: str = setting(
        doc="Route 53 hosted zone of domain: the program adds the *.<domain> alias record to "
        "the load balancer; empty leaves DNS to you (the endpointDnsName output names the "
        "target).",
        default="",
        parse=values.hosted_zone_id,
    )
    existing_subnets: Mapping[str, str] = setting(
        doc="With existingVpcId: the load balancer's own subnets (2+ AZs; public ones for "
        "internet-facing), as {subnet id: its CIDR}. The serving NetworkPolicy admits these "
        "CIDRs on the serving ports, so they must hold no nodes or pods. Without "
        "existingVpcId the load balancer goes into the public subnets the program creates, "
        "which hold only NAT gateways.",
        default={},
        parse=values.endpoint_subnets,
    )

    def host(self, model: str) -> str:
        """The host name of one model."""
        return f"{model}.{self.domain}"

    @property
    def internet_facing(self) -> bool:
        return self.scheme == INTERNET_FACING

    @property
    def mutual_tls(self) -> bool:
        return self.client_authentication == MUTUAL_TLS

    def check(self, c: Checks, at: str, stack: Any) -> None:
        if self.mutual_tls and not self.trust_store_arn:
            c.fail(f"{at}.trustStoreArn", "mutualTls needs the trust store of the CA that signs "
                   "client certificates (docs/endpoint.md)")  # fmt: skip
        elif not self.mutual_tls and self.trust_store_arn:
            c.fail(f"{at}.trustStoreArn", "only used with clientAuthentication mutualTls")
        if self.internet_facing and not self.mutual_tls:
            c.fail(
                f"{at}.clientAuthentication",
                "an internet-facing endpoint must authenticate its clients: use mutualTls with "
                "a trust store, or scheme internal",
            )
        if not self.allowed_cidrs:
            c.fail(f"{at}.allowedCidrs", "list the networks that may connect (e.g. the VPC's "
                   "CIDR for an internal endpoint)")  # fmt: skip
        open_to_all = [n for n in self.allowed_cidrs if ipaddress.IPv4Network(n).prefixlen == 0]
        if open_to_all and not self.internet_facing:
            c.fail(f"{at}.allowedCidrs", f"{open_to_all[0]} admits every address; an internal "
                   "endpoint lists the networks routed to the VPC")  # fmt: skip
        region = stack.region if values.REGION.match(stack.region) else None  # else reported
        arns = {"certificateArn": self.certificate_arn, "trustStoreArn": self.trust_store_arn}
        for key, arn in arns.items():
            if arn and region and arn.split(":")[3] != region:
                c.fail(
                    f"{at}.{key}",
                    f"{arn.split(':')[3]} is not the stack's region {region}: a load balancer "
                    "uses certificates and trust stores of its own region",
                )
        long_hosts = [m.name for m in stack.models if len(self.host(m.name)) > 253]
        if long_hosts:
            c.fail(f"{at}.domain", f"{self.host(long_hosts[0])} is longer than a DNS name may be")
        if stack.existing_vpc_id and len(self.existing_subnets) < 2:
            c.fail(
                f"{at}.existingSubnets",
                "with existingVpcId, give the load balancer 2+ subnets of its own (distinct "
                "AZs) as {subnet id: CIDR}, holding no nodes or pods",
            )
        elif not stack.existing_vpc_id and self.existing_subnets:
            c.fail(f"{at}.existingSubnets", "only used with existingVpcId (the program places the "
                   "load balancer in the public subnets it creates)")  # fmt: skip
