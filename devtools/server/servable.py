"""One loaded model version: a SavedModel, its signatures and how to run them.

`Servable.load` reads ``saved_model.pb`` for the signature metadata (exactly what TF Serving's
GetModelMetadata returns) and loads the SavedModel into a TensorFlow ``Session`` the way TF
Serving's C++ ``LoadSavedModel`` does (``tf.compat.v1`` loader: restore the variables, run the
init op). A signature runs as ``Session::RunCallable`` on its input and output tensor names, which
is what ``RunPredict`` (``servables/tensorflow/predict_util.cc``) does: TF1 graphs such as TF
Serving's ``half_plus_two`` and TF2 exports behave alike, and shapes are left to the runtime.

Before running, requests are checked as ``PreProcessPrediction`` checks them: input names (and
dtypes, which ``saved_model::GetInputValues`` compares), never shapes. When a batch scheduler is
attached, `run` goes through it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from devtools.server.costs import (
    RESPONSE_BYTES_PER_OUTPUT_BYTE,
    UNMEASURED,
    ModelCost,
    array_bytes,
    fit,
)
from devtools.server.errors import (
    DataLoss,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    ServingError,
    Unimplemented,
    Unknown,
)
from devtools.server.limits import estimate
from devtools.server.tensors import dtype_name, dtype_of, numpy_dtype

log = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
SERVE_TAG = "serve"
_INIT_OP_SIGNATURE = "__saved_model_init_op"


@dataclass(frozen=True)
class TensorSpec:
    """A signature input or output: alias, dtype enum and shape (None = unknown dim / rank)."""

    alias: str
    dtype: int
    shape: tuple[int | None, ...] | None

    @classmethod
    def from_info(cls, alias: str, info: meta_graph_pb2.TensorInfo) -> TensorSpec:
        shape = info.tensor_shape
        dims = (
            None
            if shape.unknown_rank
            else tuple(d.size if d.size >= 0 else None for d in shape.dim)
        )
        return cls(alias, info.dtype, dims)


@dataclass(frozen=True)
class Signature:
    """A callable signature of the servable."""

    name: str
    method_name: str
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]
    definition: meta_graph_pb2.SignatureDef
    function: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]
    # The same call traced: (outputs, bytes TensorFlow allocated), for `Servable.measure`.
    traced: Callable[[Mapping[str, np.ndarray]], tuple[dict[str, np.ndarray], int]] | None = None

    @property
    def input_dtypes(self) -> dict[str, int]:
        return {alias: spec.dtype for alias, spec in self.inputs.items()}


# Runs a signature on a batch: (signature, inputs) -> outputs. The batcher wraps this.
Runner = Callable[[Signature, dict[str, np.ndarray]], dict[str, np.ndarray]]


class Servable:
    """A loaded SavedModel version. Thread-safe: signature functions may run concurrently."""

    def __init__(
        self,
        name: str,
        version: int,
        path: Path,
        meta_graph: meta_graph_pb2.MetaGraphDef,
        signatures: Mapping[str, Signature],
        keepalive: object,
    ) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.meta_graph = meta_graph
        self.signatures = dict(signatures)
        self._keepalive = keepalive  # the Session owning the graph and the variables
        self._runner: Runner = self.call
        self._calls = 0
        self._calls_lock = threading.Lock()
        # What a call of each signature allocates (`measure`); UNMEASURED until measured.
        self.costs: dict[str, ModelCost] = {}

    @property
    def model_calls(self) -> int:
        """How many times a signature function ran (a merged batch counts once)."""
        return self._calls

    @classmethod
    def load(cls, name: str, version: int, path: Path) -> Servable:
        """Load `path` into a new Session; failures are ServingErrors with TF's wording and code."""
        meta_graph = read_meta_graph(path)
        session = _load_session(path)
        try:
            signatures = {
                key: _signature(session, key, definition, path)
                for key, definition in meta_graph.signature_def.items()
                if key != _INIT_OP_SIGNATURE
            }
        except BaseException:
            session.close()
            raise
        return cls(name, version, path, meta_graph, signatures, session)

    def set_runner(self, runner: Runner) -> None:
        """Route `run` through `runner` (the batch scheduler) instead of calling directly."""
        self._runner = runner

    def release(self) -> None:
        """Close the Session so its memory is freed; called once no request holds this version."""
        session, self._keepalive = self._keepalive, None
        close = getattr(session, "close", None)
        if close is not None:
            close()
        self.signatures = {}
        self._runner = self.call

    # --- predict -------------------------------------------------------------------------------

    def signature(self, name: str) -> Signature:
        """RunPredict's lookup: an unknown name is FAILED_PRECONDITION."""
        key = name or DEFAULT_SIGNATURE
        try:
            return self.signatures[key]
        except KeyError:
            raise FailedPrecondition(f'Serving signature key "{key}" not found.') from None

    def predict(
        self, signature_name: str, inputs: dict[str, np.ndarray], output_filter: Sequence[str] = ()
    ) -> tuple[Signature, dict[str, np.ndarray]]:
        """Check `inputs` against the signature (PreProcessPrediction), run it, filter outputs."""
        signature = self.signature(signature_name)
        check_inputs(signature, inputs)
        wanted = check_output_filter(signature, output_filter)
        outputs = self.run(signature, inputs)
        return signature, {alias: outputs[alias] for alias in wanted}

    def run(self, signature: Signature, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # The request holds its share of what the call may allocate before it is made.
        size = array_bytes(inputs)
        estimate(size + self.costs.get(signature.name, UNMEASURED).of(size))
        return self._runner(signature, inputs)

    # --- what a call costs -------------------------------------------------------------------

    def measure(self, name: str, inputs: Mapping[str, np.ndarray]) -> ModelCost | None:
        """Measure what a call of signature `name` allocates, from a traced call on `inputs` and
        one on them twice over (batch dimension doubled) when they can be stacked so; None when
        the call fails (the signature stays UNMEASURED)."""
        import tensorflow as tf

        signature = self.signatures.get(name)
        if signature is None or signature.traced is None or name in self.costs:
            return self.costs.get(name)
        try:
            check_inputs(signature, inputs)
            small = _traced_cost(signature, inputs)
            doubled = _doubled(inputs)
            large = _traced_cost(signature, doubled) if doubled is not None else None
        except (ServingError, tf.errors.OpError, ValueError, TypeError) as exc:
            log.info("Could not measure %s of %s: %s", name, self.path, exc)
            return None
        cost = self.costs[name] = fit(small, large)
        log.info(
            "Signature %s of %s allocates %.0f bytes + %.1f per input byte per call",
            name,
            self.path,
            cost.constant,
            cost.per_input_byte,
        )
        return cost

    def measure_unmeasured(self) -> None:
        """Measure, on a probe of zeros (one example), every signature whose inputs are all
        numeric with every dimension known but the first; others stay UNMEASURED."""
        for name, signature in self.signatures.items():
            if name in self.costs:
                continue
            probe = _probe(signature)
            if probe is not None:
                self.measure(name, probe)

    def call(self, signature: Signature, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the signature once on already-checked inputs (``Session::Run``)."""
        import tensorflow as tf

        with self._calls_lock:
            self._calls += 1
        try:
            return dict(signature.function(inputs))
        except tf.errors.OpError as exc:
            raise _from_op_error(exc, "") from None


def _load_session(path: Path) -> Any:
    """A Session holding the ``serve`` MetaGraph of `path`, variables restored.

    A variables file cut short fails the restore with OUT_OF_RANGE ("Read less bytes than
    requested") or, in TF's checkpoint reader, an IndexError; both mean the bytes on disk are
    damaged, so the version ends with DATA_LOSS, which is what its status should tell an operator.
    """
    import tensorflow as tf
    from tensorflow.python.saved_model import loader_impl  # the non-deprecated loader class

    graph = tf.Graph()
    # allow_soft_placement: a graph exported with /gpu:0 pins still loads on a CPU-only host.
    config = tf.compat.v1.ConfigProto(allow_soft_placement=True)
    session = tf.compat.v1.Session(graph=graph, config=config)
    prefix = f"Failed to load SavedModel at {path}: "
    try:
        with graph.as_default():
            loader_impl.SavedModelLoader(str(path)).load(session, [SERVE_TAG])
    except tf.errors.OpError as exc:
        session.close()
        if exc.error_code in (tf.errors.OUT_OF_RANGE, tf.errors.DATA_LOSS):
            raise DataLoss(f"{prefix}variables are truncated or corrupt: {exc.message}") from None
        raise _from_op_error(exc, prefix) from None
    except (OSError, ValueError, TypeError, KeyError, IndexError, DecodeError) as exc:
        session.close()
        raise DataLoss(f"{prefix}{type(exc).__name__}: {exc}") from None
    return session


def _signature(session: Any, key: str, definition: Any, path: Path) -> Signature:
    """A Signature whose function runs `definition`'s tensors through ``Session::RunCallable``
    (and `traced`, the same call with TensorFlow's step statistics, for `Servable.measure`)."""
    from tensorflow.core.protobuf import config_pb2

    inputs = {a: TensorSpec.from_info(a, i) for a, i in definition.inputs.items()}
    outputs = {a: TensorSpec.from_info(a, i) for a, i in definition.outputs.items()}
    feed_aliases = sorted(definition.inputs)
    feeds = [definition.inputs[a].name for a in feed_aliases]
    fetches = sorted({info.name for info in definition.outputs.values()})
    if "" in feeds or "" in fetches:  # sparse or composite TensorInfo: no single tensor name

        def unsupported(values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            raise Unimplemented(f"Signature {key!r} uses sparse or composite tensors")

        return Signature(key, definition.method_name, inputs, outputs, definition, unsupported)
    for alias, info in [*definition.inputs.items(), *definition.outputs.items()]:
        try:
            session.graph.get_tensor_by_name(info.name)
        except (KeyError, ValueError):
            raise DataLoss(
                f"SavedModel at {path}: signature {key!r} names tensor {info.name!r} "
                f"(alias {alias!r}), which its graph does not have"
            ) from None
    # _make_callable_from_options wraps the C++ Session::MakeCallable/RunCallable pair, the call
    # TF Serving makes; Session.run would add Python-side static shape checks TF Serving lacks.
    runnable = session._make_callable_from_options(
        config_pb2.CallableOptions(feed=feeds, fetch=fetches)
    )
    position = {name: i for i, name in enumerate(fetches)}
    out_names = {a: info.name for a, info in definition.outputs.items()}

    def function(values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = runnable(*[values[a] for a in feed_aliases])
        return {a: np.asarray(results[position[n]]) for a, n in out_names.items()}

    trace = config_pb2.CallableOptions(feed=feeds, fetch=fetches)
    trace.run_options.trace_level = config_pb2.RunOptions.FULL_TRACE
    traced_runnable = session._make_callable_from_options(trace)

    def traced(values: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        metadata = config_pb2.RunMetadata()
        results = traced_runnable(*[values[a] for a in feed_aliases], run_metadata=metadata)
        allocated = sum(
            memory.total_bytes
            for device in metadata.step_stats.dev_stats
            for node in device.node_stats
            for memory in node.memory
        )
        return {a: np.asarray(results[position[n]]) for a, n in out_names.items()}, allocated

    return Signature(
        name=key,
        method_name=definition.method_name,
        inputs=inputs,
        outputs=outputs,
        definition=definition,
        function=function,
        traced=traced,
    )


def read_meta_graph(path: Path) -> meta_graph_pb2.MetaGraphDef:
    """The ``serve`` MetaGraphDef of the SavedModel at `path`, as TF Serving selects it."""
    pb = path / "saved_model.pb"
    if not pb.is_file():
        raise NotFound(
            f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {path}. "
            "Check that the directory exists and that you have the right permissions for "
            "accessing it."
        )
    model = saved_model_pb2.SavedModel()
    try:
        model.ParseFromString(pb.read_bytes())
    except (DecodeError, OSError) as exc:
        raise DataLoss(f"Could not parse SavedModel at {pb}: {exc}") from None
    for meta_graph in model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == {SERVE_TAG}:
            return meta_graph
    raise NotFound(
        "Could not find meta graph def matching supplied tags: { serve }. To inspect available "
        "tag-sets in the SavedModel, please use the SavedModel CLI: `saved_model_cli`"
    )


def check_inputs(signature: Signature, inputs: Mapping[str, np.ndarray]) -> None:
    """PreProcessPrediction: input names (VerifyRequestInputsSize) and dtypes, not shapes.

    TF Serving leaves shapes to the runtime (``predict_util.cc`` feeds the tensors to
    ``Session::Run`` as they are), so a [3] tensor fed to half_plus_two's [?,1] ``x`` runs, and a
    shape the graph cannot use fails there with the runtime's INVALID_ARGUMENT.
    """
    sent, wanted = set(inputs), set(signature.inputs)
    if sent != wanted:
        extra, missing = sorted(sent - wanted), sorted(wanted - sent)
        raise InvalidArgument(
            f"input size does not match signature: {len(sent)}!={len(wanted)} "
            f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(wanted))}}}). "
            f"Sent extra: {{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}."
        )
    # TF Serving's text comes from the session's call frame (FunctionCallFrame::SetArgs), which
    # numbers the feeds in the order DirectSession sorts them: by tensor name.
    feeds = sorted(signature.definition.inputs[alias].name for alias in signature.inputs)
    for alias, array in inputs.items():
        spec = signature.inputs[alias]
        got = dtype_of(array)
        if got != spec.dtype:
            index = feeds.index(signature.definition.inputs[alias].name)
            raise InvalidArgument(
                f"Expects arg[{index}] to be {dtype_name(spec.dtype)} but {dtype_name(got)} is "
                "provided"
            )


def check_output_filter(signature: Signature, output_filter: Sequence[str]) -> list[str]:
    """PreProcessPrediction's output_filter rules; empty filter means every output."""
    if not output_filter:
        return list(signature.outputs)
    seen: set[str] = set()
    for alias in output_filter:
        if alias not in signature.outputs:
            raise InvalidArgument(
                f"output tensor alias not found in signature: {alias} Outputs expected to be in "
                f"the set {{{','.join(sorted(signature.outputs))}}}."
            )
        if alias in seen:
            raise InvalidArgument(f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    return list(output_filter)


def _from_op_error(exc: Any, prefix: str) -> ServingError:
    """A tf.errors.OpError as the ServingError with the same canonical code."""
    from devtools.server import errors

    by_code = {cls.code.value[0]: cls for cls in vars(errors).values() if _is_error_class(cls)}
    cls = by_code.get(exc.error_code, Unknown)
    return cls(prefix + exc.message) if cls is not ServingError else Internal(prefix + exc.message)


def _is_error_class(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, ServingError) and value is not ServingError


def _traced_cost(signature: Signature, inputs: Mapping[str, np.ndarray]) -> tuple[int, int]:
    """(input bytes, bytes the call allocated plus what writing its answer costs)."""
    assert signature.traced is not None
    outputs, allocated = signature.traced(inputs)
    answer = RESPONSE_BYTES_PER_OUTPUT_BYTE * array_bytes(outputs)
    return array_bytes(inputs), allocated + answer


def _doubled(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """The inputs with their batch dimension doubled, when every input has one."""
    if not inputs or any(a.ndim == 0 or a.shape[0] == 0 for a in inputs.values()):
        return None
    return {k: np.concatenate([a, a]) for k, a in inputs.items()}


def _probe(signature: Signature) -> dict[str, np.ndarray] | None:
    """Zeros of one example for every input, when their shapes and dtypes allow it."""
    probe = {}
    for alias, spec in signature.inputs.items():
        dims = spec.shape
        if dims is None or not dims or any(d is None for d in dims[1:]):
            return None
        try:
            np_dtype = numpy_dtype(spec.dtype)
        except ServingError:
            return None
        if np_dtype is object:
            return None
        probe[alias] = np.zeros((1, *dims[1:]), dtype=np_dtype)
    return probe or None
