"""Preflight checks of the machine ``pulumi up`` runs on: can it reach the stack's Kubernetes API,
and does it have the tools the program and the docs call.

- ``api-endpoint-reachable``: a public endpoint admits only ``publicAccessCidrs``, so this
  machine's public egress address (asked once of ``checkip.amazonaws.com``, the service the EC2
  user guide names for "your public IPv4 address"; ``--offline`` skips it) must lie in them, or,
  for a machine inside the stack's VPC, its address on the VPC's route must lie in
  ``apiAccessCidrs`` (the private endpoint, which also serves a public+private cluster from
  inside the VPC). A private-only endpoint admits only the latter.
- ``runner-tools``: Docker with a reachable daemon (pulumi-docker-build builds the image mirror
  and the sync image through it), the ``aws`` CLI (the stack's kubeconfig gets its token with
  ``aws eks get-token``, for the Kubernetes provider during ``up``), and kubectl, which the
  documented checks after ``up`` use (missing kubectl does not fail: ``up`` does not need it).
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import urllib.request
from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError

from ops.preflight_checks import FAIL, PASS, SKIP, Check, Context, error_text

EGRESS_URL = "https://checkip.amazonaws.com"


def ask_egress(url: str = EGRESS_URL, timeout: float = 5.0) -> Callable[[], str]:
    """A function that asks ``url`` for this machine's public address, once (then remembers)."""
    answer: list[str] = []

    def egress() -> str:
        if not answer:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                text = response.read(64).decode("ascii", "replace").strip()
            answer.append(str(ipaddress.ip_address(text)))  # refuses anything but an address
        return answer[0]

    return egress


def _vpc_address(ctx: Context) -> str | None:
    """This machine's address toward the stack's existing VPC (no packet is sent), if any."""
    s = ctx.settings
    if not s.existing_vpc_id:
        return None
    vpc = ctx.clients("ec2").describe_vpcs(VpcIds=[s.existing_vpc_id])["Vpcs"][0]
    resolver = str(ipaddress.IPv4Network(vpc["CidrBlock"])[2])  # the VPC's DNS, inside it
    return ctx.source_address(resolver)


def _admitted(address: str, cidrs: tuple[str, ...]) -> str | None:
    ip = ipaddress.ip_address(address)
    return next((c for c in cidrs if ip in ipaddress.ip_network(c)), None)


def check_api_reachable(ctx: Context) -> Check:
    name = "api-endpoint-reachable"
    s = ctx.settings
    try:
        here = _vpc_address(ctx)
    except (ClientError, BotoCoreError, OSError, IndexError, KeyError, ValueError) as exc:
        return Check(
            name, FAIL, f"cannot tell whether this machine reaches the VPC: {error_text(exc)}"
        )
    inside = _admitted(here, s.api_access_cidrs) if here else None
    if inside:
        return Check(name, PASS, f"{here} is in {inside} (apiAccessCidrs)")
    if not s.endpoint_public_access:
        return Check(
            name,
            FAIL,
            f"the endpoint is private and this machine ({here}) is not in apiAccessCidrs "
            f"({', '.join(s.api_access_cidrs)}): run from the runner inside {s.existing_vpc_id}",
        )
    if ctx.egress_address is None:
        return Check(name, SKIP, "--offline: this machine's egress address was not asked")
    try:
        egress = ctx.egress_address()
    except (OSError, ValueError) as exc:
        return Check(
            name,
            FAIL,
            f"could not ask {EGRESS_URL} for this machine's egress address ({exc}); run with "
            "--offline to skip this check",
        )
    admitted = _admitted(egress, s.public_access_cidrs)
    if not admitted:
        return Check(
            name,
            FAIL,
            f"this machine's egress address {egress} is not in publicAccessCidrs "
            f"({', '.join(s.public_access_cidrs)}): up would create the cluster and then time out "
            "on every Kubernetes object; run from the stack's deployRunner or admit this network",
        )
    return Check(name, PASS, f"egress {egress} is in {admitted} (publicAccessCidrs)")


def _docker_daemon(docker: str) -> str | None:
    """The daemon's version, or None when the client cannot reach one."""
    try:
        done = subprocess.run(
            [docker, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def check_tools(ctx: Context) -> Check:
    name = "runner-tools"
    found = {t: shutil.which(t, path=ctx.tools_path) for t in ("docker", "aws", "kubectl")}
    problems = []
    docker = found["docker"]
    if docker is None:
        problems.append("docker is not on PATH (up builds and pushes the images through it)")
    elif (daemon := _docker_daemon(docker)) is None:
        problems.append(f"{docker} reaches no Docker daemon (docker version fails): start it")
    if found["aws"] is None:
        problems.append("the aws CLI is not on PATH (the kubeconfig gets its token from `aws eks "
                        "get-token`)")  # fmt: skip
    if problems:
        return Check(name, FAIL, "; ".join(problems))
    kubectl = (
        ", kubectl" if found["kubectl"] else "; kubectl is missing (docs/deploy.md's checks use it)"
    )
    return Check(name, PASS, f"docker (daemon {daemon}), aws{kubectl}")
