"""``python -m devtools.server``: a local stand-in for ``tensorflow_model_server``.

Same flags (see `devtools.server.flags`), same REST and gRPC APIs. Exits 0 after a graceful
shutdown on SIGTERM/SIGINT (or after ``--help``), 2 when a flag is wrong (with the usage), 1 when
a config file is wrong or the initial models fail to load, printing what is wrong.
``TFSE_VERBOSE=1`` shows TensorFlow's full log (see `model.tf_quiet`).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from devtools.server.errors import ServerConfigError
from devtools.server.flags import parse_flags, usage
from model import tf_quiet


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("--help", "-h", "--helpfull") for a in args):
        print(usage())
        return 0
    tf_quiet.configure()  # before TensorFlow is imported (below, after the flags are checked)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s.%(msecs)03d: %(levelname).1s %(name)s] %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )
    try:
        options = parse_flags(args)
    except ServerConfigError as exc:
        print(f"error: {exc}\n\n{usage()}", file=sys.stderr)
        return 2

    from model.tf_runtime import tensorflow

    # Before anything imports TensorFlow: kernels that refuse an input of the wrong rank instead
    # of aborting the process (oneDNN off; model/tf_runtime.py), then the quiet device probe.
    tensorflow(untrusted_inputs=True)
    from devtools.server.server import ModelServer  # imports TensorFlow: after flag errors

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = ModelServer(options)
    try:
        server.start()
    except (ServerConfigError, OSError) as exc:
        logging.getLogger("devtools.server").error("%s", exc)
        server.stop(grace_seconds=0)
        return 1
    while not stop.wait(0.5):  # a timed wait keeps the main thread responsive to signals
        pass
    logging.getLogger("devtools.server").info("Shutting down: draining in-flight requests")
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
