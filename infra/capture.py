"""Runs the real program for a stack under ``pulumi.runtime`` mocks and captures what it declares.

``capture(stack)`` returns every resource (type, name, URN, parent URN, custom or component,
provider reference, inputs, custom timeouts) in the order the program declares them (registration
RPCs finish in an order that varies between runs; declaration order does not).
``capture_stack(stack)`` also returns the stack outputs. Inputs are the camelCase property bags
the engine would receive, secrets replaced by ``"[secret]"`` and resource references by their
URN. This is the project's offline "synth" core (docs/contracts.md): synth, the policy runner
and tests use it.

Config comes from ``Pulumi.<stack>.yaml`` over the defaults declared in ``Pulumi.yaml``, handed to
the runtime as the engine would (strings, structured values as JSON). No Pulumi CLI, plugin,
network or credentials are needed; the mocks answer with realistic ARNs, ids, endpoints and the
few data-source calls the program makes, so dependent inputs look like a real deployment's.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import config as runtime_config
from pulumi.runtime import mocks, settings

from infra.naming import PROJECT
from infra.settings import full_name

REPO_ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "111122223333"
SECRET = "[secret]"
UNKNOWN = "[unknown]"
# Property-value signatures of the Pulumi wire format (sdk/go/common/resource/properties.go).
_SIG = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
_RESOURCE_SIG = "5cf8f73096256a8f31e491e813e4eb8e"
_UNKNOWN_VALUE = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


class CaptureError(Exception):
    """The stack's files are missing or malformed, or the program failed under mocks."""


@dataclass(frozen=True)
class CapturedResource:
    """One declared resource, as the engine received it."""

    urn: str
    type: str
    name: str
    parent: str | None
    custom: bool
    provider: str | None
    inputs: dict[str, Any]
    # The ``custom_timeouts`` option as the engine received it (only the set ones); a resource
    # option, not an input, so not part of the ``resources.json`` record.
    custom_timeouts: dict[str, str] = field(default_factory=dict)
    # URNs of the ``depends_on`` resources (an option too, not part of ``resources.json``).
    dependencies: tuple[str, ...] = ()
    # The ``import_`` option: the id of an existing resource to adopt instead of creating.
    import_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The plain record of docs/contracts.md (``resources.json`` entries)."""
        return {
            "urn": self.urn,
            "type": self.type,
            "name": self.name,
            "parent": self.parent,
            "custom": self.custom,
            "provider": self.provider,
            "inputs": self.inputs,
        }


@dataclass(frozen=True)
class StackCapture:
    stack: str
    resources: list[CapturedResource]
    outputs: dict[str, Any] = field(default_factory=dict)


def _plain(value: Any) -> Any:
    """Wire JSON -> plain values: secrets masked, references to URNs, integral floats to ints."""
    if isinstance(value, dict):
        sig = value.get(_SIG)
        if sig == _SECRET_SIG:
            return SECRET
        if sig == _RESOURCE_SIG:
            return value.get("urn")
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the wire format has only doubles
    if value == _UNKNOWN_VALUE:
        return UNKNOWN
    return value


def _token(*parts: str, length: int = 17) -> str:
    """A stable hex id derived from the resource's identity (same stack -> same ids)."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


