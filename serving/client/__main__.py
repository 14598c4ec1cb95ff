"""Command line for the TF Serving client: ``predict``, ``status`` and ``metadata``.

```
python -m serving.client predict  [--model mnist] (--rest URL | --grpc HOST:PORT)
                                  [--version N | --label L] FILE...
python -m serving.client status   [--model mnist] (--rest URL | --grpc HOST:PORT) [...]
python -m serving.client metadata [--model mnist] (--rest URL | --grpc HOST:PORT) [...]
```

FILE is a 28x28 PNG/JPEG or an ``.npy`` array of raw 0-255 grey digits (the MNIST model). Any
other model and signature: ``predict --inputs-json FILE`` (a REST request body, row or columnar)
or ``predict --input NAME=FILE.npy ...``; the signature is fetched from the server's metadata and
the inputs are converted and checked against it before they are sent. Exit codes: 0 success;
1 the server answered with an error; 2 bad arguments or input files; 3 the server could not be
reached or timed out; 4 ``status --wait-available`` gave up.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from cli.args import positive_float, positive_int
from serving.client import connect
from serving.client.base import DEFAULT_SIGNATURE, Prediction, VersionStatus
from serving.client.endpoint import add_tls_arguments, tls_from_args
from serving.client.errors import (
    ClientError,
    ConnectionFailed,
    InvalidInput,
    ServerError,
    UnexpectedResponse,
)
from serving.client.images import load_images

EXIT_OK, EXIT_SERVER, EXIT_USAGE, EXIT_CONNECTION, EXIT_NOT_AVAILABLE = 0, 1, 2, 3, 4

ClientFactory = Callable[..., Any]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", default="mnist", help="model name (default: mnist)")
    where = common.add_mutually_exclusive_group(required=True)
    where.add_argument("--rest", metavar="URL", help="REST base URL, e.g. http://localhost:8501")
    where.add_argument("--grpc", metavar="HOST:PORT", help="gRPC address, e.g. localhost:8500")
    which = common.add_mutually_exclusive_group()
    which.add_argument("--version", type=positive_int, help="a model version number")
    which.add_argument("--label", help="a version label, e.g. stable or canary")
    common.add_argument(
        "--timeout", type=positive_float, default=10.0, help="seconds per call (default: 10)"
    )
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_tls_arguments(common)
    common.add_argument(
        "--verbose",
        action="store_true",
        help="accepted for older scripts; the client loads no TensorFlow, so has no log to add",
    )

    parser = argparse.ArgumentParser(
        prog="python -m serving.client",
        description="Talk to TF Serving (or the local server) over REST or gRPC.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    predict = commands.add_parser(
        "predict",
        parents=[common],
        help="classify digit images (PNG/JPEG 28x28 or .npy), or predict any signature from "
        "--inputs-json / --input NAME=FILE.npy",
    )
    predict.add_argument(
        "files", nargs="*", metavar="FILE", help="MNIST: PNG/JPEG image or .npy array of digits"
    )
    predict.add_argument(
        "--inputs-json",
        metavar="FILE",
        help="any model: a TF Serving REST request body, row (instances) or columnar (inputs) "
        "format; '-' reads standard input",
    )
    predict.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=FILE.npy",
        help="any model: one input tensor from a .npy file (repeat per input)",
    )
    predict.add_argument("--signature-name", default=DEFAULT_SIGNATURE)
    predict.add_argument(
        "--batch-size", type=positive_int, default=64, help="images per request (default: 64)"
    )
    status = commands.add_parser("status", parents=[common], help="state of each model version")
    status.add_argument(
        "--wait-available",
        type=positive_float,
        metavar="SECONDS",
        help="poll until a version (the one asked for, if any) is AVAILABLE; exit 4 if not",
    )
    commands.add_parser("metadata", parents=[common], help="the model's signature definitions")
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    client_factory: ClientFactory = connect,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the CLI; returns the exit code. `client_factory` lets tests inject a transport."""
    try:
        code = _main(argv, client_factory=client_factory, stdout=stdout, stderr=stderr)
        (stdout or sys.stdout).flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        # The reader closed the pipe early (`... metadata | head`): it wanted no more, which is
        # not an error. Point stdout at /dev/null so the interpreter's final flush is silent too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _main(
    argv: Sequence[str] | None,
    *,
    client_factory: ClientFactory,
    stdout: TextIO | None,
    stderr: TextIO | None,
) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "predict":
        _check_predict_sources(parser, args)
    where = f"REST {args.rest}" if args.rest else f"gRPC {args.grpc}"
    generic = args.command == "predict" and bool(args.inputs_json or args.input)
    try:
        batch = load_images(args.files) if args.command == "predict" and not generic else None
        tls = tls_from_args(args)
        secure = {} if tls is None else {"tls": tls}  # the model endpoint (docs/endpoint.md)
        with client_factory(
            rest=args.rest, grpc=args.grpc, timeout=args.timeout, **secure
        ) as client:
            spec = {"version": args.version, "label": args.label}
            if generic:
                name, outputs = _predict_any(client, args, spec)
                _print_outputs(out, args, where, name, outputs)
            elif args.command == "predict":
                assert batch is not None
                predictions = [
                    client.predict(
                        args.model,
                        batch.images[start : start + args.batch_size],
                        signature_name=args.signature_name,
                        **spec,
                    )
                    for start in range(0, len(batch.images), args.batch_size)
                ]
                _print_predictions(out, args, where, batch.sources, predictions)
            elif args.command == "status":
                if args.wait_available is None:
                    statuses = client.status(args.model, **spec)
                else:
                    statuses, last = _wait_available(client, args, where, err)
                if statuses:  # a wait that never reached the model has no table to show
                    _print_status(out, args, statuses)
                if args.wait_available is not None and not _any_available(statuses):
                    print(
                        f"error: no AVAILABLE version of {args.model!r} at {where} after "
                        f"{args.wait_available:g}s: {last.text}\n{last.next_step}",
                        file=err,
                    )
                    return EXIT_NOT_AVAILABLE
            else:
                print(json.dumps(client.metadata(args.model, **spec), indent=2), file=out)
    except InvalidInput as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE
    except ConnectionFailed as exc:
        print(f"error: {where}: {exc}", file=err)
        return EXIT_CONNECTION
    except ServerError as exc:
        print(f"error: {where} answered {exc.status}: {exc.message}", file=err)
        for note in exc.notes:
            print(f"note: {note}", file=err)
        return EXIT_SERVER
    except (UnexpectedResponse, ClientError) as exc:
        print(f"error: {where}: {exc}", file=err)
        return EXIT_SERVER
    return EXIT_OK


