"""The CNN that the model stage trains, and the augmentation applied to its training batches.

The network is the seed's: Conv2D 32 3x3 relu, MaxPool 2x2, Flatten, Dense 64 relu, Dense 10
softmax, trained with Adam on sparse categorical cross-entropy. It starts with a Rescaling layer so
the served model takes raw 0-255 grey values (the same values clients send to TF Serving).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from model.data import IMAGE_SHAPE, NUM_CLASSES

if TYPE_CHECKING:  # keras imports TensorFlow (seconds): only the functions below need it, so
    import keras  # `python -m model --help` and the samples command start without it


@dataclass(frozen=True)
class Augmentation:
    """Random geometric changes to training images (never applied at evaluation or serving).

    With only 3,500 training digits the plain CNN overfits and stays near 0.96 on the test split;
    small rotations and shifts (what handwriting varies by) lift it to about 0.975.
    """

    rotation: float = 0.03  # fraction of a full turn: about +-11 degrees
    translation: float = 0.08  # fraction of the image: about +-2 pixels

    @property
    def enabled(self) -> bool:
        return self.rotation > 0 or self.translation > 0


def build_network() -> keras.Model:
    """The uncompiled CNN: `images` [batch, 28, 28, 1] raw 0-255 -> softmax over 10 digits."""
    import keras

    inputs = keras.Input(shape=IMAGE_SHAPE, name="images", dtype="float32")
    x = keras.layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = keras.layers.Conv2D(32, 3, activation="relu", name="conv")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="mnist_cnn")


def compile_network(model: keras.Model, *, learning_rate: float, total_steps: int) -> None:
    """Adam with a cosine-decayed learning rate (ends near zero, which steadies the last epochs)."""
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=total_steps)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def build_augmenter(augmentation: Augmentation, seed: int) -> keras.Sequential:
    """The layers that perturb a training batch; zero-filled so strokes never wrap around."""
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomRotation(
                augmentation.rotation, fill_mode="constant", fill_value=0.0, seed=seed
            ),
            keras.layers.RandomTranslation(
                augmentation.translation,
                augmentation.translation,
                fill_mode="constant",
                fill_value=0.0,
                seed=seed + 1,
            ),
        ],
        name="augmentation",
    )
