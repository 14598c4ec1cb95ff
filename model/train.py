"""`python -m model train`: the protocol every recipe shares, and `Recipe`, the base it fills in.

A recipe (`model/recipes/<name>.py`, registered in `model/recipes/__init__.py`) is a frozen
dataclass of its hyper-parameters that subclasses `Recipe` and supplies only its differences:
its data (`load`), network (`build`, optionally `fit`), test metrics (`evaluate`), serving
function (`serve`) behind the `signature` it declares, and its `gate` (metric, direction, default
threshold, command-line flag). `Recipe.train` owns the rest, the same for every recipe:

    DIR/<name>/<version>/          the SavedModel (+ assets.extra/tf_serving_warmup_requests)
    DIR/<name>/reports/<version>/  metrics.json, training_curves.png and the recipe's plots

Both are built in a hidden `.partial-<token>/` directory and renamed into place only after the gate
passed and the export was checked, so a refused or interrupted run leaves no version directory
behind (TF Serving ignores non-integer names). A refused run leaves only its report, in
`reports/<version>-refused/`, and takes no version number.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import math
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from contracts.store import StoreURIError, parse_version_dir, validate_model_name, validate_version
from model import export, report
from model.errors import AccuracyGateError, DataError, ExportError, TrainError
from model.tf_runtime import tensorflow

if TYPE_CHECKING:  # keras imports TensorFlow (seconds); `python -m model --help` does without
    import keras
    import tensorflow as tf
    from matplotlib.figure import Figure

# An unstratified split keeps at least this many samples in each part (stratified: every class).
MIN_SAMPLES_PER_PART = 10


@dataclass(frozen=True)
class Gate:
    """What a recipe is judged on: a test metric, the threshold it must meet and its flag.

    The flag says the direction: `--min-<x>` refuses below the threshold, `--max-<x>` above it.
    """

    metric: str  # a key of `evaluate()["test"]` and of the Keras history (and `val_<metric>`)
    label: str  # how messages name it, e.g. "test accuracy"
    flag: str  # e.g. "--min-accuracy"; recipes that share a flag share its meaning
    default: float
    parse: Callable[[str], float]  # the flag's argparse type (`cli.args`); also checks the API
    decimals: int = 4

    def __post_init__(self) -> None:
        if not self.flag.startswith(("--min-", "--max-")):
            raise ValueError(f"gate flag {self.flag!r} must start with --min- or --max-")

    @property
    def minimum(self) -> bool:
        return self.flag.startswith("--min-")

    @property
    def key(self) -> str:
        """The threshold's key in metrics.json and argparse's dest, e.g. `min_accuracy`."""
        return self.flag.removeprefix("--").replace("-", "_")

    def passes(self, value: float, threshold: float) -> bool:
        return value >= threshold if self.minimum else value <= threshold


@dataclass(frozen=True)
class RunArgs:
    """What one run was asked to do, whatever the recipe (its epochs and batch size: the recipe)."""

    out: Path
    name: str | None = None  # default: the recipe's name
    version: int | None = None  # default: the next after those in DIR/<name>/
    seed: int = 42
    limit: int | None = None  # train on a seeded slice of this many samples
    threshold: float | None = None  # the gate's; default: the recipe's


@dataclass(frozen=True)
class Split:
    """A seeded train / validation / test split of a recipe's data."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "validation": len(self.y_val), "test": len(self.y_test)}


