"""Shared readers for the rule modules. Nothing here is a policy.

Resource inputs reach a rule as camelCase engine property names. During a real
`pulumi preview` pulumi-policy wraps them in proxies that raise `UnknownValueError` when a
rule touches a value that is not known yet (an Output of a resource still to be created):

- a resource rule lets that error escape; pulumi-policy then reports "can't run policy ...
  during preview" as an advisory diagnostic, which is the honest answer (the value is judged
  again at `pulumi up`);
- a stack rule judges each resource through :func:`judge`, so one unknown value skips that
  resource instead of the whole rule.

Proxies are `collections.abc.Mapping`/`Sequence`, never `dict`/`list`: test with the ABCs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from pulumi_policy import PolicyResource
from pulumi_policy.proxy import UnknownValueError

T = TypeVar("T")


def get(value: Any, *path: str | int, default: Any = None) -> Any:
    """`value[p0][p1]...`, or `default` when any step is absent or of the wrong shape.

    Unknown values still raise `UnknownValueError` (see the module docstring).
    """
    current = value
    for step in path:
        if isinstance(step, int):
            if not is_list(current) or not -len(current) <= step < len(current):
                return default
            current = current[step]
        else:
            if not isinstance(current, Mapping) or step not in current:
                return default
            current = current[step]
    return current


def is_list(value: Any) -> bool:
    """A JSON array (list or pulumi-policy list proxy), never a string."""
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def as_list(value: Any) -> list[Any]:
    """A JSON array as a list; a single value as a one-element list; absent as empty."""
    if value is None:
        return []
    if is_list(value):
        return list(value)
    return [value]


def truthy(value: Any) -> bool:
    """True for `true` and for the string "true": some pulumi-aws inputs (launch template EBS
    `encrypted`, `associatePublicIpAddress`) are strings in the provider schema."""
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.strip().lower() == "true"


def judge(check: Callable[[], T]) -> T | None:
    """Runs `check`; None when it touched a value unknown during preview (cannot judge)."""
    try:
        return check()
    except UnknownValueError:
        return None


def none_pass(verdicts: Sequence[bool | None]) -> bool:
    """True when there is no candidate, or every candidate was judged and none passed.

    A None verdict (cannot judge during preview) counts as a pass: it is judged at `pulumi up`.
    """
    return not verdicts or (None not in verdicts and True not in verdicts)


def parse_document(value: Any) -> Mapping[str, Any] | None:
    """An IAM/bucket policy document given as JSON text or as a structured object.

    Returns None for text that is not JSON or not an object; callers report that.
    """
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, Mapping) else None
    return None


def statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The statements of a policy document (`Statement` may be one object or a list)."""
    return [s for s in as_list(get(document, "Statement")) if isinstance(s, Mapping)]


def actions(statement: Mapping[str, Any]) -> list[str]:
    """The statement's `Action` values, lower-cased (IAM action names are case-insensitive)."""
    return [str(a).lower() for a in as_list(get(statement, "Action"))]


def resources_of(statement: Mapping[str, Any]) -> list[str]:
    return [str(r) for r in as_list(get(statement, "Resource"))]


def principal_is_public(principal: Any) -> bool:
    """`"*"` or `{"AWS": "*"}` (alone or in a list): anyone at all."""
    if principal == "*":
        return True
    if isinstance(principal, Mapping):
        return any(p == "*" for p in as_list(get(principal, "AWS")))
    return False


def deps(resource: PolicyResource, prop: str) -> list[PolicyResource]:
    """Resources that the input `prop` of `resource` was computed from."""
    return list(resource.property_dependencies.get(prop, []) or [])


def of_type(resources: Sequence[PolicyResource], *types: str) -> Iterator[PolicyResource]:
    return (r for r in resources if r.resource_type in types)
