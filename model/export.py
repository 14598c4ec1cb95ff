"""SavedModel export of the trained CNN, and checks that a directory is a servable version.

The export has one explicit signature, `serving_default`: input `images` float32 [-1, 28, 28, 1]
(raw 0-255 grey values) -> outputs `probabilities` float32 [-1, 10] and `classes` int64 [-1].
It is written with Keras 3's `ExportArchive` (the supported way to get a TF Serving SavedModel from
a Keras 3 model), so the serving graph is the Keras forward pass in inference mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from model.data import IMAGE_SHAPE
from model.errors import ExportError
from model.validate import SERVE_TAG, SIGNATURE_KEY, WARMUP_RELPATH

__all__ = [
    "EXPECTED_SIGNATURE",
    "INPUT_NAME",
    "SERVE_TAG",
    "SIGNATURE_KEY",
    "WARMUP_RELPATH",
    "check_export",
    "export_savedmodel",
    "read_signature",
]

INPUT_NAME = "images"

# What every export of this stage must declare; publish refuses anything else.
EXPECTED_SIGNATURE: dict[str, Any] = {
    "name": SIGNATURE_KEY,
    "method": "tensorflow/serving/predict",
    "inputs": {INPUT_NAME: {"dtype": "float32", "shape": [-1, *IMAGE_SHAPE]}},
    "outputs": {
        "probabilities": {"dtype": "float32", "shape": [-1, 10]},
        "classes": {"dtype": "int64", "shape": [-1]},
    },
}


def export_savedmodel(model: keras.Model, directory: Path) -> None:
    """Write `model` as a SavedModel with the `serving_default` signature above to `directory`."""

    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = model(images, training=False)
        return {
            "probabilities": probabilities,
            "classes": tf.argmax(probabilities, axis=1, output_type=tf.int64),
        }

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=SIGNATURE_KEY,
        fn=serve,
        input_signature=[tf.TensorSpec([None, *IMAGE_SHAPE], tf.float32, name=INPUT_NAME)],
    )
    archive.write_out(str(directory), verbose=False)


def read_signature(directory: Path) -> dict[str, Any]:
    """The `serving_default` signature of a SavedModel, read from saved_model.pb as TF Serving does.

    Parses the protobuf only (no graph is loaded), so it is fast and also proves the file is whole.
    """
    from model.validate import read_signatures

    return {"name": SIGNATURE_KEY, **read_signatures(directory)[SIGNATURE_KEY]}


def check_export(directory: Path) -> dict[str, Any]:
    """Raise ExportError unless `directory` is a complete, loadable export of the MNIST recipe.

    Checks what publish checks for any model (`model.validate.validate_export`) and, on top, that
    the signature is this recipe's (`EXPECTED_SIGNATURE`), so a reused export is the right one.
    Returns the `serving_default` summary.
    """
    from model.validate import validate_export

    signature = {"name": SIGNATURE_KEY, **validate_export(directory)[SIGNATURE_KEY]}
    comparable = {k: signature[k] for k in ("inputs", "outputs")}
    if comparable != {k: EXPECTED_SIGNATURE[k] for k in ("inputs", "outputs")}:
        raise ExportError(
            f"{directory}: serving_default signature {comparable} differs from the MNIST "
            f"recipe's { {k: EXPECTED_SIGNATURE[k] for k in ('inputs', 'outputs')} }"
        )
    return signature
