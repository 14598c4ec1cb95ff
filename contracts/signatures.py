"""A model's signature contract: the summary of its serving signatures, and compatibility.

A model's contract is the set of serving signatures of its newest committed version, recorded in
that version's manifest (`contracts.store.VersionManifest.signatures`). The publisher refuses a new
version whose signatures are incompatible with it, unless told to (`--allow-signature-change`).

Summary format (JSON, what manifests store and `compare` reads)::

    {"serving_default": {"method": "tensorflow/serving/predict",
                         "inputs":  {"x": {"dtype": "float32", "shape": [-1, 3]}},
                         "outputs": {"y": {"dtype": "float32", "shape": [-1, 1]}}}, ...}

``shape`` is a list of dimensions (-1 = any size) or None (unknown rank: any shape), ``dtype`` the
numpy/TensorFlow name of the tensor's `DataType`. `summarize_signature_defs` builds it from the
`SignatureDef` protos of a SavedModel's serve meta graph without importing TensorFlow (the proto's
own enum descriptor names the dtype), so the sync image and the client can use it too.

Compatible (clients of the old version keep working): a new signature, a new output, an input
dimension widened from a fixed size to -1 or an input shape widened to unknown rank, an output
dimension narrowed from -1 to a fixed size or an output of unknown rank given a shape.
Incompatible: a signature removed, its method changed, an input or output removed or renamed, a
new input (TF Serving requires every input of a signature), a dtype changed, a rank changed, an
input narrowed (a dimension from -1 to a fixed size, unknown rank to a shape), an output widened
(a fixed dimension to -1, a known rank to unknown), a fixed size changed to another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Difference",
    "compare",
    "summarize_signature_defs",
    "summarize_tensor_info",
]

# TensorFlow's DataType enum names (types.proto) -> the names numpy and tf.dtypes use.
_DTYPE_NAMES = {
    "DT_FLOAT": "float32",
    "DT_DOUBLE": "float64",
    "DT_HALF": "float16",
    "DT_BFLOAT16": "bfloat16",
    "DT_INT8": "int8",
    "DT_INT16": "int16",
    "DT_INT32": "int32",
    "DT_INT64": "int64",
    "DT_UINT8": "uint8",
    "DT_UINT16": "uint16",
    "DT_UINT32": "uint32",
    "DT_UINT64": "uint64",
    "DT_BOOL": "bool",
    "DT_STRING": "string",
    "DT_COMPLEX64": "complex64",
    "DT_COMPLEX128": "complex128",
}


def dtype_name(enum_name: str) -> str:
    """`DT_FLOAT` -> `float32`; names without a numpy twin lose the prefix and are lowercased."""
    return _DTYPE_NAMES.get(enum_name, enum_name.removeprefix("DT_").lower())


def summarize_tensor_info(info: Any) -> dict[str, Any]:
    """``{"dtype", "shape"}`` of a `TensorInfo` proto (dense, sparse or composite alike)."""
    field = info.DESCRIPTOR.fields_by_name["dtype"]
    enum_value = field.enum_type.values_by_number.get(info.dtype)
    dtype = dtype_name(enum_value.name) if enum_value else str(info.dtype)
    shape = info.tensor_shape
    # No tensor_shape at all (old TF1 exports, TF Serving's half_plus_three) says as little as
    # an unknown rank: any shape, not a scalar.
    unknown = not info.HasField("tensor_shape") or shape.unknown_rank
    dims = None if unknown else [int(dim.size) for dim in shape.dim]
    return {"dtype": dtype, "shape": dims}


def summarize_signature_defs(signature_defs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The summary of a meta graph's `signature_def` map (init-op entries left out)."""
    return {
        key: {
            "method": sig.method_name,
            "inputs": {k: summarize_tensor_info(v) for k, v in sorted(sig.inputs.items())},
            "outputs": {k: summarize_tensor_info(v) for k, v in sorted(sig.outputs.items())},
        }
        for key, sig in sorted(signature_defs.items())
        # TF1 exports may store their init op as a signature ("__saved_model_init_op"); it is
        # not servable, so not part of the contract.
        if not key.startswith("__")
    }


