"""The import graph: no cycles, and no arrow that runs up or sideways (ARCHITECTURE.md).

Floors, from the ground up:
  0. contracts, cli   the store layout and manifest, TF Serving config, the shared rules; the
                      argument types every command line shares. Neither imports the other.
  1. model, serving, policies, account   each stands on floor 0 alone, never on another of
                      floor 1 (account: the once-per-account bootstrap, a Pulumi project of its own)
  2. infra       the Pulumi program; its offline synth also runs the policy pack (policies.runner)
  3. ops         the operator tools (canary gate, label moves, preflight); read infra's settings
  4. devtools    the local server, benchmark and local run; may use everything, used by nothing

Read from the source with `ast` (nothing is imported), so a test can fail before any import does.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOORS = {
    "contracts": 0,
    "cli": 0,
    "model": 1,
    "serving": 1,
    "policies": 1,
    "account": 1,
    "infra": 2,
    "ops": 3,
    "devtools": 4,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_imports(path: Path) -> Iterator[str]:
    """Every project module `path` imports (absolute or relative), as a dotted name."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        yield from (n for n in names if n.split(".")[0] in FLOORS)


def graph() -> dict[str, set[str]]:
    modules = {
        module_name(p): p
        for top in FLOORS
        for p in (ROOT / top).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        # `from pkg import sub` names a module when `pkg.sub` is one, else a name inside `pkg`.
        targets = {t if t in modules else t.rpartition(".")[0] for t in project_imports(path)}
        edges[name] = {t for t in targets if t in modules and t != name}
    return edges


EDGES = graph()


def test_the_graph_covers_every_floor() -> None:
    assert {m.split(".")[0] for m in EDGES} == set(FLOORS)


@pytest.mark.parametrize("top", sorted(FLOORS))
def test_no_arrow_runs_up_or_sideways(top: str) -> None:
    wrong = sorted(
        f"{source} -> {target}"
        for source, targets in EDGES.items()
        if source.split(".")[0] == top
        for target in targets
        if (other := target.split(".")[0]) != top and FLOORS[other] >= FLOORS[top]
    )
    assert wrong == [], f"{top} (floor {FLOORS[top]}) may import only lower floors: {wrong}"


def test_no_import_cycles() -> None:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(EDGES[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(EDGES):
        if start not in state:
            visit(start, [start])
    assert cycles == []
