"""TensorFlow for the model stage, imported once with its CPU-only GPU-probe noise dropped.

See `model.tf_quiet` for what is dropped and why (and ``TFSE_VERBOSE=1`` to see it all).
"""

from __future__ import annotations

from types import ModuleType

from model import tf_quiet


def tensorflow() -> ModuleType:
    """Import TensorFlow (sets the log level first if nothing did) and run the quiet probe."""
    tf_quiet.configure()
    import tensorflow as tf

    tf_quiet.probe_devices(lambda: tf.config.list_physical_devices("GPU"))
    return tf
