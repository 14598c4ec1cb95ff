"""Component args carry no default that the program always overrides.

A default that `infra/program.py` always replaces is a second, silent copy of a stack setting
(and one that drifts: the sync interval's once said 30 s while the stack said 60). Stack defaults
live in `infra/config_keys.py` alone; an args default is only for behaviour the stack does not
expose. Read from the program's source, so a new call site is checked as soon as it is written.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import infra.program as program

SOURCE = Path(program.__file__).read_text()


def keyword_sets_by_args_class() -> dict[str, list[set[str]]]:
    calls: dict[str, list[set[str]]] = {}
    for node in ast.walk(ast.parse(SOURCE)):
        is_call = isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        if is_call and node.func.id.endswith("Args"):
            keywords = {k.arg for k in node.keywords if k.arg is not None}
            calls.setdefault(node.func.id, []).append(keywords)
    return calls


def defaulted_fields(cls: type) -> set[str]:
    return {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    }


def test_the_program_builds_component_args() -> None:
    assert len(keyword_sets_by_args_class()) >= 10


def test_no_args_default_is_always_overridden_by_the_program() -> None:
    overridden = {
        name: sorted(defaulted_fields(getattr(program, name)) & set.intersection(*calls))
        for name, calls in keyword_sets_by_args_class().items()
    }
    assert {name: fields for name, fields in overridden.items() if fields} == {}
