"""Loading PNG/JPEG/.npy digits into [N, 28, 28, 1] float32 raw 0-255, and refusing bad files."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from serving.client import InvalidInput, load_images


def test_png_keeps_exact_grey_values(image_files, digits: np.ndarray) -> None:
    loaded = load_images([image_files("seven.png", index=1)])
    assert loaded.images.shape == (1, 28, 28, 1)
    assert loaded.images.dtype == np.float32
    np.testing.assert_array_equal(loaded.images[0, :, :, 0], digits[1].astype(np.float32))
    assert loaded.sources[0].endswith("seven.png")


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P"])
def test_colour_pngs_become_grey(image_files, digits: np.ndarray, mode: str) -> None:
    loaded = load_images([image_files(f"digit-{mode}.png", mode=mode)])
    # A grey image stored as colour converts back to the same grey (within palette rounding).
    assert np.abs(loaded.images[0, :, :, 0] - digits[0]).max() <= (0 if mode != "P" else 64)


def test_jpeg_loads_close_to_the_original(image_files, digits: np.ndarray) -> None:
    loaded = load_images([image_files("digit.jpg", index=2)])
    assert loaded.images.shape == (1, 28, 28, 1)
    # JPEG is lossy; noise-like test digits lose the most, but the mean must stay close.
    assert abs(float(loaded.images.mean()) - float(digits[2].mean())) < 8


@pytest.mark.parametrize(
    ("shape", "count"),
    [((28, 28), 1), ((28, 28, 1), 1), ((4, 28, 28), 4), ((4, 28, 28, 1), 4)],
)
def test_npy_shapes(tmp_path: Path, shape: tuple[int, ...], count: int) -> None:
    array = np.arange(np.prod(shape)).reshape(shape) % 256
    np.save(tmp_path / "batch.npy", array.astype(np.uint8))
    loaded = load_images([tmp_path / "batch.npy"])
    assert loaded.images.shape == (count, 28, 28, 1)
    np.testing.assert_array_equal(loaded.images.reshape(-1), array.reshape(-1))
    assert loaded.sources == tuple(f"{tmp_path / 'batch.npy'}[{i}]" for i in range(count))


def test_files_are_batched_in_order(tmp_path: Path, image_files, digits: np.ndarray) -> None:
    np.save(tmp_path / "two.npy", digits[:2])
    first = image_files("a.png", index=2)
    loaded = load_images([first, tmp_path / "two.npy", image_files("b.png", index=0)])
    assert loaded.images.shape == (4, 28, 28, 1)
    expected = np.stack([digits[2], digits[0], digits[1], digits[0]]).astype(np.float32)
    np.testing.assert_array_equal(loaded.images[..., 0], expected)
    assert loaded.sources[0] == str(first)


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda p: p.write_text("not an image"), "not a PNG or JPEG image"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20), "not a PNG or JPEG"),
        (lambda p: None, "no such file"),
        (lambda p: p.mkdir(), "is a directory"),
    ],
)
def test_bad_image_files_name_the_file(tmp_path: Path, write, message: str) -> None:
    path = tmp_path / "digit.png"
    write(path)
    with pytest.raises(InvalidInput, match=message) as caught:
        load_images([path])
    assert str(path) in str(caught.value)


def test_truncated_png_is_refused(image_files) -> None:
    path = image_files("cut.png")
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(InvalidInput, match=re.escape(str(path))):
        load_images([path])


def test_wrong_image_size_is_refused_not_resized(image_files) -> None:
    path = image_files("big.png", size=32)
    with pytest.raises(
        InvalidInput, match=r"big\.png: image is 32x32 pixels; the model takes 28x28"
    ):
        load_images([path])


def test_sixteen_bit_images_are_refused(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "deep.png"
    Image.fromarray(np.full((28, 28), 1000, dtype=np.uint16)).save(path)
    with pytest.raises(InvalidInput, match="not 8-bit"):
        load_images([path])


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((3, 28)), r"shape \[3, 28\] is not a 28x28 digit"),
        (np.zeros((2, 28, 28, 3)), r"shape \[2, 28, 28, 3\]"),
        (np.zeros((0, 28, 28)), "holds no images"),
        (np.full((28, 28), 300.0), "values range 300..300"),
        (np.full((28, 28), -1.0), "values range -1..-1"),
        (np.full((28, 28), np.nan), "NaN or infinite"),
        (np.full((28, 28), 0.5, dtype=np.float32), "look scaled to 0..1"),
        (np.array([["a"] * 28] * 28), "not numeric"),
    ],
)
def test_bad_npy_arrays_are_refused(tmp_path: Path, array: np.ndarray, message: str) -> None:
    path = tmp_path / "x.npy"
    np.save(path, array)
    with pytest.raises(InvalidInput, match=message) as caught:
        load_images([path])
    assert str(path) in str(caught.value)


def test_pickled_npy_is_never_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidInput, match=r"not a readable \.npy array"):
        load_images([path])
    junk = tmp_path / "junk.npy"
    junk.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(InvalidInput, match=r"junk\.npy: not in NumPy's \.npy format \(pickled"):
        load_images([junk])


def test_no_files_is_an_error() -> None:
    with pytest.raises(InvalidInput, match="no input files"):
        load_images([])
