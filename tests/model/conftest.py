"""Fixtures of the model-stage tests: one tiny real training run, shared by the session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from model.recipes.mnist import Mnist
from model.train import RunArgs, TrainResult
from tests.model.tf1_models import build_half_plus_two

# 300 digits -> 210 train / 45 validation / 45 test; one epoch trains in a few seconds.
TINY_LIMIT = 300
TINY_MNIST = Mnist(epochs=1)


def tiny_run(out: Path, **overrides: object) -> RunArgs:
    """A run on a small stratified slice of the digits (gate off unless overridden)."""
    values: dict[str, object] = {"out": out, "limit": TINY_LIMIT, "threshold": 0.0}
    return RunArgs(**(values | overrides))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """A real (tiny) one-epoch mnist run: DIR/mnist/1 plus DIR/mnist/reports/1."""
    return TINY_MNIST.train(tiny_run(tmp_path_factory.mktemp("train")))


@pytest.fixture
def export_copy(trained: TrainResult, tmp_path: Path) -> Path:
    """A private copy of the trained export (DIR/mnist/1) with its report, safe to damage."""
    model_dir = tmp_path / "out" / "mnist"
    shutil.copytree(trained.export_dir, model_dir / "1")
    shutil.copytree(trained.report_dir, model_dir / "reports" / "1")
    return model_dir / "1"


@pytest.fixture
def half_plus_two(tmp_path: Path) -> Path:
    """DIR/half-plus-two/1: the TF1 graph above ('_' is not allowed in model names here)."""
    return build_half_plus_two(tmp_path / "exports" / "half-plus-two" / "1")
