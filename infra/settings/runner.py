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
from typing import TYPE_CHECKING

import infra.settings.values as values
from infra.settings.declare import Checks, setting

if TYPE_CHECKING:
    from infra.settings.stack import Settings

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


def _within(cidr: str, allowed: tuple[str, ...]) -> bool:
    net = ipaddress.IPv4Network(cidr)
    return any(net.subnet_of(ipaddress.IPv4Network(a)) for a in allowed)


def check_reach(s: Settings, c: Checks) -> None:
    """Refuse a committed runner that could not reach the endpoint (module docstring)."""
    runner = s.deploy_runner
    incoherent = (
        not s.public_access_cidrs
        if s.endpoint_public_access
        else not (s.api_access_cidrs and s.existing_vpc_id)
    )
    if not c.ok(runner) or incoherent:
        return  # the endpoint's own keys are reported (Settings.check); judge reach once fixed
    public = s.public_access_cidrs if s.endpoint_public_access else ()
    if not runner.cidrs:
        if not runner.self_hosted and any(ipaddress.IPv4Network(p) == OPEN for p in public):
            return  # an endpoint open to the internet admits GitHub's ranges too
        who = (
            "a self-hosted runner"
            if runner.self_hosted
            else f"the GitHub-hosted runner {' '.join(runner.labels)}, which connects from any "
            "of GitHub's thousands of shared ranges (the meta API's `actions` list) that "
            "publicAccessCidrs cannot hold,"
        )
        c.fail(
            "deployRunner.cidrs",
            f"say where {who} connects from: list its egress addresses (public endpoint, in "
            "publicAccessCidrs) or its subnet (private endpoint, in apiAccessCidrs); "
            "docs/deploy.md has one runner recipe per stack",
        )
        return
    for cidr in runner.cidrs:
        if not (_within(cidr, public) or _within(cidr, s.api_access_cidrs)):
            where = (
                f"publicAccessCidrs ({', '.join(public)}) or apiAccessCidrs "
                f"({', '.join(s.api_access_cidrs) or 'none'})"
                if public
                else f"apiAccessCidrs ({', '.join(s.api_access_cidrs) or 'none'}): the endpoint "
                "is private"
            )
            c.fail(
                "deployRunner.cidrs",
                f"{cidr} is in neither {where}: the runner could create the cluster but never "
                "reach its API; admit it there or run the deploy elsewhere",
            )
