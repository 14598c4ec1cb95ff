"""Fixtures of the model-stage tests: one tiny real training run, shared by the session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from model.train import HyperParameters, TrainArgs, TrainResult, train

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


def build_half_plus_two(
    directory: Path, *, input_name: str = "x", extra_signature: bool = False
) -> Path:
    """An equivalent of TF Serving's `half_plus_two` test model, written here (no download).

    A TF1-style graph SavedModel built with `tf.compat.v1`: y = a * x + b with variables a = 0.5
    and b = 2.0, tagged `serve`, with `serving_default` (predict: x -> y, unknown shape as in the
    original), `classify_x_to_y` and `regress_x_to_y` (tf.Example in, scores / outputs out).
    """
    import tensorflow as tf

    v1 = tf.compat.v1
    utils = v1.saved_model.signature_def_utils
    graph = tf.Graph()
    with graph.as_default():
        a = v1.get_variable("a", shape=[], initializer=v1.constant_initializer(0.5))
        b = v1.get_variable("b", shape=[], initializer=v1.constant_initializer(2.0))
        x = v1.placeholder(tf.float32, name=input_name)
        y = tf.add(tf.multiply(a, x), b, name="y")
        serialized = v1.placeholder(tf.string, name="tf_example")
        parsed = v1.parse_example(serialized, {"x": v1.FixedLenFeature([1], tf.float32)})
        from_example = tf.add(tf.multiply(a, parsed["x"]), b, name="y_from_example")
        signatures = {
            "serving_default": utils.predict_signature_def({input_name: x}, {"y": y}),
            "classify_x_to_y": utils.classification_signature_def(
                examples=serialized, classes=None, scores=from_example
            ),
            "regress_x_to_y": utils.regression_signature_def(
                examples=serialized, predictions=from_example
            ),
        }
        if extra_signature:
            signatures["double_y"] = utils.predict_signature_def({input_name: x}, {"y2": 2 * y})
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(directory))
            builder.add_meta_graph_and_variables(
                session, [v1.saved_model.tag_constants.SERVING], signature_def_map=signatures
            )
            builder.save()
    return directory


@pytest.fixture
def half_plus_two(tmp_path: Path) -> Path:
    """DIR/half-plus-two/1: the TF1 graph above ('_' is not allowed in model names here)."""
    return build_half_plus_two(tmp_path / "exports" / "half-plus-two" / "1")
