"""The bundled digits and their seeded, stratified split."""

from __future__ import annotations

import numpy as np
import pytest

from model.data import load_mnist, split_dataset
from model.errors import DataError


@pytest.fixture(scope="module")
def data():
    return load_mnist()


def test_bundled_digits_are_raw_grey_values(data) -> None:
    assert data.images.shape == (5000, 28, 28, 1)
    assert data.images.dtype == np.float32
    assert data.images.max() == 255.0 and data.images.min() == 0.0
    assert np.bincount(data.labels).tolist() == [500] * 10
    assert len(data.sha256) == 64 and data.sha256 == load_mnist().sha256


def test_default_split_is_stratified_disjoint_and_seeded(data) -> None:
    split = split_dataset(data, seed=42, val_fraction=0.15, test_fraction=0.15)
    assert split.sizes == {"train": 3500, "validation": 750, "test": 750}
    for labels in (split.y_train, split.y_val, split.y_test):
        counts = np.bincount(labels, minlength=10)
        assert counts.max() - counts.min() <= 1, counts
    again = split_dataset(data, seed=42, val_fraction=0.15, test_fraction=0.15)
    np.testing.assert_array_equal(split.x_test, again.x_test)
    other = split_dataset(data, seed=7, val_fraction=0.15, test_fraction=0.15)
    assert not np.array_equal(split.y_test, other.y_test)
    # No digit is in two splits: compare flattened pixel rows.
    train = {row.tobytes() for row in split.x_train}
    assert not any(row.tobytes() in train for row in split.x_test)


def test_limit_takes_a_stratified_slice(data) -> None:
    split = split_dataset(data, seed=1, val_fraction=0.15, test_fraction=0.15, limit=300)
    assert sum(split.sizes.values()) == 300
    assert set(split.y_test.tolist()) == set(range(10))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": 20}, "--limit 20 is out of range"),
        ({"limit": 6000}, "--limit 6000 is out of range"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "sum to less than 1"),
        ({"test_fraction": 0.0}, "must each be in"),
    ],
)
def test_bad_split_requests_are_refused(data, kwargs: dict, message: str) -> None:
    args = {"seed": 0, "val_fraction": 0.15, "test_fraction": 0.15, **kwargs}
    with pytest.raises(DataError, match=message):
        split_dataset(data, **args)
