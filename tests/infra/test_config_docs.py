"""Pulumi.yaml's config block and docs/configuration.md are generated from the declared settings
(infra/settings/) and committed up to date; the outputs table in docs/deploy.md equals the code."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from infra import config_docs
from infra.capture import REPO_ROOT
from infra.outputs import OUTPUTS
from infra.settings import Settings, declarations

REGENERATE = f"run `{config_docs.COMMAND}` to regenerate"


def test_generated_files_are_up_to_date() -> None:
    stale = config_docs.stale_files()
    assert not stale, f"stale: {', '.join(map(str, stale))}; {REGENERATE} them"


@pytest.fixture
def copy_root(tmp_path: Path) -> Path:
    for path in config_docs.generated_files():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / path, tmp_path / path)
    return tmp_path


@pytest.mark.parametrize("path", [config_docs.PULUMI_YAML, config_docs.CONFIGURATION_MD])
def test_check_names_a_hand_edited_file(copy_root: Path, path: Path) -> None:
    target = copy_root / path
    target.write_text(target.read_text().replace("Waiting period", "Wait", 1))
    assert config_docs.stale_files(copy_root) == [path]


def test_check_exits_1_and_names_the_stale_file(
    monkeypatch: pytest.MonkeyPatch, copy_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (copy_root / config_docs.CONFIGURATION_MD).unlink()
    monkeypatch.setattr(config_docs, "REPO_ROOT", copy_root)
    assert config_docs.main(["--check"]) == 1
    assert f"{config_docs.CONFIGURATION_MD} is stale: {REGENERATE}" in capsys.readouterr().err
    assert config_docs.main([]) == 0
    assert config_docs.main(["--check"]) == 0


def test_only_the_config_block_of_pulumi_yaml_is_replaced() -> None:
    current = "name: x\n# about config\nconfig:\n  old:\n    type: string\n\n  # gone\nmain: .\n"
    rendered = config_docs.render_pulumi_yaml(current)
    assert rendered.startswith("name: x\n# about config\nconfig:\n  vpcCidr:\n")
    assert rendered.endswith("    default: {}\nmain: .\n")
    assert "old:" not in rendered


def _rows(markdown: str, heading: str) -> dict[str, list[str]]:
    """The rows of the table under ``heading`` (up to the next heading), by key."""
    section = markdown.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]
    return {c[0].strip("`"): c[1:] for c in cells}


def test_configuration_md_documents_every_key_and_nested_field() -> None:
    markdown = (REPO_ROOT / config_docs.CONFIGURATION_MD).read_text()
    top = _rows(markdown, "| Key |")
    assert list(top) == list(declarations(Settings))
    assert top["availabilityZoneCount"][:3] == ["integer", "`2`", "2 to 3"]
    for path, cls in config_docs.nested_objects():
        fields = _rows(markdown, f"## `{path}`")
        assert list(fields) == list(declarations(cls)), path
    assert _rows(markdown, "## `models.<name>`")["minReplicas"][:3] == [
        "integer",
        "required",
        "at least 0",
    ]


def _deploy_doc_section(name: str) -> str:
    text = (REPO_ROOT / "docs" / "deploy.md").read_text()
    match = re.search(rf"<!-- section:{name} -->(.*?)<!-- /section:{name} -->", text, re.S)
    assert match, f"docs/deploy.md has no {name} section"
    return match.group(1)


def _code(cell: str) -> str:
    assert cell.startswith("`") and cell.endswith("`"), cell
    return cell[1:-1]


def test_outputs_table_equals_exports() -> None:
    rows = [line for line in _deploy_doc_section("outputs").splitlines() if line.startswith("| ")]
    cells = [[c.strip() for c in row.strip().strip("|").split(" | ")] for row in rows[1:]]
    documented = {_code(name): description for name, description in cells}
    assert documented == OUTPUTS
