"""The shared protocol on the mnist recipe: training, the gate, the exported SavedModel, its
warmup records, the report and the reuse of an unchanged export."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from model.errors import AccuracyGateError, TrainError
from model.recipes.mnist import Mnist, load_mnist
from model.report import CURVES_FILE, METRICS_FILE
from model.train import RunArgs
from model.validate import WARMUP_RELPATH
from model.warmup import read_warmup

from .conftest import TINY_LIMIT, TINY_MNIST, tiny_run


@pytest.fixture(scope="module")
def loaded(trained):
    return tf.saved_model.load(str(trained.export_dir))


def test_layout_and_atomic_rename(trained) -> None:
    model_dir = trained.export_dir.parent
    assert trained.export_dir == model_dir / "1"
    assert trained.report_dir == model_dir / "reports" / "1"
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "reports"]  # no .partial-*
    for name in ("saved_model.pb", "variables/variables.index", WARMUP_RELPATH):
        assert (trained.export_dir / name).is_file(), name
    assert not (trained.export_dir / METRICS_FILE).exists()  # the report is beside, not inside


def test_signature_has_the_contracted_names_dtypes_and_shapes(loaded) -> None:
    signature = loaded.signatures["serving_default"]
    _, inputs = signature.structured_input_signature
    assert list(inputs) == ["images"]
    assert inputs["images"].dtype == tf.float32
    assert inputs["images"].shape.as_list() == [None, 28, 28, 1]
    outputs = signature.structured_outputs
    assert sorted(outputs) == ["classes", "probabilities"]
    assert outputs["probabilities"].dtype == tf.float32
    assert outputs["probabilities"].shape.as_list() == [None, 10]
    assert outputs["classes"].dtype == tf.int64
    assert outputs["classes"].shape.as_list() == [None]


def test_export_takes_raw_pixels_and_agrees_with_metrics(trained, loaded) -> None:
    split = TINY_MNIST.split(*load_mnist(), seed=42, limit=TINY_LIMIT)
    result = loaded.signatures["serving_default"](images=tf.constant(split.x_test))
    probabilities = result["probabilities"].numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    classes = result["classes"].numpy()
    np.testing.assert_array_equal(classes, probabilities.argmax(axis=1))
    # The export, fed raw 0-255 test digits, scores exactly what training recorded.
    assert float(np.mean(classes == split.y_test)) == trained.metrics["test"]["accuracy"]


def test_warmup_records_parse_and_replay(trained, loaded) -> None:
    records = read_warmup(trained.export_dir / WARMUP_RELPATH)
    # 45 test digits hold batches 1+2+4+8+16 = 31; 32 more would not fit.
    assert [r.predict_log.request.inputs["images"].tensor_shape.dim[0].size for r in records] == [
        1, 2, 4, 8, 16,
    ]  # fmt: skip
    serve = loaded.signatures["serving_default"]
    for record in records:
        request = record.predict_log.request
        assert request.model_spec.name == "mnist"
        assert request.model_spec.signature_name == "serving_default"
        images = tf.make_ndarray(request.inputs["images"])
        assert images.dtype == np.float32 and images.max() > 1.0  # real digits, raw values
        replay = serve(images=tf.constant(images))
        recorded = record.predict_log.response.outputs
        np.testing.assert_allclose(
            replay["probabilities"].numpy(), tf.make_ndarray(recorded["probabilities"]), atol=1e-5
        )
        np.testing.assert_array_equal(
            replay["classes"].numpy(), tf.make_ndarray(recorded["classes"])
        )


def test_metrics_and_plots(trained) -> None:
    metrics = json.loads((trained.report_dir / METRICS_FILE).read_text())
    assert metrics == json.loads(json.dumps(trained.metrics))
    assert metrics["split"] == {"train": 210, "validation": 45, "test": 45}
    assert set(metrics["history"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 1 for v in metrics["history"].values())
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 45
    assert np.trace(matrix) / 45 == pytest.approx(metrics["test"]["accuracy"])
    assert metrics["seed"] == 42 and metrics["hyperparameters"]["epochs"] == 1
    assert metrics["tensorflow_version"] == tf.__version__
    images, labels = load_mnist()
    sha256 = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
    assert metrics["data"] == {"source": Mnist.source, "samples": 5000, "sha256": sha256}
    assert metrics["recipe"] == "mnist" and metrics["min_accuracy"] == 0.0
    assert metrics["git_commit"] is None or len(metrics["git_commit"]) == 40
    for name in (CURVES_FILE, "confusion_matrix.png"):
        assert (trained.report_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fingerprint_is_stable_and_finds_the_export(trained) -> None:
    out = trained.export_dir.parent.parent
    run = tiny_run(out)
    assert TINY_MNIST.fingerprint(run) == trained.metrics["inputs_fingerprint"]
    assert TINY_MNIST.reusable_export(run) == trained.export_dir
    # The gate does not shape the model: another threshold reuses the same export.
    assert TINY_MNIST.reusable_export(tiny_run(out, threshold=0.5)) == trained.export_dir
    changed = tiny_run(out, seed=43)
    assert TINY_MNIST.fingerprint(changed) != TINY_MNIST.fingerprint(run)
    assert TINY_MNIST.reusable_export(changed) is None
    longer = Mnist(epochs=2)
    assert longer.fingerprint(run) != TINY_MNIST.fingerprint(run)
    assert longer.reusable_export(run) is None


def test_gate_refuses_exports_nothing_and_keeps_its_report_marked_refused(tmp_path: Path) -> None:
    with pytest.raises(AccuracyGateError, match=r"below --min-accuracy 1.0; nothing was exported"):
        TINY_MNIST.train(tiny_run(tmp_path, limit=200, threshold=1.0))
    model_dir = tmp_path / "mnist"
    assert sorted(p.name for p in model_dir.iterdir()) == ["reports"]  # no version, no partial
    refused = model_dir / "reports" / "1-refused"
    assert sorted(p.name for p in refused.iterdir()) == [
        "confusion_matrix.png",
        "metrics.json",
        "training_curves.png",
    ]
    metrics = json.loads((refused / "metrics.json").read_text())
    assert metrics["refused"] is True and metrics["min_accuracy"] == 1.0
    assert metrics["test"]["accuracy"] < 1.0
    # The refusal does not take the version: the next run that passes exports version 1.
    assert TINY_MNIST.train(tiny_run(tmp_path, limit=200)).version == 1


def test_existing_version_is_never_overwritten(trained) -> None:
    out = trained.export_dir.parent.parent
    before = (trained.export_dir / "saved_model.pb").read_bytes()
    with pytest.raises(TrainError, match="already exists; versions are immutable"):
        TINY_MNIST.train(tiny_run(out, version=1))
    assert (trained.export_dir / "saved_model.pb").read_bytes() == before


@pytest.mark.parametrize(
    ("recipe", "overrides", "message"),
    [
        (Mnist(), {"name": "Bad Name"}, "invalid model name"),
        (Mnist(), {"version": 0}, "invalid model version"),
        (Mnist(), {"threshold": 1.5}, r"--min-accuracy: expected a number in \[0, 1\]"),
        (Mnist(), {"threshold": float("nan")}, "--min-accuracy: expected a number"),
        (Mnist(), {"seed": -1}, "--seed must be within"),
        (Mnist(epochs=0), {}, "--epochs must be at least 1"),
        (Mnist(batch_size=0), {}, "--batch-size must be at least 1"),
    ],
)
def test_bad_arguments_are_refused_before_training(
    tmp_path: Path, recipe: Mnist, overrides: dict, message: str
) -> None:
    with pytest.raises(TrainError, match=message):
        recipe.train(RunArgs(out=tmp_path, **overrides))
    assert list(tmp_path.iterdir()) == []
