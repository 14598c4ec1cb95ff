"""The models the contract tests serve, under TF Serving's own names, and their models.config.

Built here with TensorFlow (nothing is downloaded), the way TF Serving's test data is built:

- ``saved_model_half_plus_two_2_versions`` and ``half_plus_two``: the TF1 graph of
  ``tensorflow_serving/servables/tensorflow/testdata/saved_model_half_plus_two.py`` (y = a*x + b,
  y2 = a*x + c, y3 = a2*x2 + c2 with a = 0.5, b = 2, c = 3; x and x2 parsed from ``tf.Example``
  features, static shape [?, 1]) with its five signatures. The first has versions 123 and 124
  (``00000123``, ``00000124``, leading zeros as in TF Serving's testdata) and is configured as
  ``http_rest_api_handler_test.cc`` configures it: specific version 123, label ``Version_Label``.
  The second is the model of TF Serving's Docker guide (``docker.md``, served as ``half_plus_two``).
- ``saved_model_half_plus_three``: the model of ``api_rest.md``'s examples, an old TF1 export
  whose signature tensors carry no shape at all, with a regress signature named
  ``tensorflow/serving/regress``.
- ``toy_tf2``: a TF2 ``tf.Module`` written here for what the above lack: two inputs and two outputs
  (``multi``), string tensors (``strings``), a [-1] float ``serving_default`` and ``tf.Example``
  classify/regress signatures saved as TF2 saves every signature (method predict). It is also
  served as ``Toy Model:v1/beta``: a name with a space, a colon and a slash.

``python -m tests.contract.models OUT [--base-path /models]`` writes them under OUT with
``OUT/models.config`` naming them at ``/models/<name>`` (the container path the pull-request
workflow mounts OUT at for the real TF Serving).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contracts.tfconfig import ModelConfig, VersionPolicy, render_models_config

TWO_VERSIONS = "saved_model_half_plus_two_2_versions"
HALF_PLUS_TWO = "half_plus_two"
HALF_PLUS_THREE = "saved_model_half_plus_three"
TOY = "toy_tf2"
# The toy again, under a name only a percent-encoded REST route can carry: TF Serving takes any
# name (and two names on one base path).
ODD_NAME = "Toy Model:v1/beta"
VERSION = 123  # TF Serving's testdata version directories are 00000123 (and 00000124)
LABEL = "Version_Label"  # http_rest_api_handler_test.cc's kTestModelVersionLabel


def export_half_plus_two(path: Path, b: float = 2.0) -> None:
    """TF Serving's saved_model_half_plus_two.py, CPU variant, rebuilt with ``tf.compat.v1``."""
    import tensorflow as tf

    v1 = tf.compat.v1
    signature = v1.saved_model.signature_def_utils.build_signature_def
    info = v1.saved_model.utils.build_tensor_info
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        a = v1.Variable(0.5, name="a")
        b_var = v1.Variable(b, name="b")
        c = v1.Variable(3.0, name="c")
        serialized = v1.placeholder(tf.string, name="tf_example", shape=[None])
        features = {
            "x": v1.io.FixedLenFeature([1], tf.float32),
            "x2": v1.io.FixedLenFeature([1], tf.float32, default_value=[0.0]),
        }
        parsed = v1.io.parse_example(serialized, features)
        x = tf.identity(parsed["x"], name="x")
        y = tf.identity(tf.add(tf.multiply(a, x), b_var), name="y")
        y2 = tf.identity(tf.add(tf.multiply(a, x), c), name="y2")
        x2 = tf.identity(parsed["x2"], name="x2")
        a2 = v1.Variable(0.5, name="a2")
        c2 = v1.Variable(3.0, name="c2")
        y3 = tf.identity(tf.add(tf.multiply(a2, x2), c2), name="y3")
        predict, regress = "tensorflow/serving/predict", "tensorflow/serving/regress"
        classify = "tensorflow/serving/classify"
        example = {"inputs": info(serialized)}
        signatures = {
            "regress_x_to_y": signature(example, {"outputs": info(y)}, regress),
            "regress_x_to_y2": signature(example, {"outputs": info(y2)}, regress),
            "regress_x2_to_y3": signature({"inputs": info(x2)}, {"outputs": info(y3)}, regress),
            "classify_x_to_y": signature(example, {"scores": info(y)}, classify),
            "serving_default": signature({"x": info(x)}, {"y": info(y)}, predict),
        }
        session.run(v1.global_variables_initializer())
        builder = v1.saved_model.builder.SavedModelBuilder(str(path))
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map=signatures)
        builder.save()


