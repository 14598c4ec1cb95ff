"""Fixtures shared across test areas: a real S3 endpoint on loopback and a tiny servable model.

Area-specific fixtures live in each area's own conftest.py.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Fake credentials for the loopback S3 endpoint; set before boto3 is imported anywhere so no test
# can reach a real account through a developer's own credential chain.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_EC2_METADATA_DISABLED="true",
    TF_CPP_MIN_LOG_LEVEL="2",
    # As the local server and publish's warmup replay run: oneDNN's convolution aborts the
    # process on an input of the wrong rank (model/tf_runtime.py), and both run in-process here.
    TF_ENABLE_ONEDNN_OPTS="0",
)
for _var in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
    os.environ.pop(_var, None)


def pytest_addoption(parser: pytest.Parser) -> None:
    # Here, at the root, so the options exist however the run is started (tests/contract).
    group = parser.getgroup("contract", "TF Serving contract tests (tests/contract)")
    group.addoption(
        "--serving-rest-url",
        default=os.environ.get("TF_SERVING_REST_URL") or None,
        help="run tests/contract against this REST base URL (with --serving-grpc-target) "
        "instead of the local stand-in; env TF_SERVING_REST_URL",
    )
    group.addoption(
        "--serving-grpc-target",
        default=os.environ.get("TF_SERVING_GRPC_TARGET") or None,
        help="the same server's gRPC HOST:PORT; env TF_SERVING_GRPC_TARGET",
    )


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """URL of a moto S3 server on 127.0.0.1 (a real HTTP S3 endpoint), shared by the session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3(moto_endpoint: str):
    """A boto3 S3 client bound to the loopback endpoint."""
    import boto3

    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3) -> str:
    """A fresh, empty bucket per test."""
    name = f"models-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def tiny_savedmodel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A SavedModel with the MNIST serving signature, built without training.

    Returns ``(base_path, name)``; version 1 is at ``base_path/1``. The signature matches the
    model stage's export: ``images`` float32 [-1, 28, 28, 1] -> ``probabilities`` float32
    [-1, 10] and ``classes`` int64 [-1]. Weights are seeded, so predictions are deterministic.
    """
    import tensorflow as tf

    base = tmp_path_factory.mktemp("tiny_model") / "mnist"
    export_tiny_savedmodel(base / "1", seed=1)
    tf.keras.backend.clear_session()
    return base, "mnist"


def export_tiny_savedmodel(path: Path, seed: int) -> None:
    """Write a tiny MNIST-signature SavedModel to `path` (different seeds, different weights)."""
    import tensorflow as tf

    generator = tf.random.Generator.from_seed(seed)

    class Tiny(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(generator.normal([784, 10]) * 0.01, name="w")
            self.b = tf.Variable(tf.zeros([10]), name="b")

        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name="images")])
        def serve(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
            flat = tf.reshape(images / 255.0, [-1, 784])
            probabilities = tf.nn.softmax(flat @ self.w + self.b)
            return {
                "probabilities": probabilities,
                "classes": tf.argmax(probabilities, axis=1, output_type=tf.int64),
            }

    module = Tiny()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


@pytest.fixture(scope="session")
def make_tiny_savedmodel():
    """The writer behind `tiny_savedmodel`, for tests that need more versions: f(path, seed)."""
    return export_tiny_savedmodel
