"""What the tests of the operator tools share: a copy of the project's stack files to edit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ops import model_labels

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project's stack files; model_labels edits the copies and asks no store
    unless a test names one."""
    root = tmp_path / "project"
    root.mkdir()
    for path in ROOT.glob("Pulumi*.yaml"):
        shutil.copy(path, root / path.name)
    monkeypatch.setattr(model_labels, "ROOT", root)
    monkeypatch.delenv(model_labels.STORE_ENV, raising=False)
    return root
