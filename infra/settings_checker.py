"""The problem collector every stack-settings check writes to, and the small readers it uses.

Checks append problems instead of raising, so one run reports everything that is wrong with a
stack; `infra.settings_checks.parse_settings` raises once at the end.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

from infra.config_keys import KEYS_BY_NAME, ConfigKey, NestedObject
from infra.settings_types import Problem

# ---------------------------------------------------------------------------------------------
# Type checks: a value's JSON type must match its declaration before any rule looks at it.

_PY_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def type_ok(key: ConfigKey, value: Any) -> bool:
    if not _PY_TYPES[key.type](value):
        return False
    return key.items is None or all(_PY_TYPES[key.items](v) for v in value)


class Checker:
    """Collects problems instead of stopping at the first one."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def fail(self, key: str, message: str) -> None:
        self.problems.append(Problem(key, message))

    def int_range(self, key: str, value: Any, low: int, high: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"{value!r} is not an integer")
            return low
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            self.fail(key, f"{value} is out of range: use a value {bound}")
        return value

    def cidr(self, key: str, value: str) -> None:
        try:
            ipaddress.IPv4Network(value, strict=True)
        except ValueError as exc:
            self.fail(key, f"{value!r} is not an IPv4 CIDR ({exc})")

    def declared_range(self, key: str, value: Any, declared: ConfigKey) -> int:
        """``int_range`` with the bounds declared in :mod:`infra.config_keys`."""
        return self.int_range(key, value, declared.minimum or 0, declared.maximum)

    def one_of(self, key: str, value: Any, declared: ConfigKey) -> None:
        if value not in declared.choices:
            *first, last = (str(c) for c in declared.choices)
            self.fail(key, f"{value!r}: use {', '.join(first)} or {last}")

    def unknown_fields(self, key: str, given: Mapping[str, Any], allowed: set[str]) -> None:
        for extra in sorted(set(given) - allowed):
            self.fail(key, f"unknown field {extra!r}; known fields: {', '.join(sorted(allowed))}")


def field_value(spec: Mapping[str, Any], declared: ConfigKey) -> Any:
    """A nested field's value, or its declared default (``None`` when it is required)."""
    return spec.get(declared.name, None if declared.required else declared.default)


def bounded(
    c: Checker, key: str, spec: Mapping[str, Any], declared: NestedObject, name: str
) -> int:
    """The integer field ``name`` of the object at ``key``, within its declared bounds."""
    return c.declared_range(f"{key}.{name}", field_value(spec, declared[name]), declared[name])


def scaling(
    c: Checker,
    key: str,
    spec: Mapping[str, Any],
    declared: NestedObject,
    min_field: str,
    max_field: str,
    desired_field: str | None,
) -> tuple[int, int, int]:
    low = bounded(c, key, spec, declared, min_field)
    high = bounded(c, key, spec, declared, max_field)
    desired = low
    if desired_field is not None:
        desired = bounded(c, key, spec, declared, desired_field)
    if low > high:
        c.fail(key, f"{min_field} {low} is greater than {max_field} {high}")
    elif desired_field is not None and not low <= desired <= high:
        c.fail(
            key,
            f"{desired_field} {desired} must lie between {min_field} {low} and {max_field} {high}",
        )
    return low, high, desired


def declared_key_range(c: Checker, v: Mapping[str, Any], key_name: str) -> None:
    c.declared_range(key_name, v[key_name], KEYS_BY_NAME[key_name])