def export_half_plus_three(path: Path) -> None:
    """api_rest.md's ``saved_model_half_plus_three``: y = 0.5 x + 3, tensors without shapes."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        a = v1.Variable(0.5, name="a")
        b = v1.Variable(3.0, name="b")
        serialized = v1.placeholder(tf.string, name="tf_example")
        parsed = v1.io.parse_example(serialized, {"x": v1.io.FixedLenFeature([1], tf.float32)})
        x = tf.identity(parsed["x"], name="x")
        y = tf.identity(tf.add(tf.multiply(a, x), b), name="y")

        def info(tensor: tf.Tensor):
            tensor_info = v1.saved_model.utils.build_tensor_info(tensor)
            tensor_info.ClearField("tensor_shape")  # as the original export: no shape at all
            return tensor_info

        build = v1.saved_model.signature_def_utils.build_signature_def
        regress = "tensorflow/serving/regress"
        signatures = {
            "serving_default": build({"x": info(x)}, {"y": info(y)}, "tensorflow/serving/predict"),
            regress: build({"inputs": info(serialized)}, {"outputs": info(y)}, regress),
        }
        session.run(v1.global_variables_initializer())
        builder = v1.saved_model.builder.SavedModelBuilder(str(path))
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map=signatures)
        builder.save()


def export_toy(path: Path, offset: float = 2.0) -> None:
    """A TF2 module: ``serving_default`` x float [-1] -> y = 0.5 x + offset, and more."""
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


def write_models(out: Path) -> None:
    """Every contract model under ``out/<name>/<version>``."""
    export_half_plus_two(out / TWO_VERSIONS / "00000123")
    export_half_plus_two(out / TWO_VERSIONS / "00000124")
    export_half_plus_two(out / HALF_PLUS_TWO / "00000123")
    export_half_plus_three(out / HALF_PLUS_THREE / "00000123")
    export_toy(out / TOY / "1")


def model_configs(base_path: str) -> list[ModelConfig]:
    """The models.config entries, each at ``base_path/<name>``."""
    return [
        ModelConfig(
            name=TWO_VERSIONS,
            base_path=f"{base_path}/{TWO_VERSIONS}",
            policy=VersionPolicy.specific([VERSION]),
            labels={LABEL: VERSION},
        ),
        ModelConfig(name=HALF_PLUS_TWO, base_path=f"{base_path}/{HALF_PLUS_TWO}"),
        ModelConfig(name=HALF_PLUS_THREE, base_path=f"{base_path}/{HALF_PLUS_THREE}"),
        ModelConfig(name=TOY, base_path=f"{base_path}/{TOY}"),
        ModelConfig(name=ODD_NAME, base_path=f"{base_path}/{TOY}"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.contract.models",
        description="Write the contract tests' models and a models.config naming them.",
    )
    parser.add_argument("out", type=Path, help="directory to write (must not exist)")
    parser.add_argument(
        "--base-path",
        default="/models",
        help="where the server sees OUT; models.config names BASE/<model> (%(default)s)",
    )
    args = parser.parse_args(argv)
    if args.out.exists():
        parser.error(f"{args.out} exists: give a new directory")
    write_models(args.out)
    text = render_models_config(model_configs(args.base_path.rstrip("/")))
    (args.out / "models.config").write_text(text)
    print(f"wrote {', '.join(c.name for c in model_configs(''))} and models.config to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