@dataclass(frozen=True)
class TrainResult:
    """A finished, exported run."""

    export_dir: Path
    report_dir: Path
    version: int
    wall_seconds: float
    metrics: dict[str, Any]
    headline: str  # the gate's verdict, e.g. "test accuracy 0.9787 (gate 0.97)"

    def summary(self) -> str:
        """What `python -m model train` prints at the end of a run."""
        return (
            f"{self.headline}, wall time {self.wall_seconds:.1f} s\n"
            f"exported {self.export_dir}\nreport   {self.report_dir}"
        )


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """One trainable model: the hooks below, declared by a subclass; `train` runs them."""

    name: ClassVar[str]  # the default model name and `--recipe` value
    source: ClassVar[str]  # where `load` reads the data from (metrics.json `data.source`)
    gate: ClassVar[Gate]
    # `serving_default` as `model.validate` summarises it: {"inputs": {name: {"dtype", "shape"}},
    # "outputs": {...}}, shapes with -1 for any size. The export's input specs are made from it.
    signature: ClassVar[dict[str, dict[str, dict[str, Any]]]]
    stratify: ClassVar[bool] = False  # classification: every split holds every class

    epochs: int
    batch_size: int
    val_fraction: float = 0.15
    test_fraction: float = 0.15

    # --- hooks ----------------------------------------------------------------------------------

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """All samples, features [N, ...] and targets [N], read from an installed package."""
        raise NotImplementedError

    def inputs(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Features as the signature's named inputs (default: the one input takes them whole)."""
        (name,) = self.signature["inputs"]
        return {name: features}

    def build(self, split: Split) -> keras.Model:
        """The compiled network, before training (`train` has seeded Keras)."""
        raise NotImplementedError

    def fit(self, model: keras.Model, split: Split, seed: int) -> dict[str, list[float]]:
        """Train `model`; returns Keras' per-epoch history. Default: `model.fit` on the named
        inputs, so the network takes a dict (`keras.Model({name: keras.Input(...)}, ...)`)."""
        history = model.fit(
            self.inputs(split.x_train),
            split.y_train,
            validation_data=(self.inputs(split.x_val), split.y_val),
            epochs=self.epochs,
            batch_size=self.batch_size,
            verbose=0,
        )
        return history.history

    def evaluate(self, model: keras.Model, split: Split) -> dict[str, Any]:
        """metrics.json entries: `test` (with the gate's metric) and any more the recipe keeps."""
        raise NotImplementedError

    def serve(self, model: keras.Model, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """The serving function: named inputs -> named outputs (default: the one output)."""
        (name,) = self.signature["outputs"]
        return {name: model(inputs, training=False)}

    def warmup_inputs(self, split: Split) -> list[dict[str, np.ndarray]]:
        """The warmup requests' inputs: consecutive test samples, one batch per warmup size."""
        from model.warmup import batch_slices

        return batch_slices(self.inputs(split.x_test), len(split.y_test))

    def plots(self, metrics: dict[str, Any]) -> dict[str, Figure]:
        """Report plots beside training_curves.png, by file name."""
        return {}

    def headline(self, metrics: dict[str, Any]) -> str:
        """The gate's verdict in one line (printed, and in the pipeline's summary)."""
        value, threshold = metrics["test"][self.gate.metric], metrics[self.gate.key]
        return f"{self.gate.label} {value:.{self.gate.decimals}f} (gate {threshold})"

    # --- the protocol -------------------------------------------------------------------------

    def resolve(self, run: RunArgs) -> RunArgs:
        """`run` with the recipe's defaults filled in (model name, gate threshold)."""
        threshold = self.gate.default if run.threshold is None else run.threshold
        return replace(run, name=run.name or self.name, threshold=threshold)

    def validate(self, run: RunArgs) -> None:
        """Refuse, naming every problem, what cannot be trained."""
        problems = []
        try:
            validate_model_name(run.name or self.name)
            if run.version is not None:
                validate_version(run.version)
        except StoreURIError as exc:
            problems.append(str(exc))
        for flag, value in (("--epochs", self.epochs), ("--batch-size", self.batch_size)):
            if value < 1:
                problems.append(f"{flag} must be at least 1, got {value}")
        if not 0 <= run.seed < 2**32:
            problems.append(f"--seed must be within [0, 2**32), got {run.seed}")
        try:
            self.gate.parse(repr(self.resolve(run).threshold))
        except argparse.ArgumentTypeError as exc:
            problems.append(f"{self.gate.flag}: {exc}")
        if problems:
            raise TrainError("; ".join(problems))

    def split(self, x: np.ndarray, y: np.ndarray, *, seed: int, limit: int | None = None) -> Split:
        """Seeded train / validation / test split, after a seeded `limit` slice; stratified by
        class when the recipe is, so every part holds every class. The same seed, the same split."""
        from sklearn.model_selection import train_test_split

        val, test = self.val_fraction, self.test_fraction
        if not (0 < val < 1 and 0 < test < 1 and val + test < 1):
            raise DataError(
                f"validation ({val}) and test ({test}) fractions must each be in (0, 1) and sum "
                "to less than 1"
            )
        per_part = len(np.unique(y)) if self.stratify else MIN_SAMPLES_PER_PART
        what = "every class" if self.stratify else f"at least {per_part} samples"
        if limit is not None:
            smallest = math.ceil(per_part / min(val, test, 1 - val - test))
            if not smallest <= limit <= len(y):
                raise DataError(
                    f"--limit {limit} is out of range: with these fractions it must be between "
                    f"{smallest} and {len(y)} so every split holds {what}"
                )
            if limit < len(y):
                x, _, y, _ = train_test_split(
                    x, y, train_size=limit, stratify=self._strata(y), random_state=seed
                )
        rest_x, x_test, rest_y, y_test = train_test_split(
            x, y, test_size=test, stratify=self._strata(y), random_state=seed
        )
        x_train, x_val, y_train, y_val = train_test_split(
            rest_x, rest_y, test_size=val / (1 - test), stratify=self._strata(rest_y),
            random_state=seed,
        )  # fmt: skip
        return Split(x_train, y_train, x_val, y_val, x_test, y_test)

    def _strata(self, y: np.ndarray) -> np.ndarray | None:
        return y if self.stratify else None

    def fingerprint(self, run: RunArgs, data: tuple[np.ndarray, np.ndarray] | None = None) -> str:
        """A stable hash of everything that decides the export: data, settings, code, TF version.

        Two runs with the same fingerprint produce the same model, so a caller (the local run)
        can reuse an export instead of training again (`reusable_export`).
        """
        import tensorflow as tf

        x, y = data if data is not None else self.load()
        # This module, the recipe's (and any recipe it extends) and the export's writers.
        sources = {inspect.getfile(c) for c in type(self).__mro__ if issubclass(c, Recipe)}
        sources |= {inspect.getfile(export), str(Path(__file__).with_name("warmup.py"))}
        inputs = {
            "data_sha256": _sha256(x, y),
            "recipe": self.name,
            "name": self.resolve(run).name,
            "seed": run.seed,
            "limit": run.limit,
            "hyperparameters": asdict(self),
            "code_sha256": _sha256(*(Path(s).read_bytes() for s in sorted(sources))),
            "tensorflow": tf.__version__,
        }
        return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()

    def reusable_export(self, run: RunArgs) -> Path | None:
        """The newest complete export under `DIR/<name>/` trained from the same inputs, if any."""
        run = self.resolve(run)
        model_dir, fingerprint = run.out / str(run.name), self.fingerprint(run)
        for version in reversed(existing_versions(model_dir)):
            metrics = report.read_metrics(model_dir / str(version)) or {}
            if metrics.get("inputs_fingerprint") != fingerprint:
                continue
            try:
                self.check_export(model_dir / str(version))
            except ExportError:
                continue
            return model_dir / str(version)
        return None

    def check_export(self, directory: Path) -> dict[str, Any]:
        """Publish's checks plus this recipe's signature; returns the serving_default summary."""
        return export.check_export(directory, self.signature, self.name)

    def train(self, run: RunArgs) -> TrainResult:
        """Train, evaluate, gate and export; short of the gate raise AccuracyGateError, exporting
        nothing (only the refused run's report, in `reports/<version>-refused/`)."""
        run = self.resolve(run)
        self.validate(run)
        tensorflow()  # imported here, once, without the CPU-only GPU-probe noise
        started = time.monotonic()
        model_dir = run.out / str(run.name)
        created = not model_dir.exists()
        model_dir.mkdir(parents=True, exist_ok=True)  # fail on an unwritable --out before training
        try:
            return self._train_into(model_dir, run, started)
        except BaseException:
            if created and not any(model_dir.iterdir()):
                model_dir.rmdir()  # a failed first run leaves no trace at all
            raise

    def _train_into(self, model_dir: Path, run: RunArgs, started: float) -> TrainResult:
        import keras
        import tensorflow as tf

        version = _next_version(model_dir, run.version)
        x, y = self.load()
        split = self.split(x, y, seed=run.seed, limit=run.limit)
        keras.utils.set_random_seed(run.seed)
        # Same seed, same weights, same data -> same model on a given machine; costs ~nothing here.
        tf.config.experimental.enable_op_determinism()
        model = self.build(split)
        history = self.fit(model, split, run.seed)
        metrics = {
            "model": run.name,
            "recipe": self.name,
            "version": version,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "seed": run.seed,
            "limit": run.limit,
            self.gate.key: run.threshold,
            "hyperparameters": asdict(self),
            "split": split.sizes,
            "data": {"source": self.source, "samples": len(y), "sha256": _sha256(x, y)},
            "history": {k: [round(float(v), 6) for v in vs] for k, vs in history.items()},
            **self.evaluate(model, split),
            "tensorflow_version": tf.__version__,
            "keras_version": keras.__version__,
            "git_commit": git_commit(),
            "inputs_fingerprint": self.fingerprint(run, (x, y)),
        }
        value = metrics["test"][self.gate.metric]
        if not self.gate.passes(value, run.threshold):
            metrics |= {"refused": True, "wall_time_seconds": round(time.monotonic() - started, 1)}
            refused = report.refused_report_dir(run.out, str(run.name), version)
            with _partial(model_dir, version) as partial:
                self._report(partial, metrics)
                _replace(partial, refused)
            raise AccuracyGateError(
                f"{self.gate.label} {value:.{self.gate.decimals}f} is "
                f"{'below' if self.gate.minimum else 'above'} {self.gate.flag} {run.threshold}; "
                "nothing was exported (train longer with --epochs or "
                f"{'lower' if self.gate.minimum else 'raise'} the gate); the refused run's "
                f"report is in {refused}"
            )
        final_export = model_dir / str(version)
        final_report = report.report_dir(run.out, str(run.name), version)
        with _partial(model_dir, version) as partial:
            self._export(model, split, str(run.name), partial / "export")
            metrics["wall_time_seconds"] = round(time.monotonic() - started, 1)
            self._report(partial / "report", metrics)
            if final_export.exists():  # another run took this version meanwhile
                raise TrainError(f"{final_export} appeared while training; nothing was overwritten")
            _replace(partial / "report", final_report)
            os.rename(partial / "export", final_export)  # the commit: TF Serving may load it now
        return TrainResult(
            final_export,
            final_report,
            version,
            time.monotonic() - started,
            metrics,
            self.headline(metrics),
        )

    def _report(self, directory: Path, metrics: dict[str, Any]) -> None:
        gate = self.gate
        report.write_report(directory, metrics, gate.metric, metrics[gate.key], self.plots(metrics))

    def _export(self, model: keras.Model, split: Split, name: str, directory: Path) -> None:
        import tensorflow as tf

        from model import warmup

        export.write_savedmodel(directory, model, self.serve, self.signature)

        def predict(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            tensors = {k: tf.constant(v) for k, v in batch.items()}
            return {k: v.numpy() for k, v in self.serve(model, tensors).items()}

        records = warmup.build_named_records(name, self.warmup_inputs(split), predict)
        warmup.write_warmup(directory, records)
        self.check_export(directory)  # the signature read back, the warmup file parsed


def _sha256(*parts: np.ndarray | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else np.ascontiguousarray(part).tobytes())
    return digest.hexdigest()


@contextmanager
def _partial(model_dir: Path, version: int) -> Iterator[Path]:
    """A hidden directory to build in (TF Serving ignores the name), removed whatever happens."""
    partial = model_dir / f".partial-{version}-{uuid.uuid4().hex[:8]}"
    try:
        yield partial
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _replace(built: Path, final: Path) -> None:
    """Rename a report into place over an older one (a crash between two renames, or an earlier
    refusal of the same version, leaves one behind)."""
    shutil.rmtree(final, ignore_errors=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.rename(built, final)


def existing_versions(model_dir: Path) -> list[int]:
    """Integer-named version directories under `DIR/<name>/` (what TF Serving would load)."""
    if not model_dir.is_dir():
        return []
    return sorted(
        v
        for p in model_dir.iterdir()
        if p.is_dir() and (v := parse_version_dir(p.name)) is not None
    )


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


def git_commit() -> str | None:
    """The repository's HEAD commit, or None outside a git checkout (or without git)."""
    try:
        result = subprocess.run(
            ["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None
