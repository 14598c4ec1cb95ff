"""The whole job on one machine: train, publish, sync, serve, hot-swap, synth — no cloud, no Docker.

`python -m devtools.local_run` (what `scripts/local-run` runs) drives the same commands the cloud
path uses, each as its own process, against an S3 endpoint on loopback (moto):

1. environment (done by `scripts/local-run` before this module starts)
2. `python -m model train` for mnist versions 1 and 2, and `--recipe diabetes` for the second
   model (each reused when its inputs are unchanged)
3. moto S3 server, bucket, `python -m model publish` of mnist version 1 and of diabetes
4. one `python -m serving.sync --once` per model (the init container), `python -m
   devtools.server` serving both from one models.config (the dev stack's policies), then one
   `python -m serving.sync --tfserving-url` sidecar per model, as in the cluster
5. the held-out test digits through the client over REST and gRPC: accuracy and latency; the
   held-out diabetes patients through the generic client (signature from metadata): MAE
6. version 2 published under steady load: hot swap, `canary` label moved, failed requests counted
7. `python -m infra.synth --stack dev`: the plan and its policy results
8. everything stopped; artefacts and logs listed

With ``--export DIR/<name>`` (repeatable) the same steps run on your own models instead, nothing
trained: `devtools.local_exports` says how each step takes them.

A failed step stops the run with a message naming the step and the log to read.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from devtools import local_steps as steps
from devtools.local_exports import check_export_dirs
from devtools.local_steps import MODEL, Options, say
from devtools.processes import REPO, Processes, StepFailed
from model import tf_quiet

DEFAULT_WORKDIR = REPO / "artifacts" / "local-run"
T = TypeVar("T")


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.local_run",
        description="Run the whole job on this machine (see docs/local-development.md).",
    )
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="(%(default)s)")
    parser.add_argument("--epochs", type=int, help="training epochs (default: the model's)")
    parser.add_argument("--limit", type=int, help="train on a slice of N digits (quick runs)")
    parser.add_argument("--min-accuracy", type=float, help="accuracy gate (default: the model's)")
    parser.add_argument(
        "--load-seconds",
        type=float,
        default=4.0,
        help="load before and after the swap (%(default)s)",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="load workers (%(default)s)")
    parser.add_argument("--no-synth", dest="synth", action="store_false", help="skip step 7")
    parser.add_argument(
        "--export",
        action="append",
        type=Path,
        default=[],
        metavar="DIR/<name>",
        help="run the whole flow on your own model instead of the recipes: a model directory "
        "holding integer version directories (repeatable; docs/bring-your-own-model.md)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="TensorFlow's full log here and in every child process (TFSE_VERBOSE=1)",
    )
    args = parser.parse_args(argv)
    # Before anything imports TensorFlow; children (servers, publish) inherit the environment.
    tf_quiet.configure(verbose=args.verbose)
    if args.load_seconds <= 0 or args.concurrency <= 0:
        parser.error("--load-seconds and --concurrency must be positive")
    if args.epochs is not None and args.epochs <= 0:
        parser.error("--epochs must be positive")
    exports: list[Path] = []
    if args.export:
        given = (("--epochs", args.epochs), ("--limit", args.limit))
        given += (("--min-accuracy", args.min_accuracy),)
        training = [flag for flag, value in given if value is not None]
        if training:
            parser.error(f"{', '.join(training)} train the recipes; --export serves your models")
        try:
            exports = check_export_dirs(args.export)
        except ValueError as exc:
            parser.error(str(exc))
    return Options(
        args.workdir.resolve(),
        args.epochs,
        args.limit,
        args.min_accuracy,
        args.load_seconds,
        args.concurrency,
        args.synth,
        tuple(exports),
    )


Step = Callable[..., Any]  # step(name, function, *args): runs it, remembering the step's name


def _recipes(options: Options, procs: Processes, step: Step) -> list[tuple[str, Path]]:
    """Steps 2-7 on the recipes (mnist, diabetes); the artefacts to list."""
    exports = step("2/8 train", steps.train_versions, procs, options)
    tabular = step("2/8 train", steps.train_second, procs, options)
    store = step("3/8 store", steps.start_store, procs, options, exports)
    step("3/8 store", steps.publish_second, procs, store, tabular)
    first = exports[0].version
    serving = step("4/8 serve", steps.start_serving, procs, options, store, first, tabular.version)
    step("5/8 predict", steps.evaluate, serving, options)
    step("5/8 predict", steps.evaluate_second, serving, tabular)
    step("6/8 hot swap", steps.hot_swap, procs, serving, store, exports, options)
    artefacts = [
        (f"{name} exports and reports", options.workdir / "exports" / name)
        for name in (MODEL, steps.SECOND_MODEL)
    ]
    if options.synth:
        plan = step("7/8 synth", steps.synth, procs, options)
        artefacts.append(("synth plan of the dev stack", plan))
    return artefacts


def _your_models(options: Options, procs: Processes, step: Step) -> list[tuple[str, Path]]:
    """Steps 2-7 on the --export directories (devtools.local_exports); the artefacts to list."""
    from devtools import local_exports as yours

    models = step("2/8 exports", yours.prepare, options, list(options.exports))
    store = step("3/8 store", steps.start_local_store, procs)
    step("3/8 store", yours.publish_first, procs, store, models)
    served = step("4/8 serve", yours.start_serving, procs, options, store, models)
    step("5/8 predict", yours.predict, served, models)
    step("6/8 hot swap", yours.hot_swap, procs, served, store, models, options)
    artefacts = [(f"{m.name} (second version)", m.second_dir) for m in models if m.copied]
    if options.synth:
        plan = step("7/8 synth", yours.synth, procs, options, models)
        artefacts.append(("synth plan of the dev stack", plan))
    return artefacts


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    began = time.monotonic()
    options.workdir.mkdir(parents=True, exist_ok=True)
    logs = options.workdir / "logs"
    current = ["2/8"]

    def step(name: str, run: Callable[..., T], *args: Any) -> T:
        current[0] = name
        return run(*args)

    flow = _your_models if options.exports else _recipes
    with Processes(logs) as procs:
        try:
            artefacts = flow(options, procs, step)
        except StepFailed as failure:
            print(f"\nFAILED at step {failure.step}: {failure}", file=sys.stderr)
            if failure.log is not None:
                print(f"read the log: {failure.log}", file=sys.stderr)
            return 1
        except Exception as exc:  # a bug or an environment problem: keep the traceback
            log = logs / "local-run.log"
            log.write_text(traceback.format_exc())
            print(f"\nFAILED at step {current[0]}: {exc!r}\nread the log: {log}", file=sys.stderr)
            return 1
        say("8/8 shutdown", "stopping sync agents, server and S3 endpoint")
    leftovers = procs.leftover_ports()
    if leftovers:
        print(f"\nFAILED at step 8: ports still open after shutdown: {leftovers}", file=sys.stderr)
        return 1
    say(
        "8/8 shutdown",
        f"all processes stopped, no ports left open ({time.monotonic() - began:.0f} s)",
    )
    print(f"\nartefacts: {options.workdir}")
    rows = [
        *artefacts,
        ("served model directories", options.workdir / "serving" / "models"),
        ("logs", logs),
    ]
    width = max(len(label) for label, _ in rows) + 2
    for label, path in rows:
        print(f"  {label + ':':<{width}}{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
