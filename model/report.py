"""The training report beside an export: metrics.json, training_curves.png, confusion_matrix.png.

Layout: `DIR/<name>/reports/<version>/`. It sits beside the version directories, not inside one,
so it is never uploaded as part of the model, and TF Serving ignores it (it loads only
integer-named directories). Plots use matplotlib's `Figure` directly (Agg canvas, no pyplot
global state), so nothing here needs a display.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

REPORTS_DIR = "reports"
METRICS_FILE = "metrics.json"
CURVES_FILE = "training_curves.png"
CONFUSION_FILE = "confusion_matrix.png"


def report_dir(out_dir: Path, name: str, version: int) -> Path:
    """Where the report of `<name>/<version>` lives under a training output directory."""
    return out_dir / name / REPORTS_DIR / str(version)


def report_dir_for_export(export_dir: Path) -> Path:
    """The report directory that belongs to an export `DIR/<name>/<version>`."""
    return export_dir.parent / REPORTS_DIR / export_dir.name


def read_metrics(export_dir: Path) -> dict[str, Any] | None:
    """The metrics.json written with an export, or None when there is none (or it is unreadable)."""
    path = report_dir_for_export(export_dir) / METRICS_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def metrics_json(metrics: Mapping[str, Any]) -> str:
    """Indented JSON with each list of numbers on one line (so a confusion matrix reads as one)."""
    text = json.dumps(metrics, indent=2, sort_keys=True)
    return (
        re.sub(
            r"\[\s*([-0-9.eE+,\s]*?)\s*\]",
            lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]",
            text,
        )
        + "\n"
    )


def plot_curves(history: Mapping[str, Sequence[float]], path: Path) -> None:
    """Loss and accuracy per epoch, training against validation."""
    figure = Figure(figsize=(10, 4), layout="constrained")
    epochs = np.arange(1, len(history["loss"]) + 1)
    for axes, metric in zip(figure.subplots(1, 2), ("loss", "accuracy"), strict=True):
        axes.plot(epochs, history[metric], marker="o", label="train")
        axes.plot(epochs, history[f"val_{metric}"], marker="o", label="validation")
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(metric)
        axes.set_title(metric)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.savefig(path, dpi=100)


def plot_confusion(matrix: np.ndarray, accuracy: float, path: Path) -> None:
    """The test split's confusion matrix with a count in every cell."""
    figure = Figure(figsize=(6, 5.5), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, col), count in np.ndenumerate(matrix):
        colour = "white" if count > threshold else "black"
        axes.text(col, row, str(count), ha="center", va="center", color=colour, fontsize=8)
    ticks = np.arange(matrix.shape[0])
    axes.set_xticks(ticks)
    axes.set_yticks(ticks)
    axes.set_xlabel("predicted digit")
    axes.set_ylabel("true digit")
    axes.set_title(f"test confusion matrix (accuracy {accuracy:.4f})")
    figure.savefig(path, dpi=100)


def write_report(directory: Path, metrics: Mapping[str, Any]) -> None:
    """Write metrics.json and both plots into `directory` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / METRICS_FILE).write_text(metrics_json(metrics))
    plot_curves(metrics["history"], directory / CURVES_FILE)
    plot_confusion(
        np.asarray(metrics["confusion_matrix"]),
        metrics["test"]["accuracy"],
        directory / CONFUSION_FILE,
    )
