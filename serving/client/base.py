"""What every client returns and the protocol both transports implement.

`ModelClient` is the interface the CLI, the local run, the benchmark and the tests program
against; `RestClient` (serving/client/rest.py) and `GrpcClient` (serving/client/grpc_client.py)
implement it. `predict` speaks the MNIST signature of the model stage's export (docs/contracts.md,
issue 3): input ``images`` float32 [N, 28, 28, 1] of raw 0-255 grey values, outputs
``probabilities`` float32 [N, 10] and ``classes`` int64 [N]. `predict_raw` takes and returns any
named tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from serving.client.errors import InvalidInput, UnexpectedResponse

__all__ = [
    "CLASSES_OUTPUT",
    "DEFAULT_SIGNATURE",
    "IMAGES_INPUT",
    "IMAGE_SHAPE",
    "PROBABILITIES_OUTPUT",
    "ModelClient",
    "Prediction",
    "VersionStatus",
    "check_images",
    "check_model_spec",
    "prediction_from_outputs",
]

DEFAULT_SIGNATURE = "serving_default"
IMAGES_INPUT = "images"
PROBABILITIES_OUTPUT = "probabilities"
CLASSES_OUTPUT = "classes"
IMAGE_SHAPE = (28, 28, 1)

_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Prediction:
    """Classes and probabilities for a batch of images, and the version that answered.

    `model_version` is known from gRPC responses (``model_spec.version``); TF Serving's REST
    predict response does not carry it, so it is None there.
    """

    classes: np.ndarray  # int64 [N]
    probabilities: np.ndarray  # float32 [N, 10]
    model_version: int | None = None


@dataclass(frozen=True)
class VersionStatus:
    """One entry of ``GetModelStatusResponse.model_version_status``."""

    version: int
    state: str  # START, LOADING, AVAILABLE, UNLOADING, END (UNKNOWN if unset)
    error_code: str  # tensorflow.error.Code name, "OK" when healthy
    error_message: str


@runtime_checkable
class ModelClient(Protocol):
    """A TF Serving client, over REST or gRPC. Implementations are thread-safe."""

    def predict(
        self,
        model: str,
        images: np.ndarray,
        *,
        version: int | None = None,
        label: str | None = None,
        signature_name: str = DEFAULT_SIGNATURE,
    ) -> Prediction: ...

    def predict_raw(
        self,
        model: str,
        inputs: Mapping[str, Any],
        *,
        version: int | None = None,
        label: str | None = None,
        signature_name: str = DEFAULT_SIGNATURE,
    ) -> dict[str, np.ndarray]: ...

    def status(
        self, model: str, *, version: int | None = None, label: str | None = None
    ) -> list[VersionStatus]: ...

    def metadata(
        self, model: str, *, version: int | None = None, label: str | None = None
    ) -> dict[str, Any]: ...

    def close(self) -> None: ...


def check_model_spec(model: str, version: int | None, label: str | None) -> None:
    """Refuse a model spec TF Serving could not route: no name, bad version, version and label.

    Any non-empty name or label goes: TF Serving takes any model name, and the REST client
    percent-encodes both into the route (TF Serving decodes them, http_rest_api_util.cc).
    """
    if not isinstance(model, str) or not model:
        raise InvalidInput(f"model name {model!r} is not valid: give the model's name")
    if version is not None and label is not None:
        raise InvalidInput(
            f"give a version ({version}) or a label ({label!r}), not both: "
            "TF Serving's ModelSpec holds one of them"
        )
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or not 0 < version <= _INT64_MAX
    ):
        raise InvalidInput(f"version {version!r} is not valid: use a positive integer")
    if label is not None and (not isinstance(label, str) or not label):
        raise InvalidInput(f"label {label!r} is not valid: give the label's name")


def check_images(images: np.ndarray) -> np.ndarray:
    """Return `images` as float32 [N, 28, 28, 1], or raise InvalidInput saying what is wrong."""
    array = np.asarray(images)
    if array.ndim != 4 or array.shape[1:] != IMAGE_SHAPE or array.shape[0] == 0:
        raise InvalidInput(
            f"images must have shape [N, 28, 28, 1] with N >= 1, got {list(array.shape)}"
        )
    if array.dtype.kind not in "uif":
        raise InvalidInput(f"images must be numeric (raw 0-255 grey values), got {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float32)


def prediction_from_outputs(
    outputs: Mapping[str, np.ndarray], count: int, model_version: int | None
) -> Prediction:
    """Check the MNIST signature's outputs for `count` images and wrap them in a Prediction."""
    missing = {PROBABILITIES_OUTPUT, CLASSES_OUTPUT} - outputs.keys()
    if missing:
        raise UnexpectedResponse(
            f"response lacks output(s) {sorted(missing)} (has {sorted(outputs)}); is this the "
            f"MNIST signature? use predict_raw for other models"
        )
    probabilities = np.asarray(outputs[PROBABILITIES_OUTPUT], dtype=np.float32)
    classes = np.asarray(outputs[CLASSES_OUTPUT], dtype=np.int64)
    if probabilities.shape[:1] != (count,) or probabilities.ndim != 2 or classes.shape != (count,):
        raise UnexpectedResponse(
            f"expected probabilities [{count}, K] and classes [{count}] for {count} image(s), got "
            f"{list(probabilities.shape)} and {list(classes.shape)}"
        )
    return Prediction(classes=classes, probabilities=probabilities, model_version=model_version)
