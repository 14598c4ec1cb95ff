"""Classify and Regress on tf.Example inputs, with TF Serving's signature rules.

TF Serving runs these through the signature named in the request (default ``serving_default``),
feeding one DT_STRING tensor of serialized ``tf.Example`` protos to the input aliased ``inputs``
and reading ``classes``/``scores`` (classify) or ``outputs`` (regress). The checks and messages
mirror ``servables/tensorflow/classifier.cc`` and ``regressor.cc`` with the method-name check off
(TF Serving's default, ``--enable_signature_method_name_check=false``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from devtools.server.errors import FailedPrecondition, InvalidArgument
from devtools.server.servable import DEFAULT_SIGNATURE, Servable, Signature

CLASSIFY_INPUTS = "inputs"
CLASSIFY_CLASSES = "classes"
CLASSIFY_SCORES = "scores"
REGRESS_INPUTS = "inputs"
REGRESS_OUTPUTS = "outputs"

Classes = list[list[tuple[bytes, float]]]


def _debug(signature: Signature) -> str:
    return str(signature.definition).replace("\n", " ").strip()


def _lookup(servable: Servable, name: str) -> Signature:
    key = name or DEFAULT_SIGNATURE
    try:
        return servable.signatures[key]
    except KeyError:
        raise InvalidArgument(f"No signature was found with the name: {key}") from None


def _examples_tensor(examples: Sequence[bytes]) -> np.ndarray:
    if not examples:
        raise InvalidArgument("Input is empty.")
    array = np.empty(len(examples), dtype=object)
    array[:] = list(examples)
    return array


def classify(servable: Servable, signature_name: str, examples: Sequence[bytes]) -> Classes:
    """Per example, the (label, score) pairs; a missing classes/scores output leaves ""/0."""
    signature = _lookup(servable, signature_name)
    if len(signature.inputs) != 1:
        raise InvalidArgument("Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise InvalidArgument(f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if CLASSIFY_INPUTS not in signature.inputs:
        raise InvalidArgument(
            f"No classification inputs found in SignatureDef: {_debug(signature)}"
        )
    if CLASSIFY_CLASSES not in signature.outputs and CLASSIFY_SCORES not in signature.outputs:
        raise InvalidArgument(
            'Expected classification signature outputs to contain at least one of "classes" '
            f'or "scores". Signature was: {_debug(signature)}'
        )
    batch = _examples_tensor(examples)
    outputs = servable.run(signature, {CLASSIFY_INPUTS: batch})
    classes = outputs.get(CLASSIFY_CLASSES)
    scores = outputs.get(CLASSIFY_SCORES)
    n = len(examples)
    for label, tensor, kind in ((CLASSIFY_CLASSES, classes, "O"), (CLASSIFY_SCORES, scores, "f")):
        if tensor is None:
            continue
        if tensor.ndim != 2:
            raise InvalidArgument(
                f"Expected Tensor shape: [batch_size num_classes] but got {list(tensor.shape)}"
            )
        if tensor.dtype.kind != kind or (kind == "f" and tensor.dtype != np.float32):
            wanted = "DT_STRING" if kind == "O" else "DT_FLOAT"
            raise InvalidArgument(f"Expected {label} Tensor of {wanted}. Got: {tensor.dtype}")
        if tensor.shape[0] != n:
            raise InvalidArgument(
                f"Expected {label} output batch size of {n}. Got: {tensor.shape[0]}"
            )
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise InvalidArgument(
            "Tensors class and score should match in dim_size(1). Got "
            f"{classes.shape[1]} vs. {scores.shape[1]}"
        )
    width = (classes if classes is not None else scores).shape[1]
    return [
        [
            (
                bytes(classes[i, c]) if classes is not None else b"",
                float(scores[i, c]) if scores is not None else 0.0,
            )
            for c in range(width)
        ]
        for i in range(n)
    ]


def regress(servable: Servable, signature_name: str, examples: Sequence[bytes]) -> list[float]:
    """One float per example from the ``outputs`` tensor ([batch] or [batch, 1])."""
    signature = _lookup(servable, signature_name)
    if len(signature.inputs) != 1:
        raise InvalidArgument("Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise InvalidArgument("Expected one output Tensor.")
    if REGRESS_INPUTS not in signature.inputs:
        raise InvalidArgument(f"No regression inputs found in SignatureDef: {_debug(signature)}")
    if REGRESS_OUTPUTS not in signature.outputs:
        raise FailedPrecondition(
            f"No regression outputs found in SignatureDef: {_debug(signature)}"
        )
    batch = _examples_tensor(examples)
    output = servable.run(signature, {REGRESS_INPUTS: batch})[REGRESS_OUTPUTS]
    if not (output.ndim == 1 or (output.ndim == 2 and output.shape[1] == 1)):
        raise InvalidArgument(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got "
            f"{list(output.shape)}"
        )
    if output.shape[0] != len(examples):
        raise InvalidArgument(
            "Input batch size did not match output batch size: "
            f"{len(examples)} vs. {output.shape[0]}"
        )
    if output.dtype != np.float32:
        raise InvalidArgument(f"Expected output Tensor of DT_FLOAT.  Got: {output.dtype}")
    return [float(v) for v in output.reshape(-1).tolist()]


def serialized_examples(input_proto: object) -> list[bytes]:
    """InputToSerializedExampleTensor for a ``tensorflow.serving.Input`` proto.

    With ``example_list_with_context`` each example is the serialized context followed by the
    serialized example, which protobuf parsing merges, exactly as TF Serving builds the tensor.
    """
    kind = input_proto.WhichOneof("kind")  # type: ignore[attr-defined]
    if kind == "example_list":
        return [e.SerializeToString() for e in input_proto.example_list.examples]  # type: ignore[attr-defined]
    if kind == "example_list_with_context":
        group = input_proto.example_list_with_context  # type: ignore[attr-defined]
        context = group.context.SerializeToString()
        return [context + e.SerializeToString() for e in group.examples]
    return []
