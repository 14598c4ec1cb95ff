"""Fixtures for the local model server: test SavedModels and in-process servers.

Models are built without training (seeded or fixed weights), once per session:

- ``toy``: TF Serving's own test model in spirit (``half_plus_two``): ``serving_default``
  ``x`` float [-1] -> ``y = 0.5 x + offset``; ``multi`` (two inputs, two outputs); ``strings``
  (DT_STRING in, ``length`` and ``echo_bytes`` out); ``classify_x_to_y`` and ``regress_x_to_y``
  that parse ``tf.Example`` features ``x``.
- ``half-plus-two``: TF Serving's ``half_plus_two`` test model rebuilt with ``tf.compat.v1``
  (``saved_model_half_plus_two.py``): a TF1 graph parsing ``tf.Example`` feature ``x`` into a
  [?,1] tensor, ``y = a*x + b`` with variables a=0.5, b=2, and the predict, regress and classify
  signatures of the original. (Model names here may not contain '_', hence the dashes.)
- the root conftest's MNIST-signature ``tiny_savedmodel``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest


def export_toy(path: Path, offset: float = 2.0) -> None:
    import tensorflow as tf

    class Toy(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = tf.Variable(0.5)
            self.b = tf.Variable(offset)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def half_plus(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": x * self.a + self.b}

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 2], tf.float32, name="a"),
                tf.TensorSpec([None], tf.int64, name="b"),
            ]
        )
        def multi(self, a: tf.Tensor, b: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"sum": tf.reduce_sum(a, axis=1), "b_twice": b * 2}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="s")])
        def strings(self, s: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"length": tf.strings.length(s), "echo_bytes": s}

        def _x(self, inputs: tf.Tensor) -> tf.Tensor:
            spec = {"x": tf.io.FixedLenFeature([1], tf.float32)}
            return tf.io.parse_example(inputs, spec)["x"] * self.a + self.b

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def classify(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"scores": self._x(inputs)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def regress(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"outputs": self._x(inputs)}

    toy = Toy()
    tf.saved_model.save(
        toy,
        str(path),
        signatures={
            "serving_default": toy.half_plus,
            "multi": toy.multi,
            "strings": toy.strings,
            "classify_x_to_y": toy.classify,
            "regress_x_to_y": toy.regress,
        },
    )


def export_half_plus_two(path: Path) -> None:
    """TF Serving's half_plus_two, built the way its testdata script builds it (TF1 graph)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        a = v1.Variable(0.5, name="a")
        b = v1.Variable(2.0, name="b")
        serialized = v1.placeholder(tf.string, shape=[None], name="tf_example")
        parsed = v1.io.parse_example(serialized, {"x": v1.io.FixedLenFeature([1], tf.float32)})
        x = tf.identity(parsed["x"], name="x")  # static shape [?,1]
        y = tf.identity(a * x + b, name="y")
        info = v1.saved_model.utils.build_tensor_info
        build = v1.saved_model.signature_def_utils.build_signature_def
        signatures = {
            "serving_default": build({"x": info(x)}, {"y": info(y)}, "tensorflow/serving/predict"),
            "regress_x_to_y": build(
                {"inputs": info(serialized)}, {"outputs": info(y)}, "tensorflow/serving/regress"
            ),
            "classify_x_to_y": build(
                {"inputs": info(serialized)}, {"scores": info(y)}, "tensorflow/serving/classify"
            ),
        }
        session.run(v1.global_variables_initializer())
        builder = v1.saved_model.builder.SavedModelBuilder(str(path))
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map=signatures)
        builder.save()


@pytest.fixture(scope="session")
def half_plus_two_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A base path holding half-plus-two version 1."""
    base = tmp_path_factory.mktemp("tf1_models") / "half-plus-two"
    export_half_plus_two(base / "1")
    return base


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
