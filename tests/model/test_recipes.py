"""The recipe switch and the diabetes recipe: named tabular inputs, an error gate, its report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model.__main__ import main
from model.diabetes import (
    EXPECTED_SIGNATURE,
    FEATURES,
    DiabetesArgs,
    find_reusable_export,
    inputs_fingerprint,
    train,
)
from model.errors import AccuracyGateError
from model.validate import validate_export


def test_list_recipes_prints_one_name_per_line(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["train", "--list-recipes"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.splitlines() == ["mnist", "diabetes"]


def test_a_gate_of_another_recipe_is_refused(tmp_path: Path, capsys) -> None:
    code = main(["train", "--recipe", "diabetes", "--out", str(tmp_path), "--min-accuracy", "0.9"])
    assert code == 1
    assert "--min-accuracy does not apply to --recipe diabetes" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def diabetes_run(tmp_path_factory: pytest.TempPathFactory):
    return train(DiabetesArgs(out=tmp_path_factory.mktemp("diabetes")))


def test_diabetes_exports_named_inputs_and_passes_its_gate(diabetes_run) -> None:
    signatures = validate_export(diabetes_run.export_dir)
    assert signatures["serving_default"] == EXPECTED_SIGNATURE
    assert set(EXPECTED_SIGNATURE["inputs"]) == set(FEATURES)
    test = diabetes_run.metrics["test"]
    assert test["mae"] <= 50.0 < test["baseline_mae"]  # better than predicting the mean
    assert diabetes_run.export_dir.name == "1"


def test_a_diabetes_export_is_reused_only_for_the_same_inputs(diabetes_run) -> None:
    out = diabetes_run.export_dir.parents[1]
    args = DiabetesArgs(out=out)
    assert find_reusable_export(out, "diabetes", inputs_fingerprint(args)) == (
        diabetes_run.export_dir
    )
    other = DiabetesArgs(out=out, seed=7)
    assert find_reusable_export(out, "diabetes", inputs_fingerprint(other)) is None


def test_diabetes_serves_raw_measurements(diabetes_run) -> None:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(diabetes_run.export_dir))
    serve = loaded.signatures["serving_default"]
    # Two patients of the data set, unscaled: normalization is inside the graph.
    rows = np.array(
        [
            [59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87],
            [48, 1, 21.6, 87, 183, 103.2, 70, 3, 3.8918, 69],
        ],
        dtype=np.float32,
    )
    out = serve(**{name: tf.constant(rows[:, i]) for i, name in enumerate(FEATURES)})
    progression = out["progression"].numpy()
    assert progression.shape == (2,) and np.all((progression > 0) & (progression < 400))


def test_diabetes_report_has_metrics_and_plots(diabetes_run) -> None:
    report = diabetes_run.report_dir
    assert {p.name for p in report.iterdir()} == {
        "metrics.json",
        "training_curves.png",
        "predictions.png",
    }
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["recipe"] == "diabetes" and metrics["data"]["samples"] == 442
    assert len(metrics["history"]["val_mae"]) == metrics["hyperparameters"]["epochs"]


def test_diabetes_gate_refuses_and_exports_nothing(tmp_path: Path) -> None:
    args = DiabetesArgs(out=tmp_path, max_mae=1.0, limit=120)
    with pytest.raises(AccuracyGateError, match=r"test MAE .* is above --max-mae 1.0"):
        train(args)
    assert sorted(p.name for p in (tmp_path / "diabetes").iterdir()) == []
