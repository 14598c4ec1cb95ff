"""``python -m devtools.server``: a local stand-in for ``tensorflow_model_server``.

Same flags (see `devtools.server.flags`), same REST and gRPC APIs. Exits 0 after a graceful
shutdown on SIGTERM/SIGINT (or after ``--help``), 2 when a flag is wrong (with the usage), 1 when
a config file is wrong or the initial models fail to load, printing what is wrong.
``TFSE_VERBOSE=1`` shows TensorFlow's full log (see `model.tf_quiet`).
"""

from __future__ import annotations

import sys

from devtools.server.errors import ServerConfigError
from devtools.server.flags import parse_flags, usage
from devtools.server.run import configure_logging, serve_until_signalled
from model import tf_quiet


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("--help", "-h", "--helpfull") for a in args):
        print(usage())
        return 0
    tf_quiet.configure()  # before TensorFlow is imported (below, after the flags are checked)
    configure_logging()
    try:
        options = parse_flags(args)
    except ServerConfigError as exc:
        print(f"error: {exc}\n\n{usage()}", file=sys.stderr)
        return 2

    return serve_until_signalled(options)


if __name__ == "__main__":
    sys.exit(main())
