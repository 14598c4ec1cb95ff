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

SIGNATURE_KEY = "serving_default"
INPUT_NAME = "images"
SERVE_TAG = "serve"
WARMUP_RELPATH = "assets.extra/tf_serving_warmup_requests"

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


def _tensor_summary(info: Any) -> dict[str, Any]:
    shape = (
        None if info.tensor_shape.unknown_rank else [int(dim.size) for dim in info.tensor_shape.dim]
    )
    return {"dtype": tf.dtypes.as_dtype(info.dtype).name, "shape": shape}


def read_signature(directory: Path) -> dict[str, Any]:
    """The `serving_default` signature of a SavedModel, read from saved_model.pb as TF Serving does.

    Parses the protobuf only (no graph is loaded), so it is fast and also proves the file is whole.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    pb_path = directory / "saved_model.pb"
    if not pb_path.is_file():
        raise ExportError(
            f"{directory} is not a SavedModel: saved_model.pb is missing (partial copy or wrong "
            "directory?); re-run `python -m model train`"
        )
    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString(pb_path.read_bytes())
    except Exception as exc:  # protobuf raises DecodeError, not a documented subclass
        raise ExportError(
            f"{pb_path} is corrupt or truncated ({exc}); re-export the model"
        ) from exc
    graphs = [g for g in saved.meta_graphs if SERVE_TAG in g.meta_info_def.tags]
    if not graphs:
        raise ExportError(f"{pb_path} has no meta graph tagged {SERVE_TAG!r}; TF Serving needs one")
    signatures = graphs[0].signature_def
    if SIGNATURE_KEY not in signatures:
        raise ExportError(
            f"{pb_path} has no {SIGNATURE_KEY!r} signature (found {sorted(signatures)}); "
            "export with `python -m model train`"
        )
    signature = signatures[SIGNATURE_KEY]
    return {
        "name": SIGNATURE_KEY,
        "method": signature.method_name,
        "inputs": {k: _tensor_summary(v) for k, v in sorted(signature.inputs.items())},
        "outputs": {k: _tensor_summary(v) for k, v in sorted(signature.outputs.items())},
    }


def check_export(directory: Path) -> dict[str, Any]:
    """Raise ExportError unless `directory` is a complete SavedModel with this stage's signature.

    Returns the signature summary (what the manifest records).
    """
    if not directory.is_dir():
        raise ExportError(f"export {directory} does not exist or is not a directory")
    signature = read_signature(directory)
    variables = directory / "variables"
    index = variables / "variables.index"
    shards = sorted(variables.glob("variables.data-*-of-*")) if variables.is_dir() else []
    if not index.is_file() or not shards:
        raise ExportError(
            f"{directory} is a partial SavedModel: variables/variables.index or its data shards "
            "are missing; re-export the model"
        )
    # Shard names say how many there are ("-00000-of-00002"); a missing one means a partial copy.
    expected = int(shards[0].name.rsplit("-of-", 1)[1])
    if len(shards) != expected:
        raise ExportError(
            f"{directory} is a partial SavedModel: {len(shards)} of {expected} variable shards "
            "present; re-export the model"
        )
    comparable = {k: signature[k] for k in ("inputs", "outputs")}
    if comparable != {k: EXPECTED_SIGNATURE[k] for k in ("inputs", "outputs")}:
        raise ExportError(
            f"{directory}: serving_default signature {comparable} differs from the contract "
            f"{ {k: EXPECTED_SIGNATURE[k] for k in ('inputs', 'outputs')} }"
        )
    return signature