class _Mocks(mocks.Mocks):
    """Realistic outputs for the resource types and data sources the program uses."""

    def __init__(self, stack: str, region: str) -> None:
        self.stack = stack
        self.region = region

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        t, name, region = args.typ, args.name, self.region
        state: dict[str, Any] = dict(args.inputs)
        ident = _token(self.stack, t, name)
        rid = f"{name}-{ident[:7]}"
        if t == "aws:ec2/vpc:Vpc":
            rid = f"vpc-{ident}"
        elif t == "aws:ec2/subnet:Subnet":
            rid = f"subnet-{ident}"
        elif t == "aws:ec2/eip:Eip":
            rid = f"eipalloc-{ident}"
            state.update(allocationId=rid, publicIp=f"198.51.100.{int(ident[:2], 16) % 250 + 1}")
        elif t == "aws:ec2/natGateway:NatGateway":
            rid = f"nat-{ident}"
        elif t == "aws:ec2/launchTemplate:LaunchTemplate":
            rid = f"lt-{ident}"
            state["latestVersion"] = 1
        elif t == "aws:iam/role:Role":
            state.setdefault("name", rid)
            state["arn"] = f"arn:aws:iam::{ACCOUNT}:role/{state['name']}"
        elif t == "aws:kms/key:Key":
            rid = f"{ident[:8]}-{ident[8:12]}-4{ident[13:16]}-8{ident[1:4]}-{_token(rid)[:12]}"
            state.update(keyId=rid, arn=f"arn:aws:kms:{region}:{ACCOUNT}:key/{rid}")
        elif t == "aws:eks/cluster:Cluster":
            issuer_id = _token(self.stack, "oidc", length=32).upper()
            state.update(
                arn=f"arn:aws:eks:{region}:{ACCOUNT}:cluster/{state.get('name', rid)}",
                endpoint=f"https://{issuer_id}.gr7.{region}.eks.amazonaws.com",
                certificateAuthority={"data": base64.b64encode(f"ca-{ident}".encode()).decode()},
                identities=[{"oidcs": [{"issuer": f"https://oidc.eks.{region}.amazonaws.com/id/{issuer_id}"}]}],
                vpcConfig={**state.get("vpcConfig", {}), "clusterSecurityGroupId": f"sg-{ident}"},
            )  # fmt: skip
            rid = state.get("name", rid)
        elif t == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
            host = str(state.get("url", "")).removeprefix("https://")
            state["arn"] = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{host}"
        elif t == "aws:eks/nodeGroup:NodeGroup":
            state["nodeGroupName"] = rid
            asg = f"eks-{rid}-{ident[:8]}-{ident[8:12]}-{ident[12:16]}"
            state["resources"] = [{"autoscalingGroups": [{"name": asg}]}]
            state["arn"] = f"arn:aws:eks:{region}:{ACCOUNT}:nodegroup/{rid}"
        elif t == "aws:s3/bucket:Bucket":
            rid = f"{name}-{ident[:8]}"
            state.update(bucket=rid, arn=f"arn:aws:s3:::{rid}")
        elif t == "aws:ecr/repository:Repository":
            rid = state.get("name") or rid  # a pinned name (the image mirror's) is the name
            state.update(
                name=rid,
                registryId=ACCOUNT,
                repositoryUrl=f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/{rid}",
                arn=f"arn:aws:ecr:{region}:{ACCOUNT}:repository/{rid}",
            )
        elif t == "aws:amp/workspace:Workspace":
            rid = f"ws-{ident[:8]}-{ident[8:12]}-4{ident[13:16]}-8{ident[1:4]}-{_token(rid)[:12]}"
            state["arn"] = f"arn:aws:aps:{region}:{ACCOUNT}:workspace/{rid}"
            state["prometheusEndpoint"] = (
                f"https://aps-workspaces.{region}.amazonaws.com/workspaces/{rid}/"
            )
        elif t == "aws:amp/scraper:Scraper":
            # The collector's service-linked role, with its path (AMP user guide).
            rid = f"s-{ident[:8]}-{ident[8:12]}-4{ident[13:16]}-8{ident[1:4]}-{_token(rid)[:12]}"
            state["roleArn"] = (
                f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/scraper.aps.amazonaws.com/"
                f"AWSServiceRoleForAmazonPrometheusScraper_{ident[:15]}"
            )
        elif t.startswith("aws:lb/"):
            # Elastic Load Balancing ids are the ARNs (pulumi-aws lb resources).
            kind = {"LoadBalancer": "loadbalancer/app", "TargetGroup": "targetgroup",
                    "Listener": "listener/app", "ListenerRule": "listener-rule/app"}  # fmt: skip
            part = kind.get(t.rsplit(":", 1)[1], t.rsplit(":", 1)[1].lower())
            label = (state.get("name") or state.get("namePrefix", "") + ident[:20])[:32]
            rid = f"arn:aws:elasticloadbalancing:{region}:{ACCOUNT}:{part}/{label}/{ident[:16]}"
            state["arn"] = rid
            if t == "aws:lb/loadBalancer:LoadBalancer":
                scheme = "internal-" if state.get("internal") else ""
                state["dnsName"] = f"{scheme}{name}-{ident[:10]}.{region}.elb.amazonaws.com"
                state["zoneId"] = f"Z{ident[:13].upper()}"
        elif t == "docker-build:index:Image":
            state["digest"] = f"sha256:{_token(self.stack, name, length=64)}"
        elif t.startswith("kubernetes:") and isinstance(state.get("metadata"), dict):
            meta = dict(state["metadata"])
            meta.setdefault("name", rid)  # the provider auto-names like this
            state["metadata"] = meta
        if t.startswith("aws:") and "arn" not in state:
            service = t.split(":")[1].split("/")[0]
            state["arn"] = (
                f"arn:aws:{service}:{region}:{ACCOUNT}:{t.rsplit(':', 1)[1].lower()}/{rid}"
            )
        state.setdefault("id", rid)
        return rid, state

    def call(self, args: mocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        token, region = args.token, self.region
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = [f"{region}{z}" for z in "abc"]
            ids = [f"{region[:2]}{region.split('-')[1][:1]}1-az{i}" for i in (1, 2, 3)]
            return {"names": names, "zoneIds": ids, "id": region}, []
        if token == "aws:ec2/getSubnet:getSubnet":
            # An existing VPC's subnet: a /20 per subnet id, distinct and stable.
            subnet = str(args.args.get("id", ""))
            n = int(hashlib.sha256(subnet.encode()).hexdigest(), 16) % 256
            return {"id": subnet, "cidrBlock": f"10.{n}.0.0/20", "vpcId": "vpc-mock"}, []
        if token == "aws:index/getRegion:getRegion":
            return {"name": region, "region": region, "id": region}, []
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/deployer/ci"
            return {"accountId": ACCOUNT, "arn": arn, "userId": "AROAEXAMPLE:ci", "id": ACCOUNT}, []
        if token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            endpoint = f"https://{ACCOUNT}.dkr.ecr.{region}.amazonaws.com"
            return {"userName": "AWS", "password": "mock-ecr-token", "proxyEndpoint": endpoint}, []
        return {}, []


class _Monitor(mocks.MockMonitor):
    """Records every registration (mocks.MockResourceArgs carries no parent or URN)."""

    def __init__(self, mock: _Mocks) -> None:
        super().__init__(mock)
        self.records: list[CapturedResource] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = _plain(json_format.MessageToDict(request.object))
            self.records.append(
                CapturedResource(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=request.parent or None,
                    custom=bool(request.custom),
                    provider=request.provider or None,
                    inputs=inputs,
                    custom_timeouts=json_format.MessageToDict(request.customTimeouts),
                    dependencies=tuple(request.dependencies),
                    import_id=request.importId,
                )
            )
        return response


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CaptureError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise CaptureError(f"{path} is not a YAML mapping")
    return data


def stack_config(stack: str, root: Path = REPO_ROOT) -> dict[str, Any]:
    """The stack's effective config, namespaced and decoded: Pulumi.yaml defaults overlaid by
    ``Pulumi.<stack>.yaml`` (what ``pulumi config`` would show)."""
    path = root / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        found = sorted(p.name for p in root.glob("Pulumi.*.yaml"))
        raise CaptureError(f"no stack file {path.name} in {root}; stacks: {', '.join(found)}")
    declared = _read_yaml(root / "Pulumi.yaml").get("config") or {}
    merged: dict[str, Any] = {}
    for key, spec in declared.items():
        name = key if ":" in key else full_name(key)
        if isinstance(spec, dict) and "default" in spec:
            merged[name] = spec["default"]
    merged.update(_read_yaml(path).get("config") or {})
    return merged


def _engine_form(config: Mapping[str, Any]) -> dict[str, str]:
    # The engine passes every value as a string; structured and typed values as JSON text.
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


def _ensure_event_loop() -> None:
    # The mock runtime builds futures on the thread's current loop; asyncio.run() elsewhere in
    # the process may have left none.
    try:
        asyncio.get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


def capture_stack(stack: str, root: Path = REPO_ROOT) -> StackCapture:
    """Runs ``infra.program.main`` for ``stack`` under mocks; resources and outputs."""
    from infra import program

    config = stack_config(stack, root)
    region = str(config.get("aws:region", "us-east-1"))
    monitor = _Monitor(_Mocks(stack, region))
    _ensure_event_loop()
    # Fresh runtime state for every run: a new root stack, this stack's config only.
    settings.reset_options(project=PROJECT, stack=stack, preview=False)
    runtime_config.set_all_config(_engine_form(config), [])
    mocks.set_mocks(monitor.mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    outputs: dict[str, Any] = {}

    constructed: dict[tuple[str, str], int] = {}

    def note(args: pulumi.ResourceTransformationArgs) -> None:
        # Runs synchronously in each resource's constructor: the program's declaration order.
        constructed.setdefault((args.type_, args.name), len(constructed))

    def run() -> pulumi.Output[Any]:
        pulumi.runtime.register_stack_transformation(note)
        program.main()
        root_stack = settings.get_root_resource()
        exported: dict[str, Any] = dict(getattr(root_stack, "outputs", {}))
        resolved = []
        for name, value in exported.items():
            out = pulumi.Output.from_input(value)
            resolved.append(
                pulumi.Output.all(out, out.is_secret()).apply(
                    lambda pair, name=name: outputs.__setitem__(
                        name, SECRET if pair[1] else _plain(pair[0])
                    )
                )
            )
        return pulumi.Output.all(*resolved)

    try:
        mocks.test(run)()
    finally:
        settings.reset_options(project=PROJECT, stack=stack)
        runtime_config.set_all_config({}, [])
    # RPCs complete in whatever order inputs resolve; declaration order is stable across runs.
    last = len(constructed)
    ordered = sorted(monitor.records, key=lambda r: constructed.get((r.type, r.name), last))
    return StackCapture(stack, ordered, dict(sorted(outputs.items())))


def capture(stack: str, root: Path = REPO_ROOT) -> list[CapturedResource]:
    """Every resource the program declares for ``stack``, in declaration order."""
    return capture_stack(stack, root).resources
