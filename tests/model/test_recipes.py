"""The recipe registry and switch, and the diabetes recipe: named tabular inputs, an error gate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model import recipes as registry
from model.__main__ import main
from model.errors import AccuracyGateError
from model.export import PREDICT_METHOD
from model.recipes.diabetes import FEATURES, Diabetes
from model.train import Recipe, RunArgs
from model.validate import validate_export


def test_list_recipes_prints_one_name_per_line(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["train", "--list-recipes"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.splitlines() == list(registry.recipes())


def test_every_registered_recipe_declares_what_the_protocol_needs() -> None:
    known = registry.recipes()
    assert list(known)[:2] == ["mnist", "diabetes"]  # mnist stays the default
    for name, recipe in known.items():
        assert issubclass(recipe, Recipe) and recipe.name == name
        assert set(recipe.signature) == {"inputs", "outputs"}
        recipe().validate(RunArgs(out=Path(".")))  # its defaults pass its own checks


def test_a_registry_line_that_is_not_a_recipe_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(registry, "REGISTRY", [*registry.REGISTRY, "model.train:RunArgs"])
    with pytest.raises(TypeError, match=r"model\.train:RunArgs is not a model\.train\.Recipe"):
        registry.recipes()
    monkeypatch.setattr(registry, "REGISTRY", [*registry.REGISTRY[:1], registry.REGISTRY[0]])
    with pytest.raises(TypeError, match="'mnist' is registered twice"):
        registry.recipes()


def test_a_gate_of_another_recipe_is_refused(tmp_path: Path, capsys) -> None:
    code = main(["train", "--recipe", "diabetes", "--out", str(tmp_path), "--min-accuracy", "0.9"])
    assert code == 1
    assert (
        "--min-accuracy does not apply to --recipe diabetes (its gate is --max-mae)"
        in capsys.readouterr().err
    )
    assert not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def diabetes_run(tmp_path_factory: pytest.TempPathFactory):
    return Diabetes().train(RunArgs(out=tmp_path_factory.mktemp("diabetes")))


def test_diabetes_exports_named_inputs_and_passes_its_gate(diabetes_run) -> None:
    signatures = validate_export(diabetes_run.export_dir)
    assert signatures["serving_default"] == {"method": PREDICT_METHOD, **Diabetes.signature}
    assert set(Diabetes.signature["inputs"]) == set(FEATURES)
    test = diabetes_run.metrics["test"]
    assert test["mae"] <= 50.0 < test["baseline_mae"]  # better than predicting the mean
    assert diabetes_run.export_dir.name == "1"
    assert diabetes_run.headline.startswith(f"test MAE {test['mae']:.2f} (gate 50.0; ")


def test_a_diabetes_export_is_reused_only_for_the_same_inputs(diabetes_run) -> None:
    out = diabetes_run.export_dir.parents[1]
    assert Diabetes().reusable_export(RunArgs(out=out)) == diabetes_run.export_dir
    assert Diabetes().reusable_export(RunArgs(out=out, seed=7)) is None
    assert Diabetes(hidden_units=(8,)).reusable_export(RunArgs(out=out)) is None


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
    assert metrics["max_mae"] == 50.0
    assert len(metrics["history"]["val_mae"]) == metrics["hyperparameters"]["epochs"]


def test_diabetes_gate_refuses_and_exports_nothing(tmp_path: Path) -> None:
    run = RunArgs(out=tmp_path, threshold=1.0, limit=120)
    with pytest.raises(AccuracyGateError, match=r"test MAE .* is above --max-mae 1.0; nothing"):
        Diabetes().train(run)
    model_dir = tmp_path / "diabetes"
    assert sorted(p.name for p in model_dir.iterdir()) == ["reports"]
    assert sorted(p.name for p in (model_dir / "reports").iterdir()) == ["1-refused"]
