"""The `diabetes` recipe: disease progression one year on, from ten clinical measurements.

Not an image classifier: a regression on scikit-learn's bundled diabetes data (442 patients, read
from a CSV inside the package by `sklearn.datasets.load_diabetes`; nothing is downloaded). The raw,
unscaled measurements go in (age in years, sex 1/2, BMI, blood pressure, six serum values) and
normalization is a layer inside the graph, fitted on the training split, so clients send what a
clinic records.

Signature `serving_default` (method predict): ten named inputs, one per feature, each float32 [-1]
(`FEATURES`) -> `progression` float32 [-1] (the dataset's quantitative progression score, 25-346).
The gate is the test split's mean absolute error (`--max-mae`); predicting the training mean scores
about 64, a linear regression 43, this network about 40.

Layout and commit are the MNIST recipe's (`model.train`): `DIR/<name>/<version>/` and
`DIR/<name>/reports/<version>/` (metrics.json, training_curves.png, predictions.png), built in a
hidden partial directory and renamed into place only after the gate passed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from model.errors import AccuracyGateError, DataError, ExportError, TrainError
from model.report import METRICS_FILE, metrics_json, report_dir
from model.run_checks import run_problems

FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
OUTPUT = "progression"
SIGNATURE_KEY = "serving_default"
EXPECTED_SIGNATURE: dict[str, Any] = {
    "method": "tensorflow/serving/predict",
    "inputs": {name: {"dtype": "float32", "shape": [-1]} for name in FEATURES},
    "outputs": {OUTPUT: {"dtype": "float32", "shape": [-1]}},
}
CURVES_FILE = "training_curves.png"
PREDICTIONS_FILE = "predictions.png"
WARMUP_BATCH_SIZES = (1, 2, 4, 8, 16)


@dataclass(frozen=True)
class DiabetesHyperParameters:
    """Training settings; the defaults reach a test MAE near 40 in a few seconds on 2 cores."""

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 5e-3
    hidden_units: tuple[int, ...] = (16,)
    val_fraction: float = 0.15
    test_fraction: float = 0.2


@dataclass(frozen=True)
class DiabetesArgs:
    """What `python -m model train --recipe diabetes` was asked to do."""

    out: Path
    name: str = "diabetes"
    version: int | None = None
    seed: int = 42
    max_mae: float = 50.0
    limit: int | None = None
    hyperparameters: DiabetesHyperParameters = field(default_factory=DiabetesHyperParameters)

    def validate(self) -> None:
        hp = self.hyperparameters
        problems = run_problems(self.name, self.version, self.seed, hp.epochs, hp.batch_size)
        if not self.max_mae > 0:
            problems.append(f"--max-mae must be a positive number, got {self.max_mae}")
        if self.limit is not None and not 50 <= self.limit <= 442:
            problems.append(f"--limit {self.limit} is out of range: the data has 50-442 patients")
        if problems:
            raise TrainError("; ".join(problems))


@dataclass(frozen=True)
class DiabetesResult:
    export_dir: Path
    report_dir: Path
    version: int
    test_mae: float
    wall_seconds: float
    metrics: dict[str, Any]


def inputs_fingerprint(args: DiabetesArgs) -> str:
    """A stable hash of what decides the export (data, settings, code, TF), as `model.train`'s."""
    import json

    import tensorflow as tf

    x, y = load_diabetes()
    code = b"".join((Path(__file__).parent / m).read_bytes() for m in ("diabetes.py", "warmup.py"))
    inputs = {
        "data_sha256": hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest(),
        "name": args.name,
        "seed": args.seed,
        "limit": args.limit,
        "hyperparameters": asdict(args.hyperparameters),
        "code_sha256": hashlib.sha256(code).hexdigest(),
        "tensorflow": tf.__version__,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def find_reusable_export(out: Path, name: str, fingerprint: str) -> Path | None:
    """`model.train.find_reusable_export` with this recipe's export check."""
    from model import train

    return train.find_reusable_export(out, name, fingerprint, check=check_export)


def load_diabetes() -> tuple[np.ndarray, np.ndarray]:
    """The raw measurements float32 [442, 10] (columns `FEATURES`) and progression float32 [442]."""
    from sklearn.datasets import load_diabetes as sklearn_load

    try:
        bunch = sklearn_load(scaled=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read scikit-learn's bundled diabetes data ({exc})") from exc
    if tuple(bunch.feature_names) != FEATURES:
        raise DataError(f"unexpected diabetes features {bunch.feature_names}; expected {FEATURES}")
    return bunch.data.astype(np.float32), bunch.target.astype(np.float32)


def as_inputs(features: np.ndarray) -> dict[str, np.ndarray]:
    """Columns of a [N, 10] matrix as the signature's named inputs."""
    return {name: np.ascontiguousarray(features[:, i]) for i, name in enumerate(FEATURES)}


def split(
    x: np.ndarray, y: np.ndarray, args: DiabetesArgs
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Seeded train / validation / test split (after a seeded `--limit` slice)."""
    from sklearn.model_selection import train_test_split

    hp = args.hyperparameters
    if args.limit is not None and args.limit < len(y):
        x, _, y, _ = train_test_split(x, y, train_size=args.limit, random_state=args.seed)
    rest_x, x_test, rest_y, y_test = train_test_split(
        x, y, test_size=hp.test_fraction, random_state=args.seed
    )
    x_train, x_val, y_train, y_val = train_test_split(
        rest_x, rest_y, test_size=hp.val_fraction / (1 - hp.test_fraction), random_state=args.seed
    )
    return {"train": (x_train, y_train), "validation": (x_val, y_val), "test": (x_test, y_test)}


def build_network(x_train: np.ndarray, y_train: np.ndarray, hp: DiabetesHyperParameters) -> Any:
    """Named scalar inputs -> stacked -> normalized (fitted on x_train) -> MLP -> progression."""
    import keras

    inputs = {name: keras.Input(shape=(), name=name, dtype="float32") for name in FEATURES}
    x = keras.ops.stack([inputs[name] for name in FEATURES], axis=1)
    normalize = keras.layers.Normalization(axis=-1, name="normalize")
    normalize.adapt(x_train)
    x = normalize(x)
    for i, units in enumerate(hp.hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden{i}")(x)
    x = keras.layers.Dense(1, name="standardized")(x)
    # The network predicts a standardized score; the graph maps it back to the dataset's scale.
    x = keras.layers.Rescaling(float(y_train.std()), offset=float(y_train.mean()), name="scale")(x)
    outputs = keras.ops.squeeze(x, axis=1)
    return keras.Model(inputs, outputs, name="diabetes_mlp")


def export_savedmodel(model: Any, directory: Path) -> None:
    import keras
    import tensorflow as tf

    def serve(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {OUTPUT: model(features, training=False)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=SIGNATURE_KEY,
        fn=serve,
        input_signature=[{n: tf.TensorSpec([None], tf.float32, name=n) for n in FEATURES}],
    )
    archive.write_out(str(directory), verbose=False)


def check_export(directory: Path) -> dict[str, Any]:
    """Publish's checks plus this recipe's signature; returns the serving_default summary."""
    from model.validate import validate_export

    signature = validate_export(directory)[SIGNATURE_KEY]
    if signature != EXPECTED_SIGNATURE:
        raise ExportError(f"{directory}: serving_default {signature} is not the diabetes recipe's")
    return signature


def _fit(parts: dict[str, tuple[np.ndarray, np.ndarray]], args: DiabetesArgs) -> tuple[Any, Any]:
    import keras

    hp = args.hyperparameters
    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_val, y_val) = parts["train"], parts["validation"]
    model = build_network(x_train, y_train, hp)
    model.compile(optimizer=keras.optimizers.Adam(hp.learning_rate), loss="mse", metrics=["mae"])
    history = model.fit(
        as_inputs(x_train),
        y_train,
        validation_data=(as_inputs(x_val), y_val),
        epochs=hp.epochs,
        batch_size=hp.batch_size,
        verbose=0,  # 30 epochs of four batches each: the summary line says more
    )
    return model, history.history


def _evaluate(model: Any, parts: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    x_test, y_test = parts["test"]
    predicted = model.predict(as_inputs(x_test), verbose=0).astype(np.float64)
    errors = predicted - y_test
    baseline = float(np.mean(np.abs(y_test - parts["train"][1].mean())))
    total = float(np.sum((y_test - y_test.mean()) ** 2))
    return {
        "mae": float(np.mean(np.abs(errors))),
        "rmse": float(np.sqrt(np.mean(errors**2))),
        "r2": 1 - float(np.sum(errors**2)) / total if total else 0.0,
        "baseline_mae": baseline,  # always predicting the training mean
        "predicted": [round(float(v), 2) for v in predicted],
        "actual": [float(v) for v in y_test],
    }


def write_report(directory: Path, metrics: dict[str, Any]) -> None:
    """metrics.json, training_curves.png (loss and MAE per epoch), predictions.png (test split)."""
    from matplotlib.figure import Figure

    directory.mkdir(parents=True, exist_ok=True)
    (directory / METRICS_FILE).write_text(metrics_json(metrics))
    history = metrics["history"]
    figure = Figure(figsize=(10, 4), layout="constrained")
    epochs = np.arange(1, len(history["loss"]) + 1)
    for axes, metric in zip(figure.subplots(1, 2), ("loss", "mae"), strict=True):
        axes.plot(epochs, history[metric], label="train")
        axes.plot(epochs, history[f"val_{metric}"], label="validation")
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.set_yscale("log")
        axes.grid(alpha=0.3)
        axes.legend()
    figure.savefig(directory / CURVES_FILE, dpi=100)
    test = metrics["test"]
    figure = Figure(figsize=(5.5, 5), layout="constrained")
    axes = figure.subplots()
    axes.scatter(test["actual"], test["predicted"], s=12, alpha=0.7)
    low, high = min(test["actual"]), max(test["actual"])
    axes.plot([low, high], [low, high], color="grey", linestyle="--", label="perfect")
    axes.set_xlabel("actual progression")
    axes.set_ylabel("predicted progression")
    axes.set_title(
        f"test split: MAE {test['mae']:.1f} (gate ≤ {metrics['max_mae']:g}), R² {test['r2']:.2f}"
    )
    axes.legend()
    figure.savefig(directory / PREDICTIONS_FILE, dpi=100)


def train(args: DiabetesArgs) -> DiabetesResult:
    """Train, gate on test MAE and export; above the gate raise AccuracyGateError (no export)."""
    import keras
    import tensorflow as tf

    from model.train import _next_version, git_commit
    from model.validate import WARMUP_RELPATH
    from model.warmup import build_named_records, read_warmup, write_warmup

    args.validate()
    started = time.monotonic()
    model_dir = args.out / args.name
    model_dir.mkdir(parents=True, exist_ok=True)
    version = _next_version(model_dir, args.version)
    x, y = load_diabetes()
    parts = split(x, y, args)
    model, history = _fit(parts, args)
    test = _evaluate(model, parts)
    if test["mae"] > args.max_mae:
        raise AccuracyGateError(
            f"test MAE {test['mae']:.2f} is above --max-mae {args.max_mae}; nothing was exported "
            "(train longer with --epochs or raise the gate)"
        )
    digest = hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()
    metrics = {
        "model": args.name,
        "recipe": "diabetes",
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": args.seed,
        "limit": args.limit,
        "max_mae": args.max_mae,
        "hyperparameters": asdict(args.hyperparameters),
        "split": {k: len(v[1]) for k, v in parts.items()},
        "data": {"source": "sklearn.datasets.load_diabetes", "samples": len(y), "sha256": digest},
        "features": list(FEATURES),
        "history": {k: [round(float(v), 4) for v in vs] for k, vs in history.items()},
        "test": test,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "git_commit": git_commit(),
        "inputs_fingerprint": inputs_fingerprint(args),
    }
    partial = model_dir / f".partial-{version}-{uuid.uuid4().hex[:8]}"
    final_export, final_report = model_dir / str(version), report_dir(args.out, args.name, version)
    try:
        export = partial / "export"
        export_savedmodel(model, export)
        x_test = parts["test"][0]
        sizes = [s for s in WARMUP_BATCH_SIZES if s <= len(x_test)]
        batches = [as_inputs(x_test[:size]) for size in sizes]
        records = build_named_records(
            args.name,
            batches,
            lambda batch: {OUTPUT: model.predict(dict(batch), verbose=0).astype(np.float32)},
        )
        write_warmup(export, records)
        check_export(export)
        read_warmup(export / WARMUP_RELPATH)
        metrics["wall_time_seconds"] = round(time.monotonic() - started, 1)
        write_report(partial / "report", metrics)
        if final_export.exists():
            raise TrainError(f"{final_export} appeared while training; nothing was overwritten")
        shutil.rmtree(final_report, ignore_errors=True)
        final_report.parent.mkdir(parents=True, exist_ok=True)
        os.rename(partial / "report", final_report)
        os.rename(export, final_export)  # the commit: TF Serving may load it now
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return DiabetesResult(
        final_export, final_report, version, test["mae"], time.monotonic() - started, metrics
    )
