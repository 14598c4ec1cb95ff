"""The `diabetes` recipe: disease progression one year on, from ten clinical measurements.

A regression on scikit-learn's bundled diabetes data (442 patients, read from a CSV inside the
package by `sklearn.datasets.load_diabetes`; nothing is downloaded). The raw, unscaled
measurements go in (age in years, sex 1/2, BMI, blood pressure, six serum values); normalization is
a layer inside the graph, fitted on the training split, so clients send what a clinic records.

Signature `serving_default`: ten named inputs, one per feature, each float32 [-1] (`FEATURES`) ->
`progression` float32 [-1] (the dataset's quantitative progression score, 25-346). Gate: the test
split's mean absolute error, `--max-mae` (50); predicting the training mean scores about 64, a
linear regression 43, this network about 40. Report: the curves and `predictions.png`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cli.args import positive_float
from model.errors import DataError
from model.train import Gate, Recipe, Split

if TYPE_CHECKING:
    import keras
    from matplotlib.figure import Figure

FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")


@dataclass(frozen=True, kw_only=True)
class Diabetes(Recipe):
    name = "diabetes"
    source = "sklearn.datasets.load_diabetes"
    gate = Gate(
        metric="mae",
        label="test MAE",
        flag="--max-mae",
        default=50.0,
        parse=positive_float,
        decimals=2,
    )
    signature = {
        "inputs": {name: {"dtype": "float32", "shape": [-1]} for name in FEATURES},
        "outputs": {"progression": {"dtype": "float32", "shape": [-1]}},
    }

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 5e-3
    hidden_units: tuple[int, ...] = (16,)
    test_fraction: float = 0.2

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """Raw measurements float32 [442, 10] (columns `FEATURES`), progression float32 [442]."""
        from sklearn.datasets import load_diabetes

        try:
            bunch = load_diabetes(scaled=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read scikit-learn's bundled diabetes data ({exc})") from exc
        if tuple(bunch.feature_names) != FEATURES:
            raise DataError(f"unexpected diabetes features {bunch.feature_names}; want {FEATURES}")
        return bunch.data.astype(np.float32), bunch.target.astype(np.float32)

    def inputs(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Columns of a [N, 10] matrix as the signature's named inputs."""
        return {name: np.ascontiguousarray(features[:, i]) for i, name in enumerate(FEATURES)}

    def build(self, split: Split) -> keras.Model:
        """Named scalar inputs -> stacked -> normalized (fitted on x_train) -> MLP -> score."""
        import keras

        inputs = {name: keras.Input(shape=(), name=name, dtype="float32") for name in FEATURES}
        x = keras.ops.stack([inputs[name] for name in FEATURES], axis=1)
        normalize = keras.layers.Normalization(axis=-1, name="normalize")
        normalize.adapt(split.x_train)
        x = normalize(x)
        for i, units in enumerate(self.hidden_units):
            x = keras.layers.Dense(units, activation="relu", name=f"hidden{i}")(x)
        x = keras.layers.Dense(1, name="standardized")(x)
        # The network predicts a standardized score; the graph maps it back to the data's scale.
        mean, spread = float(split.y_train.mean()), float(split.y_train.std())
        x = keras.layers.Rescaling(spread, offset=mean, name="scale")(x)
        model = keras.Model(inputs, keras.ops.squeeze(x, axis=1), name="diabetes_mlp")
        model.compile(
            optimizer=keras.optimizers.Adam(self.learning_rate), loss="mse", metrics=["mae"]
        )
        return model

    def evaluate(self, model: keras.Model, split: Split) -> dict[str, Any]:
        predicted = model.predict(self.inputs(split.x_test), verbose=0).astype(np.float64)
        errors = predicted - split.y_test
        total = float(np.sum((split.y_test - split.y_test.mean()) ** 2))
        return {
            "test": {
                "mae": float(np.mean(np.abs(errors))),
                "rmse": float(np.sqrt(np.mean(errors**2))),
                "r2": 1 - float(np.sum(errors**2)) / total if total else 0.0,
                # always predicting the training mean
                "baseline_mae": float(np.mean(np.abs(split.y_test - split.y_train.mean()))),
                "predicted": [round(float(v), 2) for v in predicted],
                "actual": [float(v) for v in split.y_test],
            }
        }

    def plots(self, metrics: dict[str, Any]) -> dict[str, Figure]:
        """Predicted against actual progression on the test split."""
        from matplotlib.figure import Figure

        test = metrics["test"]
        figure = Figure(figsize=(5.5, 5), layout="constrained")
        axes = figure.subplots()
        axes.scatter(test["actual"], test["predicted"], s=12, alpha=0.7)
        low, high = min(test["actual"]), max(test["actual"])
        axes.plot([low, high], [low, high], color="grey", linestyle="--", label="perfect")
        axes.set_xlabel("actual progression")
        axes.set_ylabel("predicted progression")
        gate = f"gate ≤ {metrics['max_mae']:g}"
        axes.set_title(f"test split: MAE {test['mae']:.1f} ({gate}), R² {test['r2']:.2f}")
        axes.legend()
        return {"predictions.png": figure}

    def headline(self, metrics: dict[str, Any]) -> str:
        test = metrics["test"]
        return (
            f"test MAE {test['mae']:.2f} (gate {metrics['max_mae']}; predicting the mean: "
            f"{test['baseline_mae']:.2f}), R² {test['r2']:.3f}"
        )
