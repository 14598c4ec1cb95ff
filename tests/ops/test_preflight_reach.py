"""The preflight's newer checks, each failing and passing: reach of the API endpoint (egress asked
of a loopback HTTP server), the runner's tools (fake executables on PATH), the IAM simulation
(botocore's Stubber), service-linked roles and scraper subnets (moto on loopback)."""

from __future__ import annotations

import dataclasses
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.stub import Stubber

from infra.capture import REPO_ROOT, stack_config
from infra.settings import settings_from_config
from ops import preflight_account
from ops.preflight_account import check_deploy_permissions, check_service_linked_roles
from ops.preflight_checks import FAIL, PASS, SKIP, Context, check_scraper_subnets
from ops.preflight_runner import ask_egress, check_api_reachable, check_tools

DEV = settings_from_config("dev", stack_config("dev"))
PROD = settings_from_config("prod", stack_config("prod"))
ACCOUNT = "123456789012"


def _context(settings: Any = DEV, **kw: Any) -> Context:
    stack = settings.stack
    config = yaml.safe_load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    return Context(settings=settings, config=config, clients=kw.pop("clients", None), **kw)


# -- reach of the API endpoint -------------------------------------------------------------------


@pytest.fixture
def checkip() -> Iterator[tuple[str, list[str]]]:
    """A loopback stand-in for checkip.amazonaws.com: answers the address in ``answer[0]``."""
    answer = ["100.64.10.20"]
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            body = f"{answer[0]}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/", answer
        assert len(asked) <= 1  # asked once per run, whatever the checks
    finally:
        server.shutdown()


def test_public_endpoint_admits_this_machines_egress_or_not(checkip) -> None:
    url, answer = checkip
    allowed = DEV.public_access_cidrs[0]
    answer[0] = str(next(iter(__import__("ipaddress").ip_network(allowed).hosts())))
    ok = check_api_reachable(_context(egress_address=ask_egress(url)))
    assert (ok.status, ok.detail) == (
        PASS,
        f"egress {answer[0]} is in {allowed} (publicAccessCidrs)",
    )


def test_an_egress_outside_public_access_cidrs_fails(checkip) -> None:
    url, answer = checkip
    answer[0] = "192.0.2.77"
    bad = check_api_reachable(_context(egress_address=ask_egress(url)))
    assert (bad.status, bad.detail) == (
        FAIL,
        f"this machine's egress address 192.0.2.77 is not in publicAccessCidrs "
        f"({', '.join(DEV.public_access_cidrs)}): up would create the cluster and then time out "
        "on every Kubernetes object; run from the stack's deployRunner or admit this network",
    )


