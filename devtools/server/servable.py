"""One loaded model version: a SavedModel, its signatures and how to run them.

`Servable.load` reads ``saved_model.pb`` for the signature metadata (exactly what TF Serving's
GetModelMetadata returns) and ``tf.saved_model.load`` for the callable signature functions. The
hot path calls the signature's concrete function directly with numpy arrays: no Keras, no
retracing. Requests are checked against the signature first (TF Serving's order and messages), so
a bad request never reaches TensorFlow. When a batch scheduler is attached, `run` goes through it.
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

from devtools.server.errors import (
    DataLoss,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    ServingError,
    Unknown,
)
from devtools.server.tensors import dtype_name, dtype_of

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

    def accepts(self, array: np.ndarray) -> bool:
        if self.shape is None:
            return True
        if array.ndim != len(self.shape):
            return False
        return all(
            want is None or want == got for want, got in zip(self.shape, array.shape, strict=True)
        )

    def shape_string(self) -> str:
        if self.shape is None:
            return "<unknown>"
        return "[" + ",".join("?" if d is None else str(d) for d in self.shape) + "]"


@dataclass(frozen=True)
class Signature:
    """A callable signature of the servable."""

    name: str
    method_name: str
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]
    definition: meta_graph_pb2.SignatureDef
    function: Callable[..., Mapping[str, Any]]

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
        self._keepalive = keepalive  # the tf.saved_model.load() object owning the variables
        self._runner: Runner = self.call
        self._calls = 0
        self._calls_lock = threading.Lock()

    @property
    def model_calls(self) -> int:
        """How many times a signature function ran (a merged batch counts once)."""
        return self._calls

    @classmethod
    def load(cls, name: str, version: int, path: Path) -> Servable:
        """Load `path`; failures are ServingErrors with TF's wording and code."""
        meta_graph = read_meta_graph(path)
        import tensorflow as tf  # heavy; only the process that serves pays for it

        try:
            loaded = tf.saved_model.load(str(path), tags=[SERVE_TAG])
        except tf.errors.OpError as exc:
            raise _from_op_error(exc, f"Failed to load SavedModel at {path}: ") from None
        except (OSError, ValueError, TypeError, KeyError, DecodeError) as exc:
            raise DataLoss(f"Failed to load SavedModel at {path}: {exc}") from None
        signatures = {}
        for key, definition in meta_graph.signature_def.items():
            if key == _INIT_OP_SIGNATURE:
                continue
            if key not in loaded.signatures:
                raise DataLoss(f"SavedModel at {path} declares signature {key!r} it cannot call")
            signatures[key] = Signature(
                name=key,
                method_name=definition.method_name,
                inputs={a: TensorSpec.from_info(a, i) for a, i in definition.inputs.items()},
                outputs={a: TensorSpec.from_info(a, i) for a, i in definition.outputs.items()},
                definition=definition,
                function=loaded.signatures[key],
            )
        return cls(name, version, path, meta_graph, signatures, loaded)

    def set_runner(self, runner: Runner) -> None:
        """Route `run` through `runner` (the batch scheduler) instead of calling directly."""
        self._runner = runner

    def release(self) -> None:
        """Drop the TF objects so their memory can be freed once no request holds them."""
        self._keepalive = None
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
        return self._runner(signature, inputs)

    def call(self, signature: Signature, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the signature function once on already-checked inputs."""
        import tensorflow as tf

        with self._calls_lock:
            self._calls += 1
        try:
            result = signature.function(**inputs)
        except tf.errors.OpError as exc:
            raise _from_op_error(exc, "") from None
        except (ValueError, TypeError) as exc:  # argument binding: should have been caught above
            raise InvalidArgument(str(exc)) from None
        return {alias: tensor.numpy() for alias, tensor in result.items()}


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
    """VerifyRequestInputsSize plus dtype and shape checks against the signature."""
    sent, wanted = set(inputs), set(signature.inputs)
    if sent != wanted:
        extra, missing = sorted(sent - wanted), sorted(wanted - sent)
        raise InvalidArgument(
            f"input size does not match signature: {len(sent)}!={len(wanted)} "
            f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(wanted))}}}). "
            f"Sent extra: {{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}."
        )
    for alias, array in inputs.items():
        spec = signature.inputs[alias]
        got = dtype_of(array)
        if got != spec.dtype:
            raise InvalidArgument(
                f"Expects arg[{alias}] to be {dtype_name(spec.dtype)} but {dtype_name(got)} is "
                "provided"
            )
        if not spec.accepts(array):
            raise InvalidArgument(
                f"Input {alias} has shape {list(array.shape)} but the signature "
                f"{signature.name!r} expects {spec.shape_string()} (? is any size)"
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
