"""``python -m devtools.serve DIR [DIR ...]``: serve export directories the way TF Serving would.

What ``docker run -p 8500:8500 -p 8501:8501 -v DIR:/models/NAME tensorflow/serving`` is to TF
Serving users, without Docker, a store or a config file: each DIR is ``.../<name>`` holding
integer-named version directories (what ``python -m model train`` writes, what TF Serving's base
paths hold), served under the directory's own name, whatever it is (``half_plus_two`` too: TF
Serving takes any model name). The local stand-in (`devtools.server`) does the serving, from a
``models.config`` written to a temporary directory that is removed on exit.

Flags: TF Serving's ``--port`` (gRPC, default 8500) and ``--rest_api_port`` (default 8501, as in
TF Serving's Docker image), where 0 picks a free port; ``--host`` (default 127.0.0.1: this machine
only; 0.0.0.0 for every interface). Once every model is loaded it prints the URLs and, per model,
one example request built from its signature (`serving.client.sample_inputs`), then serves until
SIGINT/SIGTERM. Exit codes: 0 after a graceful stop, 2 bad arguments or directories (nothing
started), 1 a model that does not load.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import shlex
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from contracts.rules import RuleError, validate_serving_name
from contracts.tfconfig import ModelConfig, render_models_config
from model import tf_quiet

# TF Serving reads every all-digit directory name as a version (leading zeros too: 00000123).
_VERSION_DIR = re.compile(r"[0-9]{1,19}")
# A body longer than this is written to a file and sent with `curl -d @FILE`.
INLINE_BODY_CHARS = 300


class UsageError(ValueError):
    """A bad argument or directory; the message names it and the fix."""


@dataclass(frozen=True)
class Model:
    name: str
    base_path: Path
    versions: tuple[int, ...]


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port: use 1-65535, or 0 for a free one")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.serve",
        description="Serve SavedModel export directories over TF Serving's REST and gRPC APIs "
        "(the local stand-in), one model per DIR, named after it. No store, stack or config "
        "file needed.",
    )
    parser.add_argument(
        "dirs",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="a model directory, .../<name>, holding version directories 1/, 2/, ...",
    )
    parser.add_argument(
        "--port", type=_port, default=8500, help="gRPC port; 0 picks a free one (%(default)s)"
    )
    parser.add_argument(
        "--rest_api_port",
        type=_port,
        default=8501,
        help="REST port; 0 picks a free one (%(default)s)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind: %(default)s serves this machine only, 0.0.0.0 every interface",
    )
    return parser


def find_models(dirs: Sequence[Path]) -> list[Model]:
    """The models the directories hold, or UsageError naming what is wrong with one."""
    models: dict[str, Model] = {}
    for given in dirs:
        path = given.expanduser().resolve()
        if not path.is_dir():
            raise UsageError(f"{given}: no such directory")
        if (path / "saved_model.pb").is_file():
            raise UsageError(
                f"{given} is a version directory (it holds saved_model.pb): give the model "
                f"directory above it, {path.parent}, which holds the versions"
            )
        versions = sorted(
            int(child.name)
            for child in path.iterdir()
            if child.is_dir() and _VERSION_DIR.fullmatch(child.name)
        )
        if not versions:
            raise UsageError(
                f"{given} holds no version directory: TF Serving loads <model dir>/<version>/ "
                "with an integer version (1/, 2/, ...), as `python -m model train` writes them"
            )
        try:
            name = validate_serving_name(path.name)
        except RuleError as exc:
            raise UsageError(f"{given}: {exc}") from None
        if name in models:
            raise UsageError(
                f"two directories are named {name!r} ({models[name].base_path} and {path}): "
                "a model is served under its directory's name, so each must be unique"
            )
        models[name] = Model(name, path, tuple(versions))
    return list(models.values())


def _server_argv(args: argparse.Namespace, config: Path) -> list[str]:
    """The stand-in's flags: 0 ("any free port" here) is its -1 (0 would disable the API)."""
    return [
        f"--port={args.port or -1}",
        f"--rest_api_port={args.rest_api_port or -1}",
        f"--host={args.host}",
        f"--model_config_file={config}",
    ]