def test_offline_skips_and_an_unreachable_service_fails() -> None:
    offline = check_api_reachable(_context(egress_address=None))
    assert (offline.status, offline.detail) == (
        SKIP,
        "--offline: this machine's egress address was not asked",
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    down = check_api_reachable(_context(egress_address=ask_egress(f"http://127.0.0.1:{port}/")))
    assert down.status == FAIL
    assert down.detail.startswith("could not ask https://checkip.amazonaws.com for this machine")
    assert down.detail.endswith("run with --offline to skip this check")


# -- tools ---------------------------------------------------------------------------------------


def _tools(directory: Path, **bodies: str) -> str:
    directory.mkdir()
    for tool, body in bodies.items():
        path = directory / tool
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    return str(directory)


def test_tools_present(tmp_path: Path) -> None:
    path = _tools(tmp_path / "bin", docker="echo 27.3.1", aws="true", kubectl="true")
    result = check_tools(_context(tools_path=path))
    assert (result.status, result.detail) == (PASS, "docker (daemon 27.3.1), aws, kubectl")
    without = _tools(tmp_path / "bin2", docker="echo 27.3.1", aws="true")
    note = check_tools(_context(tools_path=without))
    assert (note.status, note.detail) == (
        PASS,
        "docker (daemon 27.3.1), aws; kubectl is missing (docs/deploy.md's checks use it)",
    )


def test_tools_missing_or_no_docker_daemon(tmp_path: Path) -> None:
    nothing = check_tools(_context(tools_path=_tools(tmp_path / "empty")))
    assert (nothing.status, nothing.detail) == (
        FAIL,
        "docker is not on PATH (up builds and pushes the images through it); the aws CLI is not "
        "on PATH (the kubeconfig gets its token from `aws eks get-token`)",
    )
    path = _tools(tmp_path / "bin", docker="echo 'Cannot connect' >&2; exit 1", aws="true")
    no_daemon = check_tools(_context(tools_path=path))
    assert (no_daemon.status, no_daemon.detail) == (
        FAIL,
        f"{path}/docker reaches no Docker daemon (docker version fails): start it",
    )


# -- the IAM simulation --------------------------------------------------------------------------


def _iam_stub() -> tuple[Any, Stubber]:
    client = boto3.client(
        "iam", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    stubber = Stubber(client)
    stubber.activate()
    return client, stubber


def test_deploy_permissions_name_what_is_denied(monkeypatch) -> None:
    actions = ["eks:CreateCluster", "iam:PassRole", "s3:CreateBucket"]
    monkeypatch.setattr(preflight_account, "deploy_actions", lambda ctx: actions)
    role = "arn:aws:iam::123456789012:role/sso/tfserving-dev-deployer"
    client, stubber = _iam_stub()

    def answer(denied: set[str]) -> None:
        stubber.add_response(
            "get_role",
            {"Role": {"RoleName": "tfserving-dev-deployer", "Arn": role, "Path": "/sso/",
                      "RoleId": "AROAEXAMPLEEXAMPLE789", "CreateDate": "2026-01-01",
                      "AssumeRolePolicyDocument": "{}"}},
            {"RoleName": "tfserving-dev-deployer"},
        )  # fmt: skip
        stubber.add_response(
            "simulate_principal_policy",
            {"EvaluationResults": [
                {"EvalActionName": a, "EvalDecision": "implicitDeny" if a in denied else "allowed"}
                for a in actions]},
            {"PolicySourceArn": role, "ActionNames": actions,
             "ContextEntries": preflight_account._context_entries()},
        )  # fmt: skip

    caller = "arn:aws:sts::123456789012:assumed-role/tfserving-dev-deployer/ci"
    ctx = _context(clients=lambda service: client, caller_arn=caller)
    answer({"iam:PassRole"})
    denied = check_deploy_permissions(ctx)
    assert (denied.status, denied.detail) == (
        FAIL,
        f"{role} may not call 1 of the 3 actions up needs: iam:PassRole; re-run the account "
        "bootstrap with this stack's deploy-policy.json (python -m infra.synth, then pulumi up "
        "in account/)",
    )
    answer(set())
    allowed = check_deploy_permissions(ctx)
    assert (allowed.status, allowed.detail) == (
        PASS,
        f"{role} may call all 3 actions of the deploy policy",
    )
    stubber.assert_no_pending_responses()


# -- moto on loopback ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    moto_server = pytest.importorskip("moto.server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _moto(endpoint: str, region: str = "eu-west-1") -> Any:
    cache: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in cache:
            cache[service] = boto3.client(
                service,
                endpoint_url=endpoint,
                region_name=region,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return cache[service]

    return client


def test_service_linked_roles_against_moto(moto_endpoint: str) -> None:
    clients = _moto(moto_endpoint)
    ctx = _context(clients=clients)
    needed = preflight_account.needed_service_linked_roles(ctx)
    assert preflight_account.SPOT_SLR in needed  # dev's GPU pool is SPOT
    missing = check_service_linked_roles(ctx)
    assert missing.status == FAIL
    assert missing.detail.startswith(
        "AWSServiceRoleForEC2Spot is missing and a GPU pool is SPOT: no spot node would ever start"
    )
    # What `aws iam create-service-linked-role --aws-service-name spot.amazonaws.com` leaves
    # (moto's own create_service_linked_role names roles its own way).
    clients("iam").create_role(
        RoleName="AWSServiceRoleForEC2Spot",
        Path="/aws-service-role/spot.amazonaws.com/",
        AssumeRolePolicyDocument='{"Version": "2012-10-17", "Statement": []}',
    )
    created = check_service_linked_roles(ctx)
    others = ", ".join(role for svc, role in needed if svc != "spot.amazonaws.com")
    assert (created.status, created.detail) == (
        PASS,
        f"{others} created by the services on first use (the deploy policy allows "
        "iam:CreateServiceLinkedRole for them)",
    )


def test_scraper_subnets_against_moto(moto_endpoint: str) -> None:
    clients = _moto(moto_endpoint)
    ec2 = clients("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]][:2]
    made = {
        ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=zone)["Subnet"][
            "SubnetId"
        ]: cidr
        for cidr, zone in zip(("10.20.255.0/28", "10.20.255.16/28"), zones, strict=True)
    }
    settings = dataclasses.replace(PROD, existing_vpc_id=vpc, existing_scraper_subnets=made)
    ok = check_scraper_subnets(_context(settings, clients=clients))
    assert (ok.status, ok.detail) == (PASS, f"2 subnets of {vpc} in {', '.join(sorted(zones))}")
    first, second = sorted(made)
    wrong = {first: made[first], second: "10.20.254.0/28"}
    bad = check_scraper_subnets(
        _context(dataclasses.replace(settings, existing_scraper_subnets=wrong), clients=clients)
    )
    assert (bad.status, bad.detail) == (
        FAIL,
        f"existingScraperSubnets: {second} is {made[second]}, not 10.20.254.0/28 as listed (the "
        "NetworkPolicy would admit the wrong range)",
    )
    gone = check_scraper_subnets(
        _context(
            dataclasses.replace(
                settings, existing_scraper_subnets={"subnet-0c0ffee0c0ffee0a2": "x"}
            ),
            clients=clients,
        )
    )
    assert gone.status == FAIL and gone.detail.startswith("existingScraperSubnets: InvalidSubnet")
    assert check_scraper_subnets(_context(DEV)).status == SKIP
