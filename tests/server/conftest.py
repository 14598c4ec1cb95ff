"""Fixtures for the local model server: test SavedModels and in-process servers.

Models are built without training (seeded or fixed weights), once per session:

- ``toy``: `tests.contract.models.export_toy` (the contract tests' ``toy_tf2``):
  ``serving_default`` ``x`` float [-1] -> ``y = 0.5 x + offset``; ``multi`` (two inputs, two
  outputs); ``strings`` (DT_STRING in, ``length`` and ``echo_bytes`` out); ``classify_x_to_y``
  and ``regress_x_to_y`` that parse ``tf.Example`` features ``x``.
- the root conftest's MNIST-signature ``tiny_savedmodel``.

TF Serving's own test models (``half_plus_two`` and its kin) are in tests/contract.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.contract.models import export_toy


def write_warmup(version_dir: Path, model: str, batches: list[np.ndarray], key: str) -> None:
    """Write assets.extra/tf_serving_warmup_requests with one PredictLog per batch."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    target = version_dir / "assets.extra" / "tf_serving_warmup_requests"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(target)) as writer:
        for batch in batches:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model
            request.inputs[key].CopyFrom(tf.make_tensor_proto(batch))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())


@pytest.fixture(scope="session")
def warmup_writer() -> Callable[..., None]:
    """`write_warmup(version_dir, model, batches, input_key)` for tests that craft warmup files."""
    return write_warmup


@pytest.fixture(scope="session")
def toy_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Pristine toy exports: ``v1`` (offset 2) and ``v2`` (offset 3), copied into tests."""
    root = tmp_path_factory.mktemp("toy_source")
    export_toy(root / "v1", offset=2.0)
    export_toy(root / "v2", offset=3.0)
    write_warmup(root / "v2", "toy", [np.array([1.0], np.float32)], "x")
    return root


@pytest.fixture(scope="session")
def toy_base(toy_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only base path with toy version 1 (tests that change versions copy their own)."""
    base = tmp_path_factory.mktemp("toy_models") / "toy"
    shutil.copytree(toy_source / "v1", base / "1")
    return base


@pytest.fixture(scope="session")
def manager_factory() -> Iterator[Callable[..., object]]:
    """Build ModelManagers that are stopped at the end of the session."""
    from devtools.server.manager import ManagerOptions, ModelManager

    made: list[ModelManager] = []

    def make(models, **options) -> ModelManager:
        batcher = options.pop("batcher", None)
        loader = options.pop("loader", None)
        kwargs = {"batcher": batcher}
        if loader is not None:
            kwargs["loader"] = loader
        manager = ModelManager(ManagerOptions(file_system_poll_wait_seconds=0, **options), **kwargs)
        manager.start(models)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.stop()


@pytest.fixture(scope="session")
def serve() -> Iterator[Callable[[list[str]], object]]:
    """Start in-process ModelServers from command-line flags; all stop at session end."""
    from devtools.server.flags import parse_flags
    from devtools.server.server import ModelServer

    servers: list[ModelServer] = []

    def start(argv: list[str]) -> ModelServer:
        server = ModelServer(
            parse_flags(["--port=-1", "--rest_api_port=-1", "--host=127.0.0.1", *argv])
        )
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(grace_seconds=5)


@pytest.fixture(scope="session")
def shared_server(serve, toy_base: Path, tiny_savedmodel, tmp_path_factory):
    """One server with ``toy`` (label ``stable`` -> 1) and ``mnist``, metrics on, batching on."""
    from contracts.tfconfig import ModelConfig, render_models_config, render_monitoring_config

    mnist_base, mnist = tiny_savedmodel
    folder = tmp_path_factory.mktemp("shared_server")
    config = folder / "models.config"
    config.write_text(
        render_models_config(
            [
                ModelConfig(name="toy", base_path=str(toy_base), labels={"stable": 1}),
                ModelConfig(name=mnist, base_path=str(mnist_base)),
            ]
        )
    )
    monitoring = folder / "monitoring.config"
    monitoring.write_text(render_monitoring_config())
    batching = folder / "batching.config"
    batching.write_text(
        "max_batch_size { value: 32 }\nbatch_timeout_micros { value: 1000 }\n"
        "max_enqueued_batches { value: 100 }\nnum_batch_threads { value: 2 }\n"
    )
    return serve(
        [
            f"--model_config_file={config}",
            f"--monitoring_config_file={monitoring}",
            "--enable_batching",
            f"--batching_parameters_file={batching}",
            "--allow_version_labels_for_unavailable_models",
        ]
    )
