"""The documentation: a README that is a front door, and no relative link that leads nowhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, ROOT / "ARCHITECTURE.md", ROOT / "CONTRIBUTING.md", *sorted(ROOT.glob("docs/*.md"))]
SETUP_COMMANDS = ["scripts/local-run", "scripts/test"]

# [text](target) and ![alt](target); the target ends at whitespace or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text())  # code blocks hold no links
    text = re.sub(r"`[^`\n]*`", "", text)  # nor do inline code spans
    return LINK.findall(text)


def test_readme_is_at_most_20_kb() -> None:
    assert README.stat().st_size <= 20 * 1024


def test_readme_first_screen_holds_exactly_the_two_setup_commands() -> None:
    first_screen = "\n".join(README.read_text().splitlines()[:40])
    blocks = re.findall(r"^```bash\n(.*?)^```", first_screen, re.S | re.M)
    assert len(blocks) == 1, "the first screen has one code block: the set-up commands"
    commands = [line.split("#")[0].strip() for line in blocks[0].splitlines() if line.strip()]
    assert commands == SETUP_COMMANDS


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_files_that_exist(path: Path) -> None:
    broken = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # an absolute URL (https:, mailto:) or an anchor on the same page
        file = target.split("#", 1)[0]
        if not (path.parent / file).exists():
            broken.append(target)
    assert broken == [], f"{path.relative_to(ROOT)} links to missing files: {broken}"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(ROOT / t.split("#", 1)[0]).resolve() for t in links(README)}
    missing = [p.name for p in sorted(ROOT.glob("docs/*.md")) if p.resolve() not in linked]
    assert missing == []


MODULE_COMMAND = re.compile(r"python -m ([a-z_][a-z0-9_.]*)")
COMMAND_SOURCES = [
    *DOCS,
    *sorted(ROOT.glob(".github/workflows/*.yml")),
    *sorted(ROOT.glob("scripts/*")),
]


def test_every_python_dash_m_command_names_a_module_that_exists() -> None:
    """A renamed or removed module (infra.canary, serving.server …) leaves no doc or workflow
    pointing at it: each `python -m X` must name a module or package with a `__main__`."""
    import importlib.util

    missing = set()
    for path in COMMAND_SOURCES:
        for name in set(MODULE_COMMAND.findall(path.read_text())):
            if name in {"pytest", "pip", "venv", "json.tool"}:
                continue
            spec = importlib.util.find_spec(name)
            runnable = spec is not None and (
                spec.submodule_search_locations is None
                or importlib.util.find_spec(f"{name}.__main__") is not None
            )
            if not runnable:
                missing.add(f"{path.relative_to(ROOT)}: python -m {name}")
    assert sorted(missing) == []
