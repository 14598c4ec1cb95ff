"""Where Prometheus and promtool are: scripts/prometheus installs them (scripts/test calls it)."""

from __future__ import annotations

import shutil

import pytest


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH: run `bash scripts/prometheus` (Debian package)")
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_binary("promtool")
