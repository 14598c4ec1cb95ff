"""TF1-style graph SavedModels for tests, built here with `tf.compat.v1` (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path


def build_half_plus_two(
    directory: Path,
    *,
    input_name: str = "x",
    extra_signature: bool = False,
    input_dtype: str = "float32",
    output_width: int | None = None,
) -> Path:
    """An equivalent of TF Serving's `half_plus_two` test model, written here (no download).

    A TF1-style graph SavedModel built with `tf.compat.v1`: y = a * x + b with variables a = 0.5
    and b = 2.0, tagged `serve`, with `serving_default` (predict: x -> y, unknown shape as in the
    original), `classify_x_to_y` and `regress_x_to_y` (tf.Example in, scores / outputs out).
    `input_dtype` "string" takes x as text (parsed to float); `output_width` reshapes y to
    [-1, width], a known output shape.
    """
    import tensorflow as tf

    v1 = tf.compat.v1
    utils = v1.saved_model.signature_def_utils
    graph = tf.Graph()
    with graph.as_default():
        a = v1.get_variable("a", shape=[], initializer=v1.constant_initializer(0.5))
        b = v1.get_variable("b", shape=[], initializer=v1.constant_initializer(2.0))
        x = v1.placeholder(getattr(tf, input_dtype), name=input_name)
        number = tf.strings.to_number(x) if input_dtype == "string" else x
        y = tf.add(tf.multiply(a, number), b)
        y = tf.identity(y if output_width is None else tf.reshape(y, [-1, output_width]), name="y")
        serialized = v1.placeholder(tf.string, name="tf_example")
        parsed = v1.parse_example(serialized, {"x": v1.FixedLenFeature([1], tf.float32)})
        from_example = tf.add(tf.multiply(a, parsed["x"]), b, name="y_from_example")
        signatures = {
            "serving_default": utils.predict_signature_def({input_name: x}, {"y": y}),
            "classify_x_to_y": utils.classification_signature_def(
                examples=serialized, classes=None, scores=from_example
            ),
            "regress_x_to_y": utils.regression_signature_def(
                examples=serialized, predictions=from_example
            ),
        }
        if extra_signature:
            signatures["double_y"] = utils.predict_signature_def({input_name: x}, {"y2": 2 * y})
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(directory))
            builder.add_meta_graph_and_variables(
                session, [v1.saved_model.tag_constants.SERVING], signature_def_map=signatures
            )
            builder.save()
    return directory
