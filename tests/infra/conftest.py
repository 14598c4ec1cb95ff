"""Fixtures for the infra tests: each stack captured once per session (the capture is pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.capture import REPO_ROOT, StackCapture, capture_stack

STACKS = tuple(sorted(p.name.split(".")[1] for p in REPO_ROOT.glob("Pulumi.*.yaml")))


@pytest.fixture(scope="session")
def captures() -> dict[str, StackCapture]:
    return {stack: capture_stack(stack) for stack in STACKS}


@pytest.fixture(scope="session")
def stack_files() -> dict[str, dict[str, Any]]:
    return {s: yaml.safe_load(Path(REPO_ROOT / f"Pulumi.{s}.yaml").read_text()) for s in STACKS}