def _check_predict_sources(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    sources = [bool(args.files), bool(args.inputs_json), bool(args.input)]
    if not any(sources):
        parser.error(
            "the following arguments are required: FILE (MNIST images), or --inputs-json FILE "
            "or --input NAME=FILE.npy (any model)"
        )
    if sum(sources) > 1:
        parser.error(
            "predict takes exactly one kind of input: image FILEs (MNIST), --inputs-json FILE, "
            "or --input NAME=FILE.npy (repeatable)"
        )


def _predict_any(
    client: Any, args: argparse.Namespace, spec: dict[str, Any]
) -> tuple[str, dict[str, np.ndarray]]:
    """Inputs checked against the signature from the server's metadata, then predicted."""
    from serving.client.signature import (
        load_json_inputs,
        load_npy_inputs,
        prepare_inputs,
        read_json_file,
        shape_notes,
        signature_from_metadata,
    )

    document = read_json_file(args.inputs_json) if args.inputs_json else None
    name = args.signature_name
    if isinstance(document, dict) and document.get("signature_name"):
        name = str(document["signature_name"])
    signature = signature_from_metadata(client.metadata(args.model, **spec), name)
    if document is not None:
        inputs, _ = load_json_inputs(document, sorted(signature["inputs"]))
    else:
        inputs = load_npy_inputs(args.input)
    prepared = prepare_inputs(inputs, signature)
    try:
        return name, client.predict_raw(args.model, prepared, signature_name=name, **spec)
    except ServerError as exc:
        # Shapes are left to the server, as TF Serving leaves them to the model; when it refuses
        # the request, say which inputs differ from the declared shapes.
        exc.notes = shape_notes(prepared, signature)
        raise


def _print_outputs(
    out: TextIO, args: argparse.Namespace, where: str, signature: str, outputs: dict[str, Any]
) -> None:
    def plain(array: np.ndarray) -> Any:
        if array.dtype == object:
            return [plain(v) if isinstance(v, np.ndarray) else _text(v) for v in array]
        return array.tolist()

    if args.json:
        document = {
            "model": args.model,
            "signature_name": signature,
            "outputs": {k: plain(np.asarray(v)) for k, v in sorted(outputs.items())},
        }
        print(json.dumps(document, indent=2), file=out)
        return
    print(f"model {args.model} signature {signature} via {where}", file=out)
    for key, value in sorted(outputs.items()):
        array = np.asarray(value)
        print(f"{key} {list(array.shape)} {array.dtype}:", file=out)
        rows = array if array.ndim else array.reshape(1)
        for index, row in enumerate(rows):
            print(f"  [{index}] {plain(np.asarray(row)) if np.ndim(row) else _text(row)}", file=out)


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return value.item() if isinstance(value, np.generic) else value


def _any_available(statuses: Sequence[VersionStatus]) -> bool:
    return any(s.state == "AVAILABLE" for s in statuses)


@dataclass(frozen=True)
class Observation:
    """What one status poll saw, in words: `text` names the state, `next_step` what to do."""

    text: str
    next_step: str


def _observe(
    client: Any, args: argparse.Namespace, where: str
) -> tuple[list[VersionStatus], Observation]:
    """One status poll: the statuses, and whether the server was unreachable, had no such model,
    reported a failed version (with the server's own error) or is still loading."""
    try:
        statuses = client.status(args.model, version=args.version, label=args.label)
    except ConnectionFailed as exc:
        # "refused": nothing listens there (yet); otherwise the server did not answer in time.
        cause = "connection refused" if "refused" in str(exc).lower() else "no answer"
        return [], Observation(
            f"{cause} ({exc})",
            f"next: start the server or check the address ({where})",
        )
    except ServerError as exc:
        if exc.status in (404, "NOT_FOUND"):
            return [], Observation(
                f"the server is up but has not loaded model {args.model!r} ({exc.message})",
                "next: check the server's --model_config_file / --model_base_path and its log; "
                "a version must be on its disk (the sync agent puts it there)",
            )
        return [], Observation(
            f"the server answered {exc.status}: {exc.message}", "next: read the server's log"
        )
    failed = [s for s in statuses if s.error_code not in ("", "OK")]
    states = ", ".join(f"version {s.version} {s.state}" for s in statuses) or "no versions"
    if failed and not _any_available(statuses):
        errors = "; ".join(f"{f.version}: {f.error_code}: {f.error_message}" for f in failed)
        return statuses, Observation(
            f"{states}; failed version {errors}",
            "next: fix what the server's error names, then publish a new version",
        )
    return statuses, Observation(states, "next: wait longer (--wait-available) or read its log")


def _wait_available(
    client: Any, args: argparse.Namespace, where: str, err: TextIO
) -> tuple[list[VersionStatus], Observation]:
    """Poll until a version is AVAILABLE or the wait is over; the last statuses and observation.

    Says on `err` what it waits for and every change in what it sees (starting servers refuse
    connections, then answer NOT_FOUND, then report LOADING), so a long wait is never silent.
    """
    wanted = f" version {args.version}" if args.version else ""
    wanted += f" (label {args.label})" if args.label else ""
    print(
        f"waiting up to {args.wait_available:g}s for model {args.model!r}{wanted} to be "
        f"AVAILABLE at {where}",
        file=err,
        flush=True,
    )
    started = time.monotonic()
    deadline = started + args.wait_available
    shown = None
    while True:
        statuses, seen = _observe(client, args, where)
        if seen.text != shown:
            print(f"  [{time.monotonic() - started:5.1f}s] {seen.text}", file=err, flush=True)
            shown = seen.text
        if _any_available(statuses) or time.monotonic() >= deadline:
            return statuses, seen
        time.sleep(0.2)


def _print_predictions(
    out: TextIO,
    args: argparse.Namespace,
    where: str,
    sources: Sequence[str],
    predictions: Sequence[Prediction],
) -> None:
    classes = np.concatenate([p.classes for p in predictions])
    probabilities = np.concatenate([p.probabilities for p in predictions])
    versions = sorted({p.model_version for p in predictions if p.model_version is not None})
    if args.json:
        document = {
            "model": args.model,
            "model_versions": versions,
            "predictions": [
                {"input": source, "class": int(c), "probabilities": [float(v) for v in row]}
                for source, c, row in zip(sources, classes, probabilities, strict=True)
            ],
        }
        print(json.dumps(document, indent=2), file=out)
        return
    served = f"version {', '.join(map(str, versions))}" if versions else "version not reported"
    print(f"model {args.model} ({served}) via {where}", file=out)
    width = max(len("input"), *(len(s) for s in sources))
    header = "  ".join(f"p{k:<4}" for k in range(probabilities.shape[1]))
    print(f"{'input':<{width}}  class  confidence  {header}", file=out)
    for source, c, row in zip(sources, classes, probabilities, strict=True):
        cells = "  ".join(f"{v:.3f}" for v in row)
        print(f"{source:<{width}}  {c:>5}  {row[c]:>10.4f}  {cells}", file=out)


def _print_status(out: TextIO, args: argparse.Namespace, statuses: Sequence[VersionStatus]) -> None:
    if args.json:
        rows = [
            {
                "version": s.version,
                "state": s.state,
                "error_code": s.error_code,
                "error_message": s.error_message,
            }
            for s in statuses
        ]
        print(json.dumps({"model": args.model, "model_version_status": rows}, indent=2), file=out)
        return
    print(f"{'version':>7}  {'state':<10}  {'error_code':<12}  error_message", file=out)
    for s in statuses:
        print(f"{s.version:>7}  {s.state:<10}  {s.error_code:<12}  {s.error_message}", file=out)


if __name__ == "__main__":
    sys.exit(main())
