"""Replay of ``assets.extra/tf_serving_warmup_requests`` before a version serves.

The file is a TFRecord of ``tensorflow.serving.PredictionLog`` protos, TF Serving's warmup format.
Each record runs ``iterations`` times through the version being loaded (through the batcher too,
when batching is on, as in TF Serving); any failure fails the load, so a version whose warmup
breaks never serves. At most 1000 records, like TF Serving's ``WarmupConsts::kMaxNumRecords``;
each predict record's inputs are held to the same declared-size limit as a gRPC request, so a
warmup file cannot expand a broadcast value past the server's memory either.
"""

from __future__ import annotations

import logging
import time

from google.protobuf.message import DecodeError
from tensorflow_serving.apis import prediction_log_pb2

from devtools.server import inference
from devtools.server.errors import DataLoss, InvalidArgument, Unimplemented
from devtools.server.limits import DEFAULT_MAX_TENSOR_BYTES, RequestLimits
from devtools.server.servable import DEFAULT_SIGNATURE, Servable
from devtools.server.tensors import check_request_inputs, tensor_proto_to_ndarray

log = logging.getLogger(__name__)

WARMUP_FILE = ("assets.extra", "tf_serving_warmup_requests")
MAX_RECORDS = 1000


def run_warmup(
    servable: Servable, iterations: int = 1, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES
) -> int:
    """Replay every record `iterations` times; returns how many records were read."""
    path = servable.path.joinpath(*WARMUP_FILE)
    if not path.is_file():
        log.info("No warmup data file found at %s", path)
        return 0
    import tensorflow as tf

    start = time.monotonic()
    count = 0
    try:
        for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            record = prediction_log_pb2.PredictionLog()
            try:
                record.ParseFromString(raw)
            except DecodeError:
                raise InvalidArgument(
                    f"Failed to parse warmup record: {raw[:64]!r} from {path}"
                ) from None
            for _ in range(max(iterations, 1)):
                _replay(servable, record, RequestLimits(max_tensor_bytes))
            count += 1
            if count > MAX_RECORDS:
                raise InvalidArgument(
                    f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) at {path}"
                )
    except tf.errors.OpError as exc:  # truncated or corrupt TFRecord file
        raise DataLoss(f"Failed to read warmup data at {path}: {exc.message}") from None
    log.info(
        "Finished reading warmup data for model at %s. Number of warmup records read: %d. "
        "Elapsed time (microseconds): %d.",
        path,
        count,
        (time.monotonic() - start) * 1e6,
    )
    return count


def _replay(
    servable: Servable, record: prediction_log_pb2.PredictionLog, limits: RequestLimits
) -> None:
    kind = record.WhichOneof("log_type")
    if kind == "predict_log":
        request = record.predict_log.request
        check_request_inputs(request.inputs, limits)
        inputs = {k: tensor_proto_to_ndarray(v, k) for k, v in request.inputs.items()}
        # The first record of a signature also measures what its calls allocate (costs.py).
        servable.measure(request.model_spec.signature_name or DEFAULT_SIGNATURE, inputs)
        servable.predict(request.model_spec.signature_name, inputs, list(request.output_filter))
    elif kind == "classify_log":
        request = record.classify_log.request
        examples = inference.serialized_examples(request.input)
        inference.classify(servable, request.model_spec.signature_name, examples)
    elif kind == "regress_log":
        request = record.regress_log.request
        examples = inference.serialized_examples(request.input)
        inference.regress(servable, request.model_spec.signature_name, examples)
    else:
        raise Unimplemented(f"Unsupported log_type for warmup: {kind}")
