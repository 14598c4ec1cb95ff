"""Publish's warmup replay: run every warmup record through the export, as TF Serving will.

TF Serving replays ``assets.extra/tf_serving_warmup_requests`` when it loads a version and fails
the load when a record fails (``servables/tensorflow/saved_model_warmup_util.cc``): a record that
does not fit the model is a version that never serves. `replay_warmup` loads the export the way
TF Serving's ``LoadSavedModel`` does (a ``Session`` with the ``serve`` meta graph, variables
restored) and runs each record with ``Session::MakeCallable``/``RunCallable`` on the signature's
tensor names, as ``RunPredict``/``RunClassify``/``RunRegress`` do: input names and dtypes checked
first, shapes left to the runtime. Before decoding, each record is held to the bounds a pod
applies (`contracts.rules.WARMUP_MAX_BATCH` examples per record, `MAX_TENSOR_BYTES` per declared
input), so a 49-byte record cannot expand into gigabytes here either.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from contracts.rules import WARMUP_MAX_BATCH
from model.errors import ExportError

# The local server's default --max_request_tensor_bytes, which its warmup is held to as well.
MAX_TENSOR_BYTES = 64 * 1024 * 1024
SERVE_TAG = "serve"
SIGNATURE_KEY = "serving_default"
_EXAMPLE_METHODS = {
    "classify_log": "tensorflow/serving/classify",
    "regress_log": "tensorflow/serving/regress",
}


def replay_warmup(directory: Path, records: Sequence[Any]) -> None:
    """Run every record through the export at `directory`; ExportError names the first that
    fails and why (TF Serving would fail the load with it)."""
    from model.tf_runtime import onednn_problem, tensorflow

    tf = tensorflow(untrusted_inputs=True)
    problem = onednn_problem("warmup replay")
    if problem is not None:
        raise ExportError(problem)
    path = directory / "assets.extra" / "tf_serving_warmup_requests"
    graph = tf.Graph()
    config = tf.compat.v1.ConfigProto(allow_soft_placement=True)
    with tf.compat.v1.Session(graph=graph, config=config) as session:
        try:
            with graph.as_default():
                meta = tf.compat.v1.saved_model.loader.load(session, [SERVE_TAG], str(directory))
        except (tf.errors.OpError, OSError, ValueError, RuntimeError) as exc:
            message = getattr(exc, "message", None) or str(exc)
            raise ExportError(
                f"{directory}: TensorFlow cannot load the SavedModel to replay its warmup "
                f"records ({message.strip()[:300]}); re-export the model"
            ) from exc
        runner = _Runner(tf, session, meta.signature_def)
        for number, record in enumerate(records, start=1):
            try:
                runner.replay(record)
            except _Refused as exc:
                raise ExportError(
                    f"warmup record {number} of {path}: {exc}; TF Serving would fail to load "
                    "this version: re-write the warmup file (model.warmup.build_named_records) "
                    "or remove it"
                ) from None
            except tf.errors.OpError as exc:
                raise ExportError(
                    f"warmup record {number} of {path} fails in the model: "
                    f"{exc.message.strip()[:500]}; TF Serving would fail to load this version: "
                    "re-write the warmup file (model.warmup.build_named_records) or remove it"
                ) from None


class _Refused(Exception):
    """A record that does not fit its signature, before anything runs."""


class _Runner:
    def __init__(self, tf: Any, session: Any, signatures: Mapping[str, Any]) -> None:
        self.tf, self.session, self.signatures = tf, session, signatures

    def replay(self, record: Any) -> None:
        kind = record.WhichOneof("log_type")
        if kind == "predict_log":
            request = record.predict_log.request
            signature = self._signature(request.model_spec.signature_name)
            self._predict(signature, request.inputs, list(request.output_filter))
        elif kind in _EXAMPLE_METHODS:
            request = getattr(record, kind).request
            signature = self._signature(request.model_spec.signature_name)
            if signature.method_name != _EXAMPLE_METHODS[kind]:
                raise _Refused(
                    f"{kind} asks signature {request.model_spec.signature_name or SIGNATURE_KEY!r}"
                    f", whose method is {signature.method_name!r}"
                )
            self._examples(signature, request.input)
        elif kind == "multi_inference_log":
            request = record.multi_inference_log.request
            for task in request.tasks:
                signature = self._signature(task.model_spec.signature_name)
                self._examples(signature, request.input)
        else:
            raise _Refused(f"unsupported log type {kind!r}")

    def _signature(self, name: str) -> Any:
        key = name or SIGNATURE_KEY
        if key not in self.signatures or key.startswith("__"):
            raise _Refused(f"asks for signature {key!r}, which the model does not have")
        return self.signatures[key]

    def _predict(self, signature: Any, inputs: Mapping[str, Any], wanted: list[str]) -> None:
        if set(inputs) != set(signature.inputs):
            raise _Refused(
                f"sends inputs {sorted(inputs)}, the signature takes {sorted(signature.inputs)}"
            )
        unknown = sorted(set(wanted) - set(signature.outputs))
        if unknown:
            raise _Refused(f"asks for outputs {unknown} the signature does not have")
        feeds = {}
        for alias, proto in sorted(inputs.items()):
            _check_declared(self.tf, alias, proto)
            info = signature.inputs[alias]
            if proto.dtype != info.dtype:
                raise _Refused(
                    f"input {alias!r} is {_dtype(self.tf, proto.dtype)}, the signature takes "
                    f"{_dtype(self.tf, info.dtype)}"
                )
            try:
                feeds[info.name] = self.tf.make_ndarray(proto)
            except (TypeError, ValueError) as exc:
                raise _Refused(f"input {alias!r} is not a valid tensor ({exc})") from None
        fetches = [signature.outputs[a].name for a in (wanted or sorted(signature.outputs))]
        self._run(feeds, fetches)

    def _examples(self, signature: Any, request_input: Any) -> None:
        kind = request_input.WhichOneof("kind")
        if kind == "example_list":
            examples = [e.SerializeToString() for e in request_input.example_list.examples]
        elif kind == "example_list_with_context":
            # TF Serving serializes context + example back to back: one merged tf.Example.
            listed = request_input.example_list_with_context
            context = listed.context.SerializeToString()
            examples = [context + e.SerializeToString() for e in listed.examples]
        else:
            raise _Refused("its input holds no examples")
        if not 0 < len(examples) <= WARMUP_MAX_BATCH:
            raise _Refused(f"holds {len(examples)} examples; 1-{WARMUP_MAX_BATCH} needed")
        if "inputs" not in signature.inputs or len(signature.inputs) != 1:
            raise _Refused(f"its signature takes {sorted(signature.inputs)}, not one 'inputs'")
        fetches = [signature.outputs[a].name for a in sorted(signature.outputs)]
        self._run({signature.inputs["inputs"].name: examples}, fetches)

    def _run(self, feeds: Mapping[str, Any], fetches: list[str]) -> None:
        from tensorflow.core.protobuf import config_pb2

        names = sorted(feeds)
        # The C++ Session::MakeCallable TF Serving uses: Session.run would add Python-side static
        # shape checks TF Serving does not make.
        runnable = self.session._make_callable_from_options(
            config_pb2.CallableOptions(feed=names, fetch=sorted(set(fetches)))
        )
        runnable(*[feeds[n] for n in names])


def _check_declared(tf: Any, alias: str, proto: Any) -> None:
    """The bounds a pod applies, from the declared shape (before any value is expanded)."""
    if proto.tensor_shape.unknown_rank:
        raise _Refused(f"input {alias!r} has no shape")
    dims = [d.size for d in proto.tensor_shape.dim]
    if any(d < 0 for d in dims):
        raise _Refused(f"input {alias!r} has a negative dimension {dims}")
    if not dims or dims[0] < 1 or dims[0] > WARMUP_MAX_BATCH:
        raise _Refused(
            f"input {alias!r} has shape {dims}: a warmup record holds a batch of 1-"
            f"{WARMUP_MAX_BATCH} (TF Serving refuses a larger one wherever max_batch_size is "
            f"{WARMUP_MAX_BATCH}, the smallest a stack allows)"
        )
    try:
        itemsize = tf.dtypes.as_dtype(proto.dtype).size  # strings count their pointer only
    except TypeError:
        raise _Refused(f"input {alias!r} has an undefined dtype {proto.dtype}") from None
    size = math.prod(dims) * itemsize
    if size > MAX_TENSOR_BYTES:
        raise _Refused(
            f"input {alias!r} declares shape {dims}, {size} bytes, over {MAX_TENSOR_BYTES}"
        )


def _dtype(tf: Any, enum: int) -> str:
    try:
        return tf.dtypes.as_dtype(enum).name
    except TypeError:
        return f"dtype {enum}"
