"""The training-curves plot: whole-epoch ticks however few epochs, and the gate drawn."""

from __future__ import annotations

import pytest

from model.report import curves_figure


def _history(epochs: int) -> dict[str, list[float]]:
    rising = [0.5 + 0.4 * (e + 1) / epochs for e in range(epochs)]
    return {
        "loss": [1 - a for a in rising],
        "val_loss": [1.1 - a for a in rising],
        "accuracy": rising,
        "val_accuracy": [a - 0.05 for a in rising],
    }


@pytest.mark.parametrize("epochs", [1, 2, 3, 20])
def test_epoch_ticks_are_whole_numbers_within_the_run(epochs: int) -> None:
    figure = curves_figure(_history(epochs), "accuracy", gate=0.97, test=0.9)
    figure.canvas.draw()  # the locator places ticks at draw time
    for axes in figure.axes:
        ticks = [t for t in axes.get_xticks() if 0.5 <= t <= epochs + 0.5]
        assert ticks, f"no epoch tick with {epochs} epoch(s)"
        assert all(float(t).is_integer() for t in ticks), ticks
        assert axes.get_xlim() == (0.5, epochs + 0.5)


def test_the_metric_panel_draws_the_gate_and_the_gated_test_value() -> None:
    loss, accuracy = curves_figure(_history(1), "accuracy", gate=0.97, test=0.8125).axes
    labels = accuracy.get_legend_handles_labels()[1]
    assert labels == ["train", "validation", "gate 0.97", "test 0.8125"]
    gate = next(line for line in accuracy.get_lines() if line.get_label() == "gate 0.97")
    assert set(gate.get_ydata()) == {0.97}
    assert loss.get_legend_handles_labels()[1] == ["train", "validation"]


def test_without_a_gate_nothing_extra_is_drawn() -> None:
    accuracy = curves_figure(_history(2), "accuracy").axes[1]
    assert accuracy.get_legend_handles_labels()[1] == ["train", "validation"]


def test_a_refused_run_says_so_above_the_curves() -> None:
    refused = curves_figure(_history(1), "accuracy", 0.97, 0.5, refused=True)
    assert refused.get_suptitle().startswith("REFUSED")
    assert curves_figure(_history(1), "accuracy", 0.97, 0.99).get_suptitle() == ""


def test_the_panel_follows_the_gate_metric() -> None:
    history = {"loss": [3.0, 2.0], "val_loss": [3.5, 2.5], "mae": [60.0, 45.0], "val_mae": [61, 47]}
    _, mae = curves_figure(history, "mae", gate=50, test=40.16).axes
    assert mae.get_title() == "mae"
    assert mae.get_legend_handles_labels()[1] == ["train", "validation", "gate 50", "test 40.16"]
