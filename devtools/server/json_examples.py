"""Classify/regress JSON (``json_tensor.cc``): ``examples`` + ``context`` in, ``results`` out.

`examples_from_json` builds serialized ``tf.Example`` protos from JSON objects with TF Serving's
feature-type rules and messages; `classification_json` and `regression_json` write the
``{"results": ...}`` answers with TF Serving's float printing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tensorflow.core.example import example_pb2, feature_pb2

from devtools.server.errors import InvalidArgument
from devtools.server.json_parse import decode_b64, format_error, is_b64, json_type
from devtools.server.json_tensor import float_tokens


def classification_json(results: Sequence[Sequence[tuple[bytes, float]]]) -> bytes:
    """MakeJsonFromClassificationResult: ``{"results": [[[label, score], ...], ...]}``."""
    if not results:
        raise InvalidArgument("Cannot convert empty ClassificationResults to JSON")
    rows = []
    for classes in results:
        scores = float_tokens(np.array([s for _, s in classes], dtype=np.float32))
        labels = [json.dumps(label.decode("utf-8", "replace")) for label, _ in classes]
        rows.append(
            "[" + ", ".join(f"[{lab}, {sc}]" for lab, sc in zip(labels, scores, strict=True)) + "]"
        )
    return ('{"results": [' + ", ".join(rows) + "]}").encode()


def regression_json(values: Sequence[float]) -> bytes:
    """MakeJsonFromRegressionResult: ``{"results": [v, ...]}``."""
    if not len(values):
        raise InvalidArgument("Cannot convert empty RegressionResults to JSON")
    tokens = float_tokens(np.asarray(values, dtype=np.float32))
    return ('{"results": [' + ", ".join(tokens) + "]}").encode()


# --- JSON -> tf.Example (classify / regress) -----------------------------------------------------

_KIND_NAMES = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64", None: "UNKNOWN"}


def _add_feature_value(value: Any, name: str, feature: feature_pb2.Feature) -> None:
    """AddValueToFeature: the first value fixes the feature's kind; later ones must agree."""
    kind = feature.WhichOneof("kind")

    def need(wanted: str) -> None:
        if kind not in (None, wanted):
            raise InvalidArgument(
                f"Unexpected element type in feature: {name} expecting type: {_KIND_NAMES[kind]}"
            )

    if isinstance(value, bool):
        need("int64_list")
        feature.int64_list.value.append(1 if value else 0)
    elif (
        value is None or isinstance(value, list) or (isinstance(value, dict) and not is_b64(value))
    ):
        raise InvalidArgument(
            f"Feature: {name} has element with unexpected JSON type: {json_type(value)}"
        )
    elif isinstance(value, dict):
        need("bytes_list")
        feature.bytes_list.value.append(decode_b64(value))
    elif isinstance(value, str):
        need("bytes_list")
        feature.bytes_list.value.append(value.encode("utf-8", "surrogatepass"))
    elif isinstance(value, float) or value > 2**64 - 1:  # rapidjson reads huge ints as doubles
        need("float_list")
        feature.float_list.value.append(float(value))
    else:
        need("int64_list")
        if value > 2**63 - 1:
            raise InvalidArgument(
                f"Feature: {name} has uint64_t element. Only int64_t is supported."
            )
        feature.int64_list.value.append(value)


def _example(value: Any) -> example_pb2.Example:
    if not isinstance(value, dict):
        raise InvalidArgument(f"Example must be JSON object but got JSON {json_type(value)}")
    example = example_pb2.Example()
    for name, content in value.items():
        feature = feature_pb2.Feature()
        for item in content if isinstance(content, list) else [content]:
            _add_feature_value(item, name, feature)
        example.features.feature[name].CopyFrom(feature)
    return example


def examples_from_json(doc: Mapping[str, Any]) -> list[bytes]:
    """FillClassifyRegressRequestFromJson: serialized tf.Examples, each prefixed by the context.

    Concatenating the serialized context and example is exactly how TF Serving merges them
    (InputToSerializedExampleTensor): protobuf parsing merges the two messages.
    """
    context = b""
    if "context" in doc:
        context = _example(doc["context"]).SerializeToString()
    if "examples" not in doc:
        raise format_error(
            doc, "When method is classify, key 'examples' is expected and was not found"
        )
    examples = doc["examples"]
    if not isinstance(examples, list):
        raise format_error(doc, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise format_error(doc, "'examples' value is an empty array")
    return [context + _example(e).SerializeToString() for e in examples]