def _reach(host: str) -> str:
    """Who can call a server bound to `host`, in words."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "this machine only" if host == "localhost" else f"the interface of {host}"
    if address.is_loopback:
        return "this machine only"
    if address.is_unspecified:
        return "every interface: other machines can call it"
    return f"the interface {host}"


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"  # reachable from this machine; other machines use its address
    return f"[{host}]" if ":" in host else host


def example_lines(name: str, metadata: dict[str, Any], rest: str, folder: Path) -> list[str]:
    """How to call one model: status, and one request built from its signature."""
    from serving.client.sample_inputs import predict_body
    from serving.client.signature import signature_from_metadata, tf_example_hint

    route = f"{rest}/v1/models/{quote(name, safe='')}"
    lines = [f"  status:   curl {route}", f"  metadata: curl {route}/metadata"]
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    servable = sorted(k for k in signatures if not k.startswith("__"))
    predict = [k for k in servable if tf_example_hint(signature_from_metadata(metadata, k)) is None]
    chosen = "serving_default" if "serving_default" in predict else (predict or [None])[0]
    if chosen is None:
        hints = [tf_example_hint(signature_from_metadata(metadata, k)) for k in servable]
        lines += [f"  {hint}" for hint in hints if hint] or ["  no servable signature"]
        return lines
    signature = signature_from_metadata(metadata, chosen)
    try:
        body = json.dumps(predict_body(signature))
    except ValueError as exc:
        return [*lines, f"  no example request for signature {chosen!r}: {exc}"]
    if len(body) <= INLINE_BODY_CHARS:
        data = shlex.quote(body)
    else:
        request = folder / f"request-{len(list(folder.glob('request-*.json'))) + 1}.json"
        request.write_text(body)
        data = f"@{request}"
    lines.append(f"  predict:  curl -d {data} {route}:predict")
    return lines


def _metadata(server: Any, name: str) -> dict[str, Any]:
    from devtools.server.service import metadata_json, metadata_response

    with server.manager.handle(name, None, None) as servable:
        return json.loads(metadata_json(metadata_response(servable)))


def report(
    server: Any, models: Sequence[Model], args: argparse.Namespace, folder: Path, out: TextIO
) -> None:
    host = _url_host(args.host)
    rest, grpc = f"http://{host}:{server.rest_port}", f"{host}:{server.grpc_port}"
    print(f"Serving {len(models)} model(s) on {args.host} ({_reach(args.host)})", file=out)
    print(f"  REST {rest}    gRPC {grpc}", file=out)
    for model in models:
        states = {s.version: s.state for s in server.manager.status(model.name, None)}
        loaded = [str(v) for v, state in sorted(states.items()) if state == "AVAILABLE"]
        print(
            f"\n{model.name}: version {', '.join(loaded)} of {model.base_path}",
            file=out,
        )
        for line in example_lines(model.name, _metadata(server, model.name), rest, folder):
            print(line, file=out)
    print(
        f"\nAny model over gRPC: python -m serving.client predict --model NAME --grpc {grpc} "
        "--inputs-json FILE (docs/client.md). Ctrl-C stops.",
        file=out,
        flush=True,
    )


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    try:
        models = find_models(args.dirs)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tf_quiet.configure()  # before TensorFlow is imported (serve_until_signalled)
    from devtools.server.errors import ServerConfigError
    from devtools.server.flags import parse_flags
    from devtools.server.run import configure_logging, serve_until_signalled

    configure_logging()

    with tempfile.TemporaryDirectory(prefix="devtools-serve-") as scratch:
        folder = Path(scratch)
        config = folder / "models.config"
        entries = [ModelConfig(name=m.name, base_path=str(m.base_path)) for m in models]
        config.write_text(render_models_config(entries))
        try:
            options = parse_flags(_server_argv(args, config))
        except ServerConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return serve_until_signalled(
            options, on_started=lambda server: report(server, models, args, folder, out)
        )


if __name__ == "__main__":
    sys.exit(main())
