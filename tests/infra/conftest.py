"""Fixtures for the infra tests: each stack captured once per session (the capture is pure)."""

from __future__ import annotations

from collections.abc import Callable
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


COMPUTE_MODES = ("nodeGroups", "migrating", "autoMode")


def stack_root_in_mode(stack: str, mode: str, root: Path) -> Path:
    """A copy of the project's stack files in ``root`` with ``stack`` switched to ``mode``
    (every other setting as committed). autoMode keeps no idle node, so its GPU pools' minSize
    and desiredSize become 0 (the settings refuse anything else there)."""
    (root / "Pulumi.yaml").write_text((REPO_ROOT / "Pulumi.yaml").read_text())
    document = yaml.safe_load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text())
    config = document["config"]
    config["tfserving-eks:computeMode"] = mode
    if mode == "autoMode":
        for pool in config.get("tfserving-eks:gpuNodePools", {}).values():
            pool["minSize"] = pool["desiredSize"] = 0
    (root / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return root


@pytest.fixture(scope="session")
def mode_captures(
    captures: dict[str, StackCapture], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str, str], StackCapture]:
    """``mode_captures(stack, mode)``: the stack captured in that compute mode, once per session
    (the committed capture when the stack already runs that mode)."""
    cache: dict[tuple[str, str], StackCapture] = {}

    def get(stack: str, mode: str) -> StackCapture:
        if (stack, mode) not in cache:
            committed = yaml.safe_load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text())
            if committed["config"].get("tfserving-eks:computeMode", "nodeGroups") == mode:
                cache[(stack, mode)] = captures[stack]
            else:
                root = stack_root_in_mode(stack, mode, tmp_path_factory.mktemp(f"{stack}-{mode}"))
                cache[(stack, mode)] = capture_stack(stack, root)
        return cache[(stack, mode)]

    return get
