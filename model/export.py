"""A recipe's SavedModel export, and the check that a directory is a version of that recipe.

The export has one explicit signature, `serving_default`, whose named inputs are made from the
recipe's declared signature and whose outputs are what the recipe's serving function returns. It is
written with Keras 3's `ExportArchive` (the supported way to get a TF Serving SavedModel from a
Keras 3 model), so the serving graph is the Keras forward pass in inference mode.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from model.errors import ExportError
from model.validate import SIGNATURE_KEY

PREDICT_METHOD = "tensorflow/serving/predict"


def write_savedmodel(
    directory: Path,
    model: Any,
    serve: Callable[[Any, dict[str, Any]], dict[str, Any]],
    signature: dict[str, dict[str, dict[str, Any]]],
) -> None:
    """Write `model` to `directory` with `serving_default` = `serve(model, inputs)`, its inputs
    named and typed as `signature` declares (the names a TensorSpec carries become the
    signature's input keys; the dict `serve` returns, its output keys)."""
    import keras
    import tensorflow as tf

    specs = {
        name: tf.TensorSpec([None if d == -1 else d for d in t["shape"]], t["dtype"], name=name)
        for name, t in signature["inputs"].items()
    }
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=SIGNATURE_KEY, fn=lambda inputs: serve(model, inputs), input_signature=[specs]
    )
    archive.write_out(str(directory), verbose=False)


def check_export(
    directory: Path, signature: dict[str, dict[str, dict[str, Any]]], recipe: str
) -> dict[str, Any]:
    """Raise ExportError unless `directory` is a complete, loadable export with `signature`.

    Checks what publish checks for any model (`model.validate.validate_export`) and, on top, that
    `serving_default` is the recipe's, so a reused export is the right one. Returns its summary.
    """
    from model.validate import validate_export

    found = validate_export(directory)[SIGNATURE_KEY]
    expected = {"method": PREDICT_METHOD, **signature}
    if found != expected:
        raise ExportError(
            f"{directory}: serving_default signature {found} differs from the {recipe} recipe's "
            f"{expected}"
        )
    return found