@dataclass(frozen=True)
class Difference:
    """One way a new version's signatures differ from the contract."""

    signature: str
    where: str  # "signature", "method", "input 'x'" or "output 'y'"
    change: str
    breaking: bool

    def __str__(self) -> str:
        tag = "BREAKING" if self.breaking else "ok"
        return f"[{tag}] {self.signature}: {self.where}: {self.change}"


def _shape_text(shape: list[int] | None) -> str:
    return "unknown rank" if shape is None else str(shape)


def _shape_change(
    old: list[int] | None, new: list[int] | None, kind: str
) -> tuple[str, bool] | None:
    """(description, breaking) of a shape change, or None when equal.

    An input may accept more than before (clients keep sending what they sent); an output may
    promise more than before (clients keep reading what they read). So the rules mirror each
    other: widening an input and narrowing an output are compatible, the reverse is breaking.
    """
    if old == new:
        return None
    what = f"shape {_shape_text(old)} -> {_shape_text(new)}"
    if old is not None and new is not None and len(old) != len(new):
        return what + " (rank changed)", True
    if kind == "output":
        if old is None:
            return what + " (a known shape now)", False
        if new is None:
            return what + " (known rank lost)", True
        lost = [i for i, (o, n) in enumerate(zip(old, new, strict=True)) if o != -1 and o != n]
        if lost:
            return what + f" (dimension {', '.join(map(str, lost))} widened or resized)", True
        return what + " (narrowed)", False
    if new is None:
        return what + " (widened to any shape)", False
    if old is None:
        return what + " (narrowed)", True
    narrowed = [i for i, (o, n) in enumerate(zip(old, new, strict=True)) if o != n and n != -1]
    if narrowed:
        return what + f" (dimension {', '.join(map(str, narrowed))} narrowed or resized)", True
    return what + " (widened)", False


def _tensor_differences(
    signature: str, kind: str, old: Mapping[str, Any], new: Mapping[str, Any]
) -> list[Difference]:
    found = []
    for name in sorted(old.keys() - new.keys()):
        found.append(Difference(signature, f"{kind} {name!r}", "removed (or renamed)", True))
    for name in sorted(new.keys() - old.keys()):
        # A new input is one every client must now send; a new output is one they may ignore.
        breaking = kind == "input"
        change = "added (every client must now send it)" if breaking else "added"
        found.append(Difference(signature, f"{kind} {name!r}", change, breaking))
    for name in sorted(old.keys() & new.keys()):
        before, after = old[name], new[name]
        if before.get("dtype") != after.get("dtype"):
            change = f"dtype {before.get('dtype')} -> {after.get('dtype')}"
            found.append(Difference(signature, f"{kind} {name!r}", change, True))
        shape = _shape_change(before.get("shape"), after.get("shape"), kind)
        if shape is not None:
            found.append(Difference(signature, f"{kind} {name!r}", *shape))
    return found


def compare(
    contract: Mapping[str, Mapping[str, Any]], candidate: Mapping[str, Mapping[str, Any]]
) -> list[Difference]:
    """Every difference between the contract's signatures and a candidate's, breaking or not."""
    found: list[Difference] = []
    for key in sorted(contract.keys() - candidate.keys()):
        found.append(Difference(key, "signature", "removed", True))
    for key in sorted(candidate.keys() - contract.keys()):
        found.append(Difference(key, "signature", "added", False))
    for key in sorted(contract.keys() & candidate.keys()):
        old, new = contract[key], candidate[key]
        if old.get("method") != new.get("method"):
            change = f"method {old.get('method')!r} -> {new.get('method')!r}"
            found.append(Difference(key, "method", change, True))
        for kind in ("input", "output"):
            found += _tensor_differences(
                key, kind, old.get(f"{kind}s") or {}, new.get(f"{kind}s") or {}
            )
    return found


def breaking(differences: list[Difference]) -> list[Difference]:
    return [d for d in differences if d.breaking]
