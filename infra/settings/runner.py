"""The runner a stack's ``pulumi up`` runs on (``deployRunner``), and the rule that it can reach
the stack's Kubernetes API endpoint.

``up`` creates the cluster and then talks to its API for every Kubernetes object and Helm
release: a runner the endpoint does not admit creates the network, cluster and registry, then
times out on the rest. The endpoint admits ``publicAccessCidrs`` on its public side and
``apiAccessCidrs`` (the cluster security group's 443 rules) on its private side, inside the VPC.

A GitHub-hosted runner connects from GitHub's shared ranges: the meta API's ``actions`` list, some
thousands of CIDRs that change from time to time, which GitHub does not recommend allow-listing
(docs.github.com, "About GitHub's IP addresses"). Only an open endpoint (``0.0.0.0/0``, which
the policy pack's ``eks-endpoint-not-public`` refuses) contains every one of them. So a runner
names where its connections come from (``cidrs``): a self-hosted runner's egress (NAT, VPN) or
subnet, or the static addresses of a GitHub larger runner.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import infra.settings.values as values
from infra.settings.declare import setting

SELF_HOSTED = "self-hosted"
OPEN = ipaddress.IPv4Network("0.0.0.0/0")
# A runs-on label (GitHub: labels are free text; these characters keep it a plain word).
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def labels(given: tuple[str, ...]) -> tuple[str, ...]:
    if not given:
        raise ValueError("give the runs-on labels of the runner, e.g. [self-hosted, tfserving-dev]")
    for label in given:
        if not _LABEL.match(label):
            raise ValueError(f"{label!r} is not a runner label (letters, digits, '.', '_', '-')")
    return given


@dataclass(frozen=True, kw_only=True)
class DeployRunner:
    """The runner deploy.yml runs this stack's preflight and pulumi up on, and where its
    connections to the Kubernetes API come from."""

    labels: tuple[str, ...] = setting(
        doc="runs-on labels: [self-hosted, <label>] for a self-hosted runner, or a GitHub-hosted "
        "runner's name (ubuntu-24.04, or a larger runner's).",
        parse=labels,
    )
    cidrs: tuple[str, ...] = setting(
        doc="Where the runner's connections to the API endpoint come from: its egress (NAT, VPN) "
        "for the public endpoint, its subnet for the private one (inside the VPC). Each must lie "
        "in publicAccessCidrs or apiAccessCidrs.",
        default=[], parse=values.cidrs,
    )  # fmt: skip

    @property
    def self_hosted(self) -> bool:
        return SELF_HOSTED in self.labels


def within(cidr: str, allowed: tuple[str, ...]) -> bool:
    net = ipaddress.IPv4Network(cidr)
    return any(net.subnet_of(ipaddress.IPv4Network(a)) for a in allowed)
