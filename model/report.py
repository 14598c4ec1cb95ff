"""The training report beside an export: metrics.json, training_curves.png, confusion_matrix.png.

Layout: `DIR/<name>/reports/<version>/`; a run the accuracy gate refused writes its report to
`DIR/<name>/reports/<version>-refused/` (metrics.json has ``"refused": true``) and exports nothing.
A report sits beside the version directories, not inside one, so it is never uploaded as part of
the model, and TF Serving ignores it (it loads only integer-named directories). Plots use
matplotlib's `Figure` directly (Agg canvas, no pyplot global state), so nothing needs a display.
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
REFUSED_SUFFIX = "-refused"


def report_dir(out_dir: Path, name: str, version: int) -> Path:
    """Where the report of `<name>/<version>` lives under a training output directory."""
    return out_dir / name / REPORTS_DIR / str(version)


def refused_report_dir(out_dir: Path, name: str, version: int) -> Path:
    """Where the report of a run the accuracy gate refused lives: never mistaken for an export's
    report (publish reads `<version>/`), and replaced by the next refusal of the same version."""
    return out_dir / name / REPORTS_DIR / f"{version}{REFUSED_SUFFIX}"


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


def curves_figure(
    history: Mapping[str, Sequence[float]],
    min_accuracy: float | None = None,
    test_accuracy: float | None = None,
    refused: bool = False,
) -> Figure:
    """Loss and accuracy per epoch, training against validation; the accuracy panel also draws
    the gate (`min_accuracy`) and the test accuracy the gate judged, at the last epoch."""
    figure = Figure(figsize=(10, 4), layout="constrained")
    if refused:
        figure.suptitle("REFUSED by the accuracy gate: nothing was exported", color="tab:red")
    epochs = np.arange(1, len(history["loss"]) + 1)
    for axes, metric in zip(figure.subplots(1, 2), ("loss", "accuracy"), strict=True):
        axes.plot(epochs, history[metric], marker="o", label="train")
        axes.plot(epochs, history[f"val_{metric}"], marker="o", label="validation")
        if metric == "accuracy" and min_accuracy is not None:
            axes.axhline(
                min_accuracy, color="tab:red", linestyle="--", label=f"gate {min_accuracy:g}"
            )
        if metric == "accuracy" and test_accuracy is not None:
            axes.plot(
                [epochs[-1]],
                [test_accuracy],
                marker="*",
                markersize=12,
                linestyle="none",
                color="tab:green",
                label=f"test {test_accuracy:.4f}",
            )
        axes.set_xlabel("epoch")
        # Epochs are whole: half an epoch of margin each side, and a tick only on integers
        # (`min_n_ticks=1`, else a single epoch falls back to fractional ticks).
        axes.set_xlim(0.5, len(epochs) + 0.5)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        axes.set_ylabel(metric)
        axes.set_title(metric)
        axes.grid(alpha=0.3)
        axes.legend()
    return figure


def plot_curves(
    history: Mapping[str, Sequence[float]],
    path: Path,
    min_accuracy: float | None = None,
    test_accuracy: float | None = None,
    refused: bool = False,
) -> None:
    """Write `curves_figure` to `path` (PNG)."""
    curves_figure(history, min_accuracy, test_accuracy, refused).savefig(path, dpi=100)


def plot_confusion(matrix: np.ndarray, accuracy: float, path: Path, suffix: str = "") -> None:
    """The test split's confusion matrix with a count in every cell; `suffix` ends the title."""
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
    axes.set_title(f"test confusion matrix (accuracy {accuracy:.4f}){suffix}")
    figure.savefig(path, dpi=100)


def write_report(directory: Path, metrics: Mapping[str, Any]) -> None:
    """Write metrics.json and both plots into `directory` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / METRICS_FILE).write_text(metrics_json(metrics))
    plot_curves(
        metrics["history"],
        directory / CURVES_FILE,
        metrics.get("min_accuracy"),
        metrics["test"]["accuracy"],
        bool(metrics.get("refused")),
    )
    plot_confusion(
        np.asarray(metrics["confusion_matrix"]),
        metrics["test"]["accuracy"],
        directory / CONFUSION_FILE,
        " - REFUSED by the gate" if metrics.get("refused") else "",
    )
