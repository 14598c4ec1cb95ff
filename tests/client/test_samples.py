"""`python -m model samples`: the sample inputs the docs use, and what the client makes of them.

The files are checked against the bundled digits they were cut from, read back with the client's
own loader, and request.json is posted as is to the real local server (REST), as docs/client.md
shows with curl.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from model.__main__ import main as model_main
from model.samples import DIGIT_WORDS
from serving.client.images import load_images


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("samples") / "inputs"  # created by the command
    assert model_main(["samples", "--out", str(out)]) == 0
    return out


def test_the_command_writes_every_file_the_docs_name(samples: Path, capsys) -> None:
    expected = sorted([f"{w}.png" for w in DIGIT_WORDS] + ["digits.npy", "request.json"])
    assert sorted(p.name for p in samples.iterdir()) == sorted([*expected, "samples.json"])
    # Again into the same directory: the same bytes, no temporary files left behind.
    before = {p.name: p.read_bytes() for p in samples.iterdir()}
    assert model_main(["samples", "--out", str(samples)]) == 0
    assert {p.name: p.read_bytes() for p in samples.iterdir()} == before
    printed = capsys.readouterr().out.splitlines()
    assert str(samples / "seven.png") in printed and str(samples / "request.json") in printed


def test_pngs_npy_and_request_hold_the_same_ten_digits(samples: Path) -> None:
    index = json.loads((samples / "samples.json").read_text())
    assert index["labels"]["seven.png"] == 7 and index["labels"]["digits.npy"] == list(range(10))
    pngs = load_images([samples / f"{w}.png" for w in DIGIT_WORDS]).images
    npy = load_images([samples / "digits.npy"]).images
    assert np.load(samples / "digits.npy").dtype == np.uint8
    body = json.loads((samples / "request.json").read_text())
    assert body["signature_name"] == "serving_default"
    request = np.asarray(body["instances"], dtype=np.float32)
    assert pngs.shape == npy.shape == request.shape == (10, 28, 28, 1)
    assert np.array_equal(pngs, npy) and np.array_equal(npy, request)
    assert all(img.max() > 100 for img in pngs)  # real strokes, not blank images


def test_a_file_as_out_is_refused(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert model_main(["samples", "--out", str(blocker)]) == 1
    assert f"--out {blocker} is a file" in capsys.readouterr().err


def test_request_json_is_a_body_the_server_accepts(samples: Path, local_server) -> None:
    server, name = local_server
    answer = httpx.post(
        f"{server.rest_url}/v1/models/{name}:predict",
        content=(samples / "request.json").read_bytes(),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 10
