"""Helpers for the policy tests, imported as `tests.policies.support`: resource records and a
one-policy run through the runner.

Tests start from a known-good resource, change one field, and assert the exact message
(pulumi-policy-aws style). Every run goes through `policies.runner.run_pack`, the same path
synth and CI use, with pulumi-policy's own argument objects.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from policies.runner import PolicyResult, run_pack

STACK_URN = "urn:pulumi:test::tfserving-eks"


def urn_of(type_: str, name: str) -> str:
    return f"{STACK_URN}::{type_}::{name}"


def record(
    type_: str,
    name: str,
    inputs: Mapping[str, Any],
    *,
    id_: str | None = None,
    parent: str | None = None,
) -> dict[str, Any]:
    """A resource record in the capture/synth shape; `id_` lets other inputs refer to it."""
    result = {
        "urn": urn_of(type_, name),
        "type": type_,
        "name": name,
        "parent": parent,
        "custom": True,
        "provider": "",
        "inputs": copy.deepcopy(dict(inputs)),
    }
    if id_ is not None:
        result["id"] = id_
    return result


def run(
    policy: Any,
    records: Sequence[Mapping[str, Any]],
    settings: Mapping[str, Any] | None = None,
) -> list[PolicyResult]:
    """Runs one policy over `records` with optional config properties for it."""
    config = {policy.name: dict(settings)} if settings else {}
    return run_pack(records, config, policies=[policy])


def messages(
    policy: Any,
    type_: str,
    inputs: Mapping[str, Any],
    settings: Mapping[str, Any] | None = None,
) -> list[str]:
    """Messages one resource policy reports for a single resource."""
    return [r.message for r in run(policy, [record(type_, "subject", inputs)], settings)]


def mutate(inputs: Mapping[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """A deep copy of `inputs` with `change` applied."""
    copied = copy.deepcopy(dict(inputs))
    change(copied)
    return copied
