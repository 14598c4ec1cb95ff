"""Publish's checks before any upload: can TF Serving load this export, does it keep the contract?

`validate_export` checks what TF Serving needs to load any SavedModel version (TF2 exports and
TF1-style graphs alike): `saved_model.pb` parses and has a meta graph tagged `serve` with a
`serving_default` signature; every variable shard named by `variables/variables.index` is present
and every tensor reads back whole (a shard truncated after export fails here, not in the server);
the warmup file, when present, parses and asks only for signatures and inputs the model has.

`check_contract` compares the export's signatures with each version it is held to (the model's
newest committed version, its contract; the version a ``--force`` replaces; one a concurrent
publish is committing: `model.publish_contract`) and refuses incompatible changes unless told to.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.signatures import Difference, breaking, compare, summarize_signature_defs
from contracts.store import ManifestError, VersionManifest, parse_manifest
from model.errors import ExportError, SignatureContractError

SERVE_TAG = "serve"
SIGNATURE_KEY = "serving_default"
WARMUP_RELPATH = "assets.extra/tf_serving_warmup_requests"
VARIABLES_PREFIX = "variables/variables"
# TF Serving refuses warmup files with more records than this (kMaxNumRecordsInWarmupFile).
MAX_RECORDS = 1000


def read_signatures(directory: Path) -> dict[str, dict[str, Any]]:
    """Every signature of the `serve` meta graph, summarized; parses saved_model.pb only."""
    from tensorflow.core.protobuf import saved_model_pb2

    pb_path = directory / "saved_model.pb"
    if not pb_path.is_file():
        hint = (
            " (a text saved_model.pbtxt is not supported: re-save it)"
            if (directory / "saved_model.pbtxt").is_file()
            else ""
        )
        raise ExportError(
            f"{directory} is not a SavedModel: saved_model.pb is missing{hint}; point --export "
            "at DIR/<name>/<version> of a complete export"
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
        tags = [list(g.meta_info_def.tags) for g in saved.meta_graphs]
        raise ExportError(
            f"{pb_path} has no meta graph tagged {SERVE_TAG!r} (found tag sets {tags}); TF "
            "Serving loads the 'serve' graph: export with tf.saved_model.save or tags=['serve']"
        )
    signatures = summarize_signature_defs(graphs[0].signature_def)
    if SIGNATURE_KEY not in signatures:
        raise ExportError(
            f"{pb_path} has no {SIGNATURE_KEY!r} signature (found {sorted(signatures)}); "
            "export one: tf.saved_model.save(model, dir, signatures={'serving_default': fn})"
        )
    return signatures


_VARIABLE_OPS = frozenset({"VarHandleOp", "VariableV2", "Variable"})


def _has_variables(directory: Path) -> bool:
    """Whether the serve graph (or a function in its library) creates a variable."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((directory / "saved_model.pb").read_bytes())
    for graph in saved.meta_graphs:
        nodes = list(graph.graph_def.node)
        for function in graph.graph_def.library.function:
            nodes.extend(function.node_def)
        if any(node.op in _VARIABLE_OPS for node in nodes):
            return True
    return False


def check_variables(directory: Path) -> None:
    """Raise ExportError unless every variable shard is present and every tensor reads whole."""
    # Through model.tf_runtime, not a bare import: reading the checkpoint is this process's first
    # device use when a caller only validates (the local run's reuse check), and the CPU-only
    # cuInit noise must be dropped there too.
    from model.tf_runtime import tensorflow

    tf = tensorflow()

    variables = directory / "variables"
    index = variables / "variables.index"
    shards = sorted(variables.glob("variables.data-*-of-*")) if variables.is_dir() else []
    if not index.is_file():
        if shards:
            raise ExportError(
                f"{directory} is a partial SavedModel: variables/variables.index is missing "
                "beside its data shards; re-export the model"
            )
        if _has_variables(directory):
            raise ExportError(
                f"{directory} is a partial SavedModel: its graph has variables but "
                "variables/variables.index is missing; copy the whole export again or re-export"
            )
        return  # a graph of constants only: TF Serving restores nothing and loads it
    # Shard names say how many there are ("-00000-of-00002"); each one must be there.
    counts = {int(s.name.rsplit("-of-", 1)[1]) for s in shards}
    expected = counts.pop() if len(counts) == 1 else None
    names = {s.name for s in shards}
    wanted = {f"variables.data-{i:05d}-of-{expected:05d}" for i in range(expected or 0)}
    if expected is None or names != wanted:
        missing = sorted(wanted - names) if expected is not None else ["(inconsistent names)"]
        raise ExportError(
            f"{directory} is a partial SavedModel: variable shards {missing or sorted(names)} "
            "missing or inconsistent; copy the whole export again or re-export the model"
        )
    try:
        reader = tf.train.load_checkpoint(str(directory / VARIABLES_PREFIX))
        # Reading each tensor checks its bytes lie inside its shard: a truncated shard (partial
        # copy) fails here with DataLoss/OutOfRange instead of at load time in TF Serving.
        for key in sorted(reader.get_variable_to_dtype_map()):
            reader.get_tensor(key)
    except (
        tf.errors.OpError,
        ValueError,
        RuntimeError,
        IndexError,
    ) as exc:  # IndexError: short read
        message = getattr(exc, "message", None) or str(exc)
        raise ExportError(
            f"{directory}: the variables cannot be read back ({message.strip()[:300]}); a shard is "
            "truncated or corrupt: copy the whole export again or re-export the model"
        ) from exc


