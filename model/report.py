"""The training report beside an export: metrics.json, training_curves.png, the recipe's plots.

Layout: `DIR/<name>/reports/<version>/`; a run the gate refused writes its report to
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
REFUSED_SUFFIX = "-refused"


def report_dir(out_dir: Path, name: str, version: int) -> Path:
    """Where the report of `<name>/<version>` lives under a training output directory."""
    return out_dir / name / REPORTS_DIR / str(version)


def refused_report_dir(out_dir: Path, name: str, version: int) -> Path:
    """Where the report of a run the gate refused lives: never mistaken for an export's
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
    except (OSError, ValueError, RecursionError):  # RecursionError: nested past Python's stack
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
    metric: str,
    gate: float | None = None,
    test: float | None = None,
    refused: bool = False,
) -> Figure:
    """Loss and the gate's `metric` per epoch, training against validation; the metric's panel
    also draws the gate's threshold and the test value the gate judged, at the last epoch."""
    figure = Figure(figsize=(10, 4), layout="constrained")
    if refused:
        figure.suptitle("REFUSED by the gate: nothing was exported", color="tab:red")
    epochs = np.arange(1, len(history["loss"]) + 1)
    for axes, name in zip(figure.subplots(1, 2), ("loss", metric), strict=True):
        axes.plot(epochs, history[name], marker="o", label="train")
        axes.plot(epochs, history[f"val_{name}"], marker="o", label="validation")
        if name == metric and gate is not None:
            axes.axhline(gate, color="tab:red", linestyle="--", label=f"gate {gate:g}")
        if name == metric and test is not None:
            axes.plot(
                [epochs[-1]],
                [test],
                marker="*",
                markersize=12,
                linestyle="none",
                color="tab:green",
                label=f"test {test:.4g}",
            )
        axes.set_xlabel("epoch")
        # Epochs are whole: half an epoch of margin each side, and a tick only on integers
        # (`min_n_ticks=1`, else a single epoch falls back to fractional ticks).
        axes.set_xlim(0.5, len(epochs) + 0.5)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        axes.set_ylabel(name)
        axes.set_title(name)
        axes.grid(alpha=0.3)
        axes.legend()
    return figure


def write_report(
    directory: Path,
    metrics: Mapping[str, Any],
    metric: str,
    gate: float,
    plots: Mapping[str, Figure],
) -> None:
    """Write metrics.json, training_curves.png (of the gate's `metric`, its threshold `gate`) and
    the recipe's `plots` (by file name) into `directory` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / METRICS_FILE).write_text(metrics_json(metrics))
    refused = bool(metrics.get("refused"))
    curves = curves_figure(metrics["history"], metric, gate, metrics["test"][metric], refused)
    for name, figure in {CURVES_FILE: curves, **plots}.items():
        figure.savefig(directory / name, dpi=100)
