"""Loading digit images for the MNIST model: PNG/JPEG files and ``.npy`` arrays.

Creates [N, 28, 28, 1] float32 batches of raw 0-255 grey values, which is what the model stage's
signature takes (pixel scaling is inside the model). Nothing is resized or rescaled silently: a
file of the wrong size, shape or value range is refused with an error naming the file.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from serving.client.errors import InvalidInput

__all__ = ["LoadedImages", "load_image_file", "load_images", "load_npy_file"]

_SIDE = 28
# Pillow modes whose values are 8-bit (or fewer) per channel, so converting to "L" keeps 0-255.
_EIGHT_BIT_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "La"}


@dataclass(frozen=True)
class LoadedImages:
    """A batch and, for each row, where it came from (``file`` or ``file[i]`` for arrays)."""

    images: np.ndarray  # float32 [N, 28, 28, 1]
    sources: tuple[str, ...]


def load_images(paths: Sequence[str | Path]) -> LoadedImages:
    """Load every file into one batch, in order; ``.npy`` files may hold many images."""
    if not paths:
        raise InvalidInput("no input files given: pass PNG/JPEG images or .npy arrays")
    arrays: list[np.ndarray] = []
    sources: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.suffix.lower() == ".npy":
            array = load_npy_file(path)
            arrays.append(array)
            sources.extend(f"{path}[{i}]" for i in range(array.shape[0]))
        else:
            arrays.append(load_image_file(path)[np.newaxis])
            sources.append(str(path))
    return LoadedImages(images=np.concatenate(arrays), sources=tuple(sources))


def load_image_file(path: str | Path) -> np.ndarray:
    """One 28x28 PNG/JPEG (any 8-bit mode; colour becomes grey) as float32 [28, 28, 1]."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            mode, size = image.mode, image.size
            if mode not in _EIGHT_BIT_MODES:
                raise InvalidInput(
                    f"{path}: pixel mode {mode!r} is not 8-bit; save it as 8-bit grey (mode L)"
                )
            if size != (_SIDE, _SIDE):
                raise InvalidInput(
                    f"{path}: image is {size[0]}x{size[1]} pixels; the model takes 28x28 "
                    "(resize it first, e.g. with Pillow's Image.resize)"
                )
            grey = np.asarray(image.convert("L"), dtype=np.float32)
    except FileNotFoundError as exc:
        raise InvalidInput(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise InvalidInput(f"{path}: is a directory, not an image") from exc
    except UnidentifiedImageError as exc:
        raise InvalidInput(f"{path}: not a PNG or JPEG image (or an .npy array)") from exc
    except OSError as exc:  # truncated or corrupt image data
        raise InvalidInput(f"{path}: cannot read image: {exc}") from exc
    return grey[:, :, np.newaxis]


def read_npy(path: Path, what: str) -> object:
    """`np.load` of a user's file, every failure an `InvalidInput` naming `what` (the file, or
    the flag that gave it). Never unpickles: an array file from elsewhere must not run code."""
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise InvalidInput(f"{what}: no such file") from exc
    except IsADirectoryError as exc:
        raise InvalidInput(f"{what}: is a directory, not an .npy array") from exc
    except EOFError as exc:  # an empty file
        raise InvalidInput(f"{what}: empty file, not an .npy array") from exc
    except zipfile.BadZipFile as exc:  # starts like an .npz, is not one
        raise InvalidInput(
            f"{what}: a damaged .npz archive ({exc}); write one array with np.save"
        ) from exc
    except ValueError as exc:
        if "pickled" in str(exc):
            # NumPy falls back to pickle for anything that is not .npy/.npz; its message then
            # suggests allow_pickle=True, which this client never does.
            raise InvalidInput(
                f"{what}: not in NumPy's .npy format (pickled or other data is never loaded); "
                "write the array with np.save"
            ) from exc
        raise InvalidInput(f"{what}: not a readable .npy array ({exc})") from exc
    except OSError as exc:
        raise InvalidInput(f"{what}: cannot read ({exc.strerror or exc})") from exc


def load_npy_file(path: str | Path) -> np.ndarray:
    """An ``.npy`` of raw 0-255 grey digits, [28,28], [28,28,1], [N,28,28] or [N,28,28,1]."""
    path = Path(path)
    array = read_npy(path, str(path))
    if not isinstance(array, np.ndarray):
        raise InvalidInput(f"{path}: holds several arrays (.npz); save one array with np.save")
    if array.dtype.kind not in "uif":
        raise InvalidInput(f"{path}: dtype {array.dtype} is not numeric; use uint8 or float32")
    shape = array.shape
    if shape == (_SIDE, _SIDE) or shape == (_SIDE, _SIDE, 1):
        array = array.reshape(1, _SIDE, _SIDE, 1)
    elif len(shape) == 3 and shape[1:] == (_SIDE, _SIDE):
        array = array[..., np.newaxis]
    elif not (len(shape) == 4 and shape[1:] == (_SIDE, _SIDE, 1)):
        raise InvalidInput(
            f"{path}: shape {list(shape)} is not a 28x28 digit or a batch of them; use "
            "[28, 28], [28, 28, 1], [N, 28, 28] or [N, 28, 28, 1]"
        )
    if array.shape[0] == 0:
        raise InvalidInput(f"{path}: holds no images (shape {list(shape)})")
    values = array.astype(np.float32)
    if not np.isfinite(values).all():
        raise InvalidInput(f"{path}: contains NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > 255:
        raise InvalidInput(
            f"{path}: values range {low:g}..{high:g}; the model takes raw grey values in 0..255"
        )
    if array.dtype.kind == "f" and 0 < high <= 1:
        # A float array already scaled to [0, 1] would be scaled again inside the model and give
        # confident nonsense; refuse it rather than answer wrongly.
        raise InvalidInput(
            f"{path}: values look scaled to 0..1 (max {high:g}); the model scales pixels itself, "
            "send raw 0..255 values (multiply by 255)"
        )
    return values