def read_warmup(path: Path) -> list[Any]:
    """Parse a warmup file back into PredictionLog records (raises ExportError if unreadable)."""
    if not path.is_file():
        raise ExportError(f"warmup file {path} is missing")
    from model.tf_runtime import tensorflow

    tf = tensorflow()
    from tensorflow_serving.apis import prediction_log_pb2

    records = []
    try:
        for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            record = prediction_log_pb2.PredictionLog()
            record.ParseFromString(raw)
            records.append(record)
    except (tf.errors.OpError, ValueError) as exc:
        raise ExportError(f"warmup file {path} is corrupt ({exc}); re-export the model") from exc
    if not 0 < len(records) <= MAX_RECORDS:
        raise ExportError(
            f"warmup file {path} holds {len(records)} records; 1-{MAX_RECORDS} needed"
        )
    return records


def check_warmup(directory: Path, signatures: Mapping[str, Mapping[str, Any]]) -> int:
    """Records in the warmup file (0 when absent); each must parse and fit the signatures."""
    path = directory / WARMUP_RELPATH
    if not path.exists():
        return 0
    records = read_warmup(path)
    for number, record in enumerate(records, start=1):
        kind = record.WhichOneof("log_type")
        if kind != "predict_log":
            continue  # classify/regress/multi-inference records: TF Serving replays them as-is
        request = record.predict_log.request
        name = request.model_spec.signature_name or SIGNATURE_KEY
        if name not in signatures:
            raise ExportError(
                f"warmup record {number} of {path} asks for signature {name!r}, which the model "
                f"does not have ({sorted(signatures)}); TF Serving would fail the load"
            )
        wanted, sent = set(signatures[name]["inputs"]), set(request.inputs)
        if wanted != sent:
            raise ExportError(
                f"warmup record {number} of {path} sends inputs {sorted(sent)}, signature "
                f"{name!r} takes {sorted(wanted)}; re-write the warmup file"
            )
    return len(records)


def validate_export(directory: Path) -> dict[str, dict[str, Any]]:
    """Everything TF Serving needs to load `directory`; returns its signatures (summary format)."""
    if not directory.is_dir():
        raise ExportError(f"export {directory} does not exist or is not a directory")
    signatures = read_signatures(directory)
    check_variables(directory)
    check_warmup(directory, signatures)
    return signatures


# Keras 3's generated names (docs/bring-your-own-model.md, "Export a SavedModel version"): inputs
# after their Keras tensor or input layer, outputs numbered. They change when the model is built
# differently, and the names are the contract.
GENERATED_NAME = re.compile(r"^(keras_tensor(_\d+)?|input_layer(_\d+)?|output_\d+)$")


def generated_names(signatures: dict[str, Any]) -> list[str]:
    """``signature: input|output 'name'`` for every tensor name Keras 3 generated."""
    found = []
    for key, signature in sorted(signatures.items()):
        for kind in ("inputs", "outputs"):
            for alias in sorted(signature.get(kind) or {}):
                if GENERATED_NAME.match(alias):
                    found.append(f"{key}: {kind[:-1]} {alias!r}")
    return found


def check_readable(manifest: VersionManifest, manifest_metrics: Sequence[str] = ()) -> None:
    """ExportError unless the manifest is what every reader accepts
    (`contracts.store.parse_manifest`: size, depth, format): checked before the first write, so
    a refusal burns no version number. (The contract marker carries a part of it, its
    signatures, so it is within the bounds too.) `manifest_metrics` are the keys of metrics.json
    it carries, for the message."""
    name, version = manifest.model, manifest.version
    try:
        parse_manifest(manifest.to_json(), name, version)
    except ManifestError as exc:
        raise ExportError(
            f"{name}/{version}: the manifest this export makes would be refused by the store's "
            f"readers ({exc}); nothing was written. The manifest carries the signatures and "
            f"these keys of metrics.json: {', '.join(manifest_metrics)}; shrink what is large "
            "or deep there"
        ) from exc


@dataclass(frozen=True)
class Reference:
    """A version whose signatures a new one is held to, and why it counts."""

    version: int
    signatures: Mapping[str, Any]
    role: str  # e.g. "its newest committed one"; completes "version N, <role>"


def check_contract(
    model: str,
    candidate: Mapping[str, Mapping[str, Any]],
    references: Sequence[Reference],
    *,
    allow_change: bool,
) -> tuple[list[Difference], dict[str, Any] | None]:
    """Compare with every reference; refuse breaking changes unless `allow_change`.

    Returns the differences against the first reference and, when breaking ones were let
    through, the record the manifest keeps of that (`signature_change`). A reference that
    recorded no signature at all holds nothing; with none, there is no contract.
    """
    found = [(r, compare(r.signatures, candidate)) for r in references if r.signatures]
    bad = [(r, d) for r, d in found if breaking(d)]
    if not bad:
        return (found[0][1] if found else []), None
    if not allow_change:
        parts = []
        for reference, differences in bad:
            lines = "\n".join(f"  - {d}" for d in differences)
            parts.append(
                f"the signatures are incompatible with the contract of {model} (version "
                f"{reference.version}, {reference.role}); {len(breaking(differences))} breaking "
                f"difference(s):\n{lines}\nclients of version {reference.version} would break."
            )
        raise SignatureContractError(
            "\n".join(parts) + " Keep the old inputs/outputs, publish under a new model name, or "
            "pass --allow-signature-change to make this change on purpose"
        )
    (first, differences), *others = bad
    record: dict[str, Any] = {
        "allowed": True,
        "against_version": first.version,
        "differences": [str(d) for d in differences],
    }
    if others:
        record["also_against"] = [
            {"version": r.version, "differences": [str(d) for d in diffs]} for r, diffs in others
        ]
    return differences, record
