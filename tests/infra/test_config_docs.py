"""The README's config and outputs tables are equal to the code."""

from __future__ import annotations

import json
import re

from infra.capture import REPO_ROOT
from infra.config_keys import KEYS
from infra.outputs import OUTPUTS


def _section(name: str) -> str:
    text = (REPO_ROOT / "README.md").read_text()
    match = re.search(rf"<!-- section:{name} -->(.*?)<!-- /section:{name} -->", text, re.S)
    assert match, f"README has no {name} section"
    return match.group(1)


def _rows(section: str) -> list[list[str]]:
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    cells = [[c.strip() for c in row.strip().strip("|").split(" | ")] for row in rows]
    return cells[1:]  # drop the header; the |---| separator does not start with "| "


def _code(cell: str) -> str:
    assert cell.startswith("`") and cell.endswith("`"), cell
    return cell[1:-1]


def test_config_table_equals_declared_keys() -> None:
    documented = {}
    for key, type_, default, description in _rows(_section("config")):
        documented[_code(key)] = (type_, json.loads(_code(default)), description)
    expected = {
        k.name: (f"array of {k.items}" if k.items else k.type, k.default, k.description)
        for k in KEYS
    }
    assert documented == expected


def test_outputs_table_equals_exports() -> None:
    documented = {_code(name): description for name, description in _rows(_section("outputs"))}
    assert documented == OUTPUTS
