"""TF Serving warmup records: `assets.extra/tf_serving_warmup_requests` inside a version directory.

TF Serving replays these PredictionLog records (a TFRecord file) when it loads a version, before
marking it AVAILABLE, so the first real request does not pay for graph initialisation. One record
per batch size warms the shapes that request batching produces. Each record carries real test
samples and, in `predict_log.response`, what the trained model answered for them: TF Serving
ignores the response, while tests and the local server use it to check a replay.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from contracts.rules import WARMUP_MAX_BATCH
from model.errors import ExportError

# Reading is publish's check too: it lives there (no import cycle), re-exported here.
from model.validate import MAX_RECORDS, SIGNATURE_KEY, WARMUP_RELPATH, read_warmup

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "MAX_RECORDS",
    "batch_slices",
    "build_named_records",
    "read_warmup",
    "write_warmup",
]

# Powers of two up to WARMUP_MAX_BATCH cover the batch sizes a typical `allowed_batch_sizes` list
# pads to; a larger record would fail warmup wherever max_batch_size is smaller (see tfconfig).
DEFAULT_BATCH_SIZES: tuple[int, ...] = tuple(2**i for i in range(WARMUP_MAX_BATCH.bit_length()))


def batch_slices(inputs: Mapping[str, np.ndarray], count: int) -> list[dict[str, np.ndarray]]:
    """Consecutive slices of named `inputs` (`count` samples), one per warmup batch size that
    still fits (a `--limit` slice may hold fewer test samples than all sizes need)."""
    ends = np.cumsum(DEFAULT_BATCH_SIZES)
    sizes = [s for s, end in zip(DEFAULT_BATCH_SIZES, ends, strict=True) if end <= count] or [1]
    starts = np.cumsum([0, *sizes])[:-1]
    return [
        {name: np.ascontiguousarray(value[start : start + size]) for name, value in inputs.items()}
        for start, size in zip(starts, sizes, strict=True)
    ]


def build_named_records(
    model_name: str,
    batches: Sequence[Mapping[str, np.ndarray]],
    predict: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]],
    signature_name: str = SIGNATURE_KEY,
) -> list[prediction_log_pb2.PredictionLog]:
    """One PredictionLog per batch of named input tensors, for any signature's inputs."""
    if not 0 < len(batches) <= MAX_RECORDS:
        raise ExportError(f"warmup needs 1 to {MAX_RECORDS} records, got {len(batches)}")
    spec = model_pb2.ModelSpec(name=model_name, signature_name=signature_name)
    records = []
    for batch in batches:
        request = predict_pb2.PredictRequest(
            model_spec=spec,
            inputs={name: tf.make_tensor_proto(value) for name, value in batch.items()},
        )
        response = predict_pb2.PredictResponse(
            model_spec=spec,
            outputs={name: tf.make_tensor_proto(value) for name, value in predict(batch).items()},
        )
        records.append(
            prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request, response=response)
            )
        )
    return records


def write_warmup(export_dir: Path, records: Sequence[prediction_log_pb2.PredictionLog]) -> Path:
    """Write `records` to `export_dir/assets.extra/tf_serving_warmup_requests`."""
    path = export_dir / WARMUP_RELPATH
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record.SerializeToString())
    return path
