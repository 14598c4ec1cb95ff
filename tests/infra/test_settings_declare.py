"""The one settings parser, on a small declaration of its own: a stack with a map of services by
name, each with a nested object (as a model's ``batching``, or a future ``scaling``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from infra.settings.declare import (
    Checks,
    SettingError,
    allowed_text,
    declarations,
    description,
    entry_name,
    parse,
    setting,
)

SEEN: list[str] = []


def _even(value: int) -> int:
    if value % 2:
        raise ValueError(f"{value} is odd: give an even number")
    return value


def _no_admin(pins: Mapping[str, str]) -> Mapping[str, str]:
    if "admin" in pins:
        raise SettingError("reserved name", "admin")
    return pins


def _lower(name: str) -> str:
    if name != name.lower():
        raise ValueError(f"{name!r}: names are lowercase")
    return name


@dataclass(frozen=True, kw_only=True)
class Scaling:
    """How one service scales."""

    signal: str = setting(doc="What to scale on.", default="cpu", choices=("cpu", "requests"))
    target: int = setting(doc="Target per pod.", minimum=1, maximum=100)
    window_seconds: int | None = setting(doc="Stabilisation window.", default=None, minimum=0)

    def check(self, c: Checks, at: str, root: Any) -> None:
        SEEN.append(at)
        if self.signal == "requests" and self.window_seconds is None:
            c.fail(f"{at}.windowSeconds", "required with signal requests")


@dataclass(frozen=True, kw_only=True)
class Service:
    """One service, by name."""

    name: str = entry_name("service", parse=_lower)
    replicas: int = setting(doc="Pods.", minimum=0)
    threads: int = setting(doc="Threads.", default=2, parse=_even)
    zones: tuple[str, ...] = setting(doc="Zones.", default=[])
    memory_mib: int = setting("memoryMiB", doc="Memory.", default=256)
    scaling: Scaling = setting(doc="Scaling.", default={"target": 50})

    def check(self, c: Checks, at: str, root: Any) -> None:
        SEEN.append(at)
        if self.replicas > root.most:
            c.fail(f"{at}.replicas", f"{self.replicas} is above most ({root.most})")


@dataclass(frozen=True, kw_only=True)
class Stack:
    """A stack."""

    stack: str
    most: int = setting(doc="Most pods of any service.", default=10, minimum=1)
    labels: Mapping[str, str] = setting(doc="Labels.", default={}, parse=_no_admin)
    services: tuple[Service, ...] = setting(doc="Services by name.", default={})

    def check(self, c: Checks, at: str, root: Any) -> None:
        SEEN.append(at or "<root>")


def _parse(values: dict[str, Any]) -> tuple[Stack, list[tuple[str, str]]]:
    SEEN.clear()
    c = Checks()
    stack = parse(Stack, values, c, stack="test")
    return stack, [(p.key, p.message) for p in c.problems]


def test_declarations_carry_key_type_default_and_bounds() -> None:
    fields = declarations(Service)
    assert list(fields) == ["replicas", "threads", "zones", "memoryMiB", "scaling"]
    assert fields["replicas"].required and not fields["threads"].required
    assert (fields["zones"].type, fields["zones"].items) == ("array", "string")
    assert fields["scaling"].nested is Scaling and fields["scaling"].type == "object"
    services = declarations(Stack)["services"]
    assert services.by_name and services.nested is Service
    assert declarations(Stack)["labels"].values == "string"
    assert allowed_text(declarations(Scaling)["target"]) == "1 to 100"
    assert description(Scaling) == "How one service scales."


def test_values_defaults_and_nested_objects_are_read() -> None:
    stack, problems = _parse({"services": {"web": {"replicas": 3, "zones": ["a"]}}})
    assert problems == []
    (web,) = stack.services
    assert (web.name, web.replicas, web.threads, web.zones, web.memory_mib) == (
        "web", 3, 2, ("a",), 256,
    )  # fmt: skip
    assert web.scaling == Scaling(signal="cpu", target=50, window_seconds=None)
    assert stack.most == 10 and dict(stack.labels) == {}
    # Children's rules run before their parent's.
    assert SEEN == ["services.web.scaling", "services.web", "<root>"]


@pytest.mark.parametrize(
    ("service", "key", "message"),
    [
        ({}, "services.web.replicas", "missing: give an integer (at least 0)"),
        ({"replicas": "3"}, "services.web.replicas", 'expected integer, got "3"'),
        ({"replicas": -1}, "services.web.replicas", "-1 is out of range: use a value at least 0"),
        ({"replicas": 1, "threads": 3}, "services.web.threads", "3 is odd: give an even number"),
        ({"replicas": 1, "zones": [1]}, "services.web.zones", "expected array of string, got [1]"),
        (
            {"replicas": 1, "cpu": 2},
            "services.web",
            "unknown field 'cpu'; known fields: memoryMiB,",
        ),
        (
            {"replicas": 1, "scaling": {"target": 50, "signal": "gpu"}},
            "services.web.scaling.signal",
            "'gpu': use cpu or requests",
        ),
        (
            {"replicas": 1, "scaling": {"target": 500}},
            "services.web.scaling.target",
            "500 is out of range: use a value between 1 and 100",
        ),
        (
            {"replicas": 1, "scaling": {"target": 5, "signal": "requests"}},
            "services.web.scaling.windowSeconds",
            "required with signal requests",
        ),
        ({"replicas": 20}, "services.web.replicas", "20 is above most (10)"),
        ("three", "services.web", "expected an object of replicas, threads, zones, memoryMiB"),
    ],
)
def test_each_problem_is_named_by_its_key(service: Any, key: str, message: str) -> None:
    _, problems = _parse({"services": {"web": service}})
    assert len(problems) == 1, problems
    assert problems[0][0] == key and problems[0][1].startswith(message)


def test_a_converter_names_a_part_of_the_value_and_a_bad_name_is_reported() -> None:
    _, problems = _parse({"labels": {"admin": "x"}, "services": {"Web": {"replicas": 1}}})
    assert problems == [
        ("labels.admin", "reserved name"),
        ("services.Web", "'Web': names are lowercase"),
    ]


def test_every_problem_is_reported_and_rules_skip_objects_holding_placeholders() -> None:
    stack, problems = _parse(
        {"most": 0, "services": {"a": {"replicas": "x"}, "b": {"replicas": 1, "threads": 1}}}
    )
    assert [key for key, _ in problems] == ["most", "services.a.replicas", "services.b.threads"]
    # Bad values were replaced (by the default, or a neutral value) so reading went on; the
    # rules of objects holding one did not run (the stack's and both services').
    assert stack.most == 10 and [s.replicas for s in stack.services] == [0, 1]
    assert SEEN == ["services.a.scaling", "services.b.scaling"]
