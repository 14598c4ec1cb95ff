"""The bundled data and the protocol's seeded split (stratified for mnist, plain for diabetes)."""

from __future__ import annotations

import numpy as np
import pytest

from model.errors import DataError
from model.recipes.diabetes import Diabetes
from model.recipes.mnist import Mnist, load_mnist

MNIST = Mnist()


@pytest.fixture(scope="module")
def data():
    return load_mnist()


def test_bundled_digits_are_raw_grey_values(data) -> None:
    images, labels = data
    assert images.shape == (5000, 28, 28, 1)
    assert images.dtype == np.float32
    assert images.max() == 255.0 and images.min() == 0.0
    assert np.bincount(labels).tolist() == [500] * 10
    assert load_mnist() is data  # read once per process
    assert not images.flags.writeable and not labels.flags.writeable


def test_default_split_is_stratified_disjoint_and_seeded(data) -> None:
    split = MNIST.split(*data, seed=42)
    assert split.sizes == {"train": 3500, "validation": 750, "test": 750}
    for labels in (split.y_train, split.y_val, split.y_test):
        counts = np.bincount(labels, minlength=10)
        assert counts.max() - counts.min() <= 1, counts
    again = MNIST.split(*data, seed=42)
    np.testing.assert_array_equal(split.x_test, again.x_test)
    other = MNIST.split(*data, seed=7)
    assert not np.array_equal(split.y_test, other.y_test)
    # No digit is in two splits: compare flattened pixel rows.
    train = {row.tobytes() for row in split.x_train}
    assert not any(row.tobytes() in train for row in split.x_test)


def test_limit_takes_a_stratified_slice(data) -> None:
    split = MNIST.split(*data, seed=1, limit=300)
    assert sum(split.sizes.values()) == 300
    assert set(split.y_test.tolist()) == set(range(10))


@pytest.mark.parametrize(
    ("recipe", "limit", "message"),
    [
        (MNIST, 20, "--limit 20 is out of range: .* between 67 and 5000 .* every class"),
        (MNIST, 6000, "--limit 6000 is out of range"),
        (Mnist(val_fraction=0.6, test_fraction=0.5), None, "sum to less than 1"),
        (Mnist(test_fraction=0.0), None, "must each be in"),
        (Diabetes(), 40, "between 67 and 442 so every split holds at least 10 samples"),
    ],
)
def test_bad_split_requests_are_refused(recipe, limit: int | None, message: str) -> None:
    with pytest.raises(DataError, match=message):
        recipe.split(*recipe.load(), seed=0, limit=limit)


def test_a_regression_split_is_seeded_and_unstratified() -> None:
    recipe = Diabetes()
    split = recipe.split(*recipe.load(), seed=42, limit=120)
    assert split.sizes == {"train": 78, "validation": 18, "test": 24}
    again = recipe.split(*recipe.load(), seed=42, limit=120)
    np.testing.assert_array_equal(split.y_test, again.y_test)
