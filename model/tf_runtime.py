"""TensorFlow for the model stage, imported once with its CPU-only GPU-probe noise dropped.

See `model.tf_quiet` for what is dropped and why (and ``TFSE_VERBOSE=1`` to see it all).

Code that runs inputs it did not make (publish's warmup replay, the local server) asks for
``untrusted_inputs``: TensorFlow's oneDNN convolution CHECK-fails, aborting the whole process, on
an input of the wrong rank ("Check failed: index >= 0 && index < num_total_dims" in
tensor_format.h, TensorFlow 2.20 on x86), where the default Eigen kernel answers InvalidArgument
("convolution input must be 4-dimensional"). TensorFlow reads ``TF_ENABLE_ONEDNN_OPTS`` once,
when it loads, so it is set before the import; `onednn_enabled` says what the loaded TensorFlow
actually uses, for callers that must refuse to run with it.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

from model import tf_quiet

ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"


def tensorflow(*, untrusted_inputs: bool = False) -> ModuleType:
    """Import TensorFlow (sets the log level first if nothing did) and run the quiet probe.

    With `untrusted_inputs`, oneDNN is turned off if TensorFlow is not loaded yet.
    """
    tf_quiet.configure()
    if untrusted_inputs and "tensorflow" not in sys.modules:
        os.environ[ONEDNN_ENV] = "0"
    import tensorflow as tf

    tf_quiet.probe_devices(lambda: tf.config.list_physical_devices("GPU"))
    return tf


def onednn_enabled() -> bool:
    """Whether the loaded TensorFlow runs oneDNN kernels (fixed when TensorFlow loaded)."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def onednn_problem(who: str) -> str | None:
    """Why `who` cannot run untrusted inputs in this process, or None when it can."""
    if not onednn_enabled():
        return None
    return (
        f"{who}: TensorFlow was loaded with oneDNN on, whose convolution aborts the process on "
        f"an input of the wrong rank; set {ONEDNN_ENV}=0 before TensorFlow is imported "
        "(`python -m model publish` and `python -m devtools.server` do)"
    )
