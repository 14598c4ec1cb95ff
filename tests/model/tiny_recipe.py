"""A throwaway recipe: all that adding one takes, one module (this) and one registry line.

A linear regression on 200 synthetic rows of three features (no data set, seconds to train), gated
on its own metric and flag: `--max-error`, which no other recipe declares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cli.args import positive_float
from model.train import Gate, Recipe, Split


@dataclass(frozen=True, kw_only=True)
class Tiny(Recipe):
    name = "tiny"
    source = "numpy.random.default_rng(0): y = x . (1.5, -2, 0.5) + 3 + noise (sd 0.1)"
    gate = Gate(
        metric="mae",
        label="test MAE",
        flag="--max-error",
        default=0.5,
        parse=positive_float,
        decimals=3,
    )
    signature = {
        "inputs": {"x": {"dtype": "float32", "shape": [-1, 3]}},
        "outputs": {"y": {"dtype": "float32", "shape": [-1]}},
    }

    epochs: int = 20
    batch_size: int = 16
    learning_rate: float = 0.05
    test_fraction: float = 0.2

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(200, 3)).astype(np.float32)
        y = x @ np.array([1.5, -2.0, 0.5], np.float32) + 3.0 + rng.normal(0, 0.1, 200)
        return x, y.astype(np.float32)

    def build(self, split: Split) -> Any:
        import keras

        x = keras.Input(shape=(3,), name="x")
        model = keras.Model({"x": x}, keras.ops.squeeze(keras.layers.Dense(1)(x), axis=1))
        model.compile(keras.optimizers.Adam(self.learning_rate), loss="mse", metrics=["mae"])
        return model

    def evaluate(self, model: Any, split: Split) -> dict[str, Any]:
        predicted = model.predict(self.inputs(split.x_test), verbose=0)
        return {"test": {"mae": float(np.mean(np.abs(predicted - split.y_test)))}}
