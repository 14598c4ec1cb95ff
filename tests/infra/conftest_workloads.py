"""A small `pulumi.runtime` mock harness for the workload components' tests.

`declare(build)` runs `build()` (which instantiates components) under mocks and returns every
registered resource as a plain record with camelCase inputs, as the engine would receive them.
`as_manifest(record)` turns a captured Kubernetes resource back into the object Kubernetes would
get, ready for `kubernetes_validate`.

Imported by the `test_workloads*.py` modules (pytest only auto-loads files named conftest.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime import mocks, settings

REGION = "us-west-2"
ACCOUNT = "123456789012"
OIDC_ISSUER = "https://oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
OIDC_HOST = OIDC_ISSUER.removeprefix("https://")
OIDC_PROVIDER_ARN = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{OIDC_HOST}"
BUCKET = "tfserving-eks-dev-models-0a1b2c3d"
BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"
KMS_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SYNC_IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/tfserving-eks-sync@sha256:" + "ab" * 32
CLUSTER_NAME = "tfserving-eks-dev"


@dataclass(frozen=True)
class Declared:
    """One resource as the engine received it."""

    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict[str, Any]

    @property
    def is_kubernetes(self) -> bool:
        return self.type.startswith("kubernetes:")


def _plain(value: Any) -> Any:
    # The engine's wire format has no ints: numbers arrive as floats. Give back ints where they
    # were ints so assertions and schema checks see what the program wrote.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class _Mocks(mocks.Mocks):
    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        if args.typ == "aws:iam/role:Role":
            state["arn"] = f"arn:aws:iam::{ACCOUNT}:role/{args.name}-0a1b2c3"
        return f"{args.name}-id", state

    def call(self, args: mocks.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


class _Monitor(mocks.MockMonitor):
    """Records parent URNs too, which `MockResourceArgs` does not carry."""

    def __init__(self, recorder: list[Declared]) -> None:
        super().__init__(_Mocks())
        self.recorder = recorder

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = pulumi.runtime.rpc.deserialize_properties(request.object)
            self.recorder.append(
                Declared(
                    request.type, request.name, request.parent, request.custom, _plain(dict(inputs))
                )
            )
        return response


def declare(build: Callable[[], Any]) -> list[Declared]:
    """Run `build` under mocks; return every resource it declared, in registration order.

    `build` returns what should be awaited (for example a component's outputs), so every child
    has registered before this returns.
    """
    recorder: list[Declared] = []
    # A fresh runtime (new root stack) so earlier runs in this process cannot leak in.
    settings.reset_options(project="tfserving-eks", stack="test", preview=False)
    mocks.set_mocks(
        _Mocks(), project="tfserving-eks", stack="test", preview=False, monitor=_Monitor(recorder)
    )
    mocks.test(build)()
    return recorder


def as_manifest(record: Declared) -> dict[str, Any]:
    """The Kubernetes object a captured resource stands for (apiVersion/kind from its inputs)."""
    manifest = {k: v for k, v in record.inputs.items() if v is not None}
    assert manifest.get("apiVersion") and manifest.get("kind"), record.type
    return manifest


def by_type(records: list[Declared], type_: str) -> list[Declared]:
    return [r for r in records if r.type == type_]


def one(records: list[Declared], type_: str, prefix: str = "") -> Declared:
    """The single resource of this type (whose logical name starts with `prefix`)."""
    found = [r for r in by_type(records, type_) if r.name.startswith(prefix)]
    assert len(found) == 1, f"expected one {type_}, found {[r.name for r in found]}"
    return found[0]


def all_containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Init (sidecar) containers and regular containers of a pod spec."""
    return [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]
