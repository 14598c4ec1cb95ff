"""Run the stand-in until SIGTERM/SIGINT: what `python -m devtools.server` and
`python -m devtools.serve` share once their flags are checked.

TensorFlow is loaded here, as a server that runs inputs it did not make must load it (oneDNN
off, `model.tf_runtime`), so no command can start the stand-in with kernels that abort the
process on a request of the wrong rank.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from devtools.server.errors import ServerConfigError
from devtools.server.flags import ServerOptions

log = logging.getLogger("devtools.server")


def configure_logging() -> None:
    """The stand-in's log lines, in the shape of tensorflow_model_server's."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s.%(msecs)03d: %(levelname).1s %(name)s] %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )


def serve_until_signalled(
    options: ServerOptions, on_started: Callable[[Any], None] | None = None
) -> int:
    """Start the server on `options`, call `on_started(server)` once it listens with its initial
    models loaded, then serve until SIGTERM/SIGINT. 0 after a graceful shutdown (in-flight
    requests drained), 1 when it cannot start (a config file or an initial model that does not
    load, a port in use), with the cause logged."""
    from model.tf_runtime import tensorflow

    tensorflow(untrusted_inputs=True)
    from devtools.server.server import ModelServer  # imports TensorFlow: after the line above

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = ModelServer(options)
    try:
        server.start()
    except (ServerConfigError, OSError) as exc:
        log.error("%s", exc)
        server.stop(grace_seconds=0)
        return 1
    try:
        if on_started is not None:
            on_started(server)
        while not stop.wait(0.5):  # a timed wait keeps the main thread responsive to signals
            pass
        log.info("Shutting down: draining in-flight requests")
    finally:
        server.stop()
    return 0
