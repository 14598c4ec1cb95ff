"""Fixtures of the model-stage tests: one tiny real training run, shared by the session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from model.train import HyperParameters, TrainArgs, TrainResult, train
from tests.model.tf1_models import build_half_plus_two

# 300 digits -> 210 train / 45 validation / 45 test; one epoch trains in a few seconds.
TINY_LIMIT = 300


def tiny_args(out: Path, **overrides: object) -> TrainArgs:
    """Arguments of a one-epoch run on a small stratified slice (gate off unless overridden)."""
    values: dict[str, object] = {
        "out": out,
        "limit": TINY_LIMIT,
        "min_accuracy": 0.0,
        "hyperparameters": HyperParameters(epochs=1),
    }
    values.update(overrides)
    return TrainArgs(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """A real (tiny) training run: DIR/mnist/1 plus DIR/mnist/reports/1."""
    return train(tiny_args(tmp_path_factory.mktemp("train")))


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
