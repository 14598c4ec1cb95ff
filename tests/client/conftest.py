"""Fixtures for the client tests: a recording fake HTTP transport and sample digit files."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image


@dataclass
class FakeServer:
    """An httpx transport that records requests and answers from a route table.

    `routes` maps ``"METHOD /path"`` to ``(status, body)`` or to a callable taking the request.
    Unknown routes answer 404 like TF Serving's "Malformed request" (any status would do: tests
    only reach them by mistake).
    """

    routes: dict[str, Any] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.routes.get(f"{request.method} {request.url.path}")
        if answer is None:
            return httpx.Response(404, json={"error": f"Malformed request: {request.url.path}"})
        if callable(answer):
            return answer(request)
        status, body = answer
        if isinstance(body, (dict, list)):
            return httpx.Response(status, json=body)
        return httpx.Response(status, content=body)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


@pytest.fixture
def fake_server() -> FakeServer:
    return FakeServer()


def _mnist_predictions(classes: list[int]) -> dict[str, Any]:
    rows = []
    for c in classes:
        probabilities = [0.01] * 10
        probabilities[c] = 0.91
        rows.append({"probabilities": probabilities, "classes": c})
    return {"predictions": rows}


@pytest.fixture
def mnist_predictions() -> Callable[[list[int]], dict[str, Any]]:
    """f(classes) -> a TF Serving row-format response for the MNIST signature."""
    return _mnist_predictions


@pytest.fixture
def digits() -> np.ndarray:
    """Three deterministic 28x28 grey digits-like arrays, raw 0-255 uint8."""
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)


@pytest.fixture
def image_files(tmp_path: Path, digits: np.ndarray) -> Callable[..., Path]:
    """Write a digit as an image file: f(name, index=0, mode="L", size=28) -> path."""

    def write(name: str, index: int = 0, mode: str = "L", size: int = 28) -> Path:
        image = Image.fromarray(digits[index], mode="L").convert(mode)
        if size != 28:
            image = image.resize((size, size))
        path = tmp_path / name
        image.save(path)
        return path

    return write


@pytest.fixture(scope="session")
def local_server(tiny_savedmodel, tmp_path_factory: pytest.TempPathFactory):
    """The real ``python -m devtools.server`` over a copy of the tiny model (version 1)."""
    import shutil

    from devtools.bench.processes import start_local_server

    base, name = tiny_savedmodel
    workdir = tmp_path_factory.mktemp("local_server")
    shutil.copytree(base, workdir / name)
    with start_local_server(workdir / name, name, workdir, batching=None) as server:
        yield server, name


@pytest.fixture(scope="session")
def tiny_model_outputs(tiny_savedmodel):
    """f(images) -> the tiny model's outputs computed in-process, to compare servers against."""
    import tensorflow as tf

    base, _ = tiny_savedmodel
    serve = tf.saved_model.load(str(base / "1")).signatures["serving_default"]

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in serve(images=tf.constant(images, tf.float32)).items()}

    return run
