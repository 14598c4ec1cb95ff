"""The steps of the local run (`devtools.local_run`), each failing with `StepFailed`.

Every step calls the project's real commands (`model train/publish`, `serving.sync`,
`devtools.server`, `infra.synth`) as child processes, and the typed client in-process.
"""

from __future__ import annotations

import functools
import json
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from contracts import tfconfig
from devtools.processes import Processes, StepFailed, start_local_s3, wait_until
from model.recipes.diabetes import Diabetes
from model.recipes.mnist import Mnist
from model.report import read_metrics
from model.train import Recipe, RunArgs
from serving.client import ClientError, RestClient
from serving.sync.local import write_atomic

MODEL = "mnist"
# The second model, served beside MNIST from the same models.config with its own sync agent and
# versions: the tabular `diabetes` recipe (named float inputs, trains in seconds).
SECOND_MODEL = "diabetes"
STACK = "dev"
BUCKET = "local-models"
STORE_URI = f"s3://{BUCKET}/models"  # the same layout as the stack's bucket (docs/contracts.md)
V1_SEED = 42
# Version 2 is the same recipe trained longer: same seed and split, different weights.
V2_EXTRA_EPOCHS = 4
LOAD_THINK_TIME_S = 0.02
BATCHING_FILE, MONITORING_FILE = "batching_parameters.txt", "monitoring.config"


def grpc_client(target: str, timeout: float) -> Any:
    """A `GrpcClient`, imported on first use: it imports TensorFlow (seconds, and on a CPU-only
    machine a GPU probe whose noise `model.tf_runtime` drops), so `--help` stays instant."""
    from model.tf_runtime import tensorflow

    tensorflow()  # first: the log level must be set before TensorFlow is imported
    from serving.client.grpc_client import GrpcClient

    return GrpcClient(target, timeout=timeout)


@dataclass(frozen=True)
class Options:
    """What the local run was asked to do (`python -m devtools.local_run --help`)."""

    workdir: Path
    epochs: int | None
    limit: int | None
    min_accuracy: float | None
    load_seconds: float
    concurrency: int
    synth: bool
    # `--export DIR/<name>`: the user's model directories, served instead of the recipes.
    exports: tuple[Path, ...] = ()


def say(step: str, message: str) -> None:
    print(f"[{step}] {message}", flush=True)


def latency_summary(latencies_ms: np.ndarray) -> str:
    p50, p90, p99 = (float(np.percentile(latencies_ms, q)) for q in (50, 90, 99))
    return f"p50 {p50:.1f} ms, p90 {p90:.1f} ms, p99 {p99:.1f} ms"


@dataclass(frozen=True)
class Export:
    version: int
    path: Path
    metric: float  # the recipe's gate metric: accuracy (mnist), mean absolute error (diabetes)
    headline: str  # the recipe's verdict, e.g. "test accuracy 0.9787 (gate 0.97)"
    reused: bool


@dataclass(frozen=True)
class Store:
    endpoint: str


@dataclass(frozen=True)
class Serving:
    rest_url: str
    grpc_target: str
    models_config: Path
    model_config: tfconfig.ModelConfig
    model_dir: Path
    stand_in_log: Path
    sync_log: Path
    # The other models in models.config (kept when MODEL's labels are moved).
    other_configs: tuple[tfconfig.ModelConfig, ...] = ()


# --- 2. train -------------------------------------------------------------------------------


def _mnist(options: Options, extra_epochs: int) -> tuple[Mnist, RunArgs]:
    recipe = Mnist()
    recipe = replace(recipe, epochs=(options.epochs or recipe.epochs) + extra_epochs)
    run = RunArgs(
        out=options.workdir / "exports",
        name=MODEL,
        seed=V1_SEED,
        limit=options.limit,
        threshold=options.min_accuracy,
    )
    return recipe, run


def _trained(procs: Processes, recipe: Recipe, run: RunArgs, log: str, after: int = 0) -> Export:
    """The newest export of `run` newer than version `after`: reused when its inputs are
    unchanged, else trained by `python -m model train` in a child process (its log: `log`)."""
    step = "2/8 train"
    run = recipe.resolve(run)
    found = recipe.reusable_export(run)
    reused = found is not None and int(found.name) > after
    if not reused:
        say(step, f"training {run.name}: {recipe.epochs} epochs")
        command = ["-m", "model", "train", "--recipe", recipe.name, "--out", str(run.out)]
        command += ["--name", str(run.name), "--seed", str(run.seed)]
        command += ["--epochs", str(recipe.epochs)]
        if run.threshold is not None:
            command += [recipe.gate.flag, str(run.threshold)]
        if run.limit is not None:
            command += ["--limit", str(run.limit)]
        procs.run(step, log, command, echo=True, timeout_s=1800)
        found = recipe.reusable_export(run)
        if found is None:
            raise StepFailed(step, f"training finished but the {run.name} export is not there")
    metrics = read_metrics(found) or {}
    value = float(metrics["test"][recipe.gate.metric])
    return Export(int(found.name), found, value, recipe.headline(metrics), reused)


def _trained_line(label: str, export: Export) -> str:
    how = "reused (inputs unchanged)" if export.reused else "trained"
    return f"{label}version {export.version}: {how}, {export.headline}, {export.path}"


def train_versions(procs: Processes, options: Options) -> tuple[Export, Export]:
    first = _trained(procs, *_mnist(options, 0), "train-1")
    after = first.version
    second = _trained(procs, *_mnist(options, V2_EXTRA_EPOCHS), f"train-{after + 1}", after)
    for export in (first, second):
        say("2/8 train", _trained_line("", export))
    return first, second


def train_second(procs: Processes, options: Options) -> Export:
    """The diabetes recipe's version (reused when its inputs are unchanged)."""
    run = RunArgs(out=options.workdir / "exports", name=SECOND_MODEL)
    export = _trained(procs, Diabetes(), run, f"train-{SECOND_MODEL}")
    say("2/8 train", _trained_line(f"{SECOND_MODEL} ", export))
    return export


# --- 3. store ---------------------------------------------------------------------------------


def _publish(procs: Processes, step: str, store: Store, export: Export) -> None:
    command = ["-m", "model", "publish", "--export", str(export.path), "--store", STORE_URI]
    command += ["--endpoint-url", store.endpoint]
    name = export.path.parent.name
    procs.run(step, f"publish-{name}-{export.version}", command, timeout_s=300)


def publish_second(procs: Processes, store: Store, export: Export) -> None:
    _publish(procs, "3/8 store", store, export)
    say("3/8 store", f"published {SECOND_MODEL} version {export.version} to {STORE_URI}/")


def start_local_store(procs: Processes) -> Store:
    """The loopback S3 endpoint with the run's empty bucket."""
    store = Store(start_local_s3(procs, "3/8 store", BUCKET))
    say("3/8 store", f"S3 endpoint {store.endpoint}, bucket {BUCKET}")
    return store


def start_store(procs: Processes, options: Options, exports: tuple[Export, Export]) -> Store:
    step = "3/8 store"
    store = start_local_store(procs)
    _publish(procs, step, store, exports[0])
    say(step, f"published version {exports[0].version} to {STORE_URI}/{MODEL}/")
    return store


# --- 4. serve ---------------------------------------------------------------------------------


def dev_model_settings(name: str = MODEL):
    """The dev stack's settings of model `name`, validated exactly as `pulumi up` would."""
    from infra.capture import stack_config
    from infra.settings import settings_from_config

    settings = settings_from_config(STACK, stack_config(STACK))
    for model in settings.models:
        if model.name == name:
            return model
    raise StepFailed("4/8 serve", f"the {STACK} stack serves no model named {name!r}")


def _sync_args(store: Store, name: str, models_dir: Path, serving_dir: Path) -> list[str]:
    return [
        "-m", "serving.sync", "--source", STORE_URI, "--dest", str(models_dir),
        "--model", name, "--interval", "1", "--endpoint-url", store.endpoint,
        "--model-config-file", str(serving_dir / "models.config"),
        "--status-file", str(serving_dir / f"sync-status-{name}.json"),
    ]  # fmt: skip


def _sync_once(
    procs: Processes, step: str, store: Store, name: str, models_dir: Path, serving_dir: Path
) -> None:
    """The init container: place the wanted versions before the server starts."""
    args = [*_sync_args(store, name, models_dir, serving_dir), "--once"]
    procs.run(step, f"sync-once-{name}", args, timeout_s=180)


def _start_sync(
    procs: Processes, store: Store, name: str, models_dir: Path, serving_dir: Path, rest_url: str
) -> Any:
    """One sync agent per model, as in the cluster (each pod's sidecar syncs its own model),
    asking the server which versions it serves: an old version is retired only once its
    successor is AVAILABLE there."""
    return procs.start(
        "sync" if name == MODEL else f"sync-{name}",
        [*_sync_args(store, name, models_dir, serving_dir), "--tfserving-url", rest_url],
    )


def start_serving(
    procs: Processes, options: Options, store: Store, first: int, second: int | None = None
) -> Serving:
    """MODEL (and SECOND_MODEL, when `second` is given) from one models.config."""
    step = "4/8 serve"
    model = dev_model_settings()
    serving_dir = options.workdir / "serving"
    # Run state, not an artefact: each run starts from an empty model directory, as a new pod does.
    shutil.rmtree(serving_dir, ignore_errors=True)
    models_dir = serving_dir / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    # The dev stack's model config: its policy and batching, with the base path moved from the
    # pod's /models/<name> to a local directory, and the labels a promotion would set.
    config = tfconfig.ModelConfig(
        name=MODEL,
        base_path=str(models_dir / MODEL),
        policy=model.version_policy,
        labels={"stable": first, "canary": first},
    )
    others: tuple[tfconfig.ModelConfig, ...] = ()
    if second is not None:
        others = (
            tfconfig.ModelConfig(
                name=SECOND_MODEL,
                base_path=str(models_dir / SECOND_MODEL),
                policy=dev_model_settings(SECOND_MODEL).version_policy,
            ),
        )
    models_config = serving_dir / "models.config"
    # Written atomically: the server never reads a half-written models.config.
    write_atomic(models_config, tfconfig.render_models_config([config, *others]).encode())
    (serving_dir / BATCHING_FILE).write_text(tfconfig.render_batching_parameters(model.batching))
    (serving_dir / MONITORING_FILE).write_text(tfconfig.render_monitoring_config())

    placed = [(MODEL, first)] + ([(SECOND_MODEL, second)] if second is not None else [])
    for name, version in placed:
        _sync_once(procs, step, store, name, models_dir, serving_dir)
        if not (models_dir / name / str(version)).is_dir():
            raise StepFailed(step, f"{name} version {version} is not on local disk after sync")
        say(step, f"sync agent placed {name} version {version} in {models_dir / name}")

    rest_url, grpc_target, server = start_stand_in(procs, step, serving_dir)
    # The sidecars, started once the server listens, with its URL as in the cluster's pods.
    sync = _start_sync(procs, store, MODEL, models_dir, serving_dir, rest_url)
    if second is not None:
        _start_sync(procs, store, SECOND_MODEL, models_dir, serving_dir, rest_url)
    serving = Serving(
        rest_url=rest_url,
        grpc_target=grpc_target,
        models_config=models_config,
        model_config=config,
        model_dir=models_dir / MODEL,
        stand_in_log=server.log,
        sync_log=sync.log,
        other_configs=others,
    )
    wait_available(step, serving, first)
    say(step, f"version {first} AVAILABLE (REST {serving.rest_url}, gRPC {serving.grpc_target})")
    if second is not None:
        wait_available(step, serving, second, model=SECOND_MODEL)
        say(step, f"{SECOND_MODEL} version {second} AVAILABLE beside {MODEL}")
    return serving


def start_stand_in(procs: Processes, step: str, serving_dir: Path) -> tuple[str, str, Any]:
    """The stand-in as the pods run TF Serving, on ``serving_dir``'s models.config,
    batching_parameters.txt and monitoring.config: (REST URL, gRPC target, its service)."""
    port_file = serving_dir / "ports.json"
    port_file.unlink(missing_ok=True)
    server = procs.start(
        "server",
        [
            "-m", "devtools.server", "--port=-1", "--rest_api_port=-1", f"--port_file={port_file}",
            f"--model_config_file={serving_dir / 'models.config'}",
            "--model_config_file_poll_wait_seconds=1", "--file_system_poll_wait_seconds=1",
            "--enable_batching", f"--batching_parameters_file={serving_dir / BATCHING_FILE}",
            f"--monitoring_config_file={serving_dir / MONITORING_FILE}",
            "--enable_model_warmup", "--allow_version_labels_for_unavailable_models",
        ],
    )  # fmt: skip

    def ports() -> dict[str, int] | None:
        server.check_alive(step)
        try:
            return json.loads(port_file.read_text())
        except (OSError, ValueError):
            return None

    bound = wait_until(step, "the server's ports", ports, 240, server.log)
    procs.add_ports([bound["rest"], bound["grpc"]])
    return f"http://127.0.0.1:{bound['rest']}", f"127.0.0.1:{bound['grpc']}", server


def wait_available(
    step: str, serving: Serving, version: int, timeout_s: float = 180, model: str = MODEL
) -> None:
    what = f"version {version} AVAILABLE" if model == MODEL else None
    wait_version_available(
        step, serving.rest_url, model, version, serving.stand_in_log, timeout_s, what
    )


def wait_version_available(
    step: str,
    rest_url: str,
    model: str,
    version: int,
    log: Path,
    timeout_s: float = 180,
    what: str | None = None,
) -> None:
    """Until the server reports `model` `version` AVAILABLE, or fail the step."""
    with RestClient(rest_url, timeout=5) as client:

        def available() -> bool:
            try:
                states = {s.version: s.state for s in client.status(model)}
            except ClientError:
                return False
            return states.get(version) == "AVAILABLE"

        what = what or f"{model} version {version} AVAILABLE"
        wait_until(step, what, available, timeout_s, log)


# --- 5. evaluate ------------------------------------------------------------------------------


@functools.cache  # steps 5 and 6 both use them; load and split once
def held_out_digits(options: Options) -> tuple[np.ndarray, np.ndarray]:
    """The held-out test digits of version 1's seeded split: raw 0-255 grey, [N, 28, 28, 1]."""
    recipe, run = _mnist(options, 0)
    split = recipe.split(*recipe.load(), seed=run.seed, limit=run.limit)
    images = np.asarray(split.x_test, dtype=np.float32).reshape(-1, 28, 28, 1)
    return images, np.asarray(split.y_test, dtype=np.int64)


def evaluate(serving: Serving, options: Options) -> None:
    step = "5/8 predict"
    images, labels = held_out_digits(options)
    clients = {
        "REST": RestClient(serving.rest_url, timeout=10),
        "gRPC": grpc_client(serving.grpc_target, timeout=10),
    }
    for api, client in clients.items():
        latencies, correct = [], 0
        with client:
            for image, label in zip(images, labels, strict=True):
                began = time.perf_counter()
                try:
                    prediction = client.predict(MODEL, image[np.newaxis], label="stable")
                except ClientError as exc:
                    raise StepFailed(
                        step, f"{api} predict failed: {exc}", serving.stand_in_log
                    ) from exc
                latencies.append((time.perf_counter() - began) * 1000)
                correct += int(prediction.classes[0] == label)
        say(
            step,
            f"{api}: {len(images)} held-out digits one per request, accuracy "
            f"{correct / len(images):.4f}, {latency_summary(np.asarray(latencies))}",
        )


def evaluate_second(serving: Serving, export: Export) -> None:
    """The diabetes model's held-out patients through the generic client, REST and gRPC."""
    from serving.client import fetch_predict_signature, predict_with_signature

    step = "5/8 predict"
    recipe = Diabetes()
    split = recipe.split(*recipe.load(), seed=RunArgs.seed)
    x_test, y_test = split.x_test, split.y_test
    clients = {
        "REST": RestClient(serving.rest_url, timeout=10),
        "gRPC": grpc_client(serving.grpc_target, timeout=10),
    }
    # With batching on, TF Serving refuses a request larger than max_batch_size: send batches.
    batch = dev_model_settings(SECOND_MODEL).batching.max_batch_size
    for api, client in clients.items():
        began, predicted = time.perf_counter(), []
        with client:
            try:
                # Named inputs, checked against the signature the server reports (asked once).
                signature = fetch_predict_signature(client, SECOND_MODEL)
                for start in range(0, len(y_test), batch):
                    rows = recipe.inputs(x_test[start : start + batch])
                    outputs = predict_with_signature(
                        client, SECOND_MODEL, rows, signature=signature
                    )
                    predicted.append(np.asarray(outputs["progression"]))
            except ClientError as exc:
                raise StepFailed(
                    step, f"{api} {SECOND_MODEL} predict failed: {exc}", serving.stand_in_log
                ) from exc
        elapsed = (time.perf_counter() - began) * 1000
        mae = float(np.mean(np.abs(np.concatenate(predicted) - y_test)))
        say(
            step,
            f"{api}: {SECOND_MODEL}, {len(y_test)} held-out patients in requests of up to "
            f"{batch} ({elapsed:.0f} ms, metadata calls included), MAE {mae:.2f} (training "
            f"report {export.metric:.2f})",
        )
        if abs(mae - export.metric) > 0.05:
            raise StepFailed(
                step,
                f"{api}: the served {SECOND_MODEL} model's MAE {mae:.2f} differs from the "
                f"trained one's {export.metric:.2f}",
                serving.stand_in_log,
            )


# --- 6. hot swap ------------------------------------------------------------------------------


@contextmanager
def steady_load(
    step: str, make_call: Any, concurrency: int, latencies: list[float], log: Path
) -> Iterator[None]:
    """Requests from `concurrency` workers (`make_call(index)` makes each worker's call) for as
    long as the block runs; then the figures, and StepFailed naming the failures if any request
    failed. `latencies` is what the calls appended (ms)."""
    from devtools.bench.load import run_load

    stop = threading.Event()
    results = []
    loader = threading.Thread(
        target=lambda: results.append(
            run_load(make_call, concurrency=concurrency, duration_s=3600, stop_event=stop)
        ),
        name="local-run-load",
    )
    loader.start()
    try:
        yield
    finally:
        stop.set()
        loader.join()
    load = results[0]
    answered = ", ".join(f"{tag}: {n}" for tag, n in sorted(load.tags.items()))
    say(
        step,
        f"{load.succeeded} requests answered ({answered}), {load.failures} failed, "
        f"{load.requests_per_s:.0f} req/s, {latency_summary(np.asarray(latencies))}",
    )
    if load.failures:
        raise StepFailed(
            step, f"{load.failures} requests failed during the swap: {load.failure_examples}", log
        )


def hot_swap(
    procs: Processes,
    serving: Serving,
    store: Store,
    exports: tuple[Export, Export],
    options: Options,
) -> None:
    step = "6/8 hot swap"
    old, new = exports[0].version, exports[1].version
    images, _ = held_out_digits(options)
    latencies: list[float] = []  # appended from every worker: list.append is atomic

    def make_call(index: int):
        client = (
            grpc_client(serving.grpc_target, timeout=10)
            if index % 2 == 0
            else RestClient(serving.rest_url, timeout=10)
        )
        api = "gRPC" if index % 2 == 0 else "REST"
        position = [index]

        def call() -> str:
            i = position[0] % len(images)
            position[0] += 1
            # Think time keeps the load steady rather than saturating both cores, so the publish
            # and sync being demonstrated are not starved of CPU.
            time.sleep(LOAD_THINK_TIME_S)
            began = time.perf_counter()
            version = client.predict(MODEL, images[i : i + 1]).model_version
            latencies.append((time.perf_counter() - began) * 1000)
            # gRPC answers name the version that served them (REST predict answers do not).
            return f"gRPC version {version}" if api == "gRPC" else "REST"

        return call

    with steady_load(step, make_call, options.concurrency, latencies, serving.stand_in_log):
        say(
            step,
            f"steady load: {options.concurrency} workers (half gRPC, half REST), each pausing "
            f"{LOAD_THINK_TIME_S * 1000:.0f} ms between requests",
        )
        time.sleep(options.load_seconds)
        began = time.monotonic()
        _publish(procs, step, store, exports[1])
        published = time.monotonic()
        say(step, f"published version {new} ({published - began:.1f} s)")
        wait_until(
            step,
            f"version {new} on local disk",
            lambda: (serving.model_dir / str(new)).is_dir(),
            120,
            serving.sync_log,
        )
        on_disk = time.monotonic()
        wait_available(step, serving, new)
        available = time.monotonic()
        say(
            step,
            f"version {new} on local disk {on_disk - published:.1f} s and AVAILABLE "
            f"{available - published:.1f} s after publish returned (sync polls S3 every 1 s)",
        )
        moved = replace(serving.model_config, labels={"stable": old, "canary": new})
        configs = [moved, *serving.other_configs]  # the other models stay served as they were
        write_atomic(serving.models_config, tfconfig.render_models_config(configs).encode())
        # gRPC answers name the version that served them (REST predict answers do not).
        with grpc_client(serving.grpc_target, timeout=5) as client:

            def canary_moved() -> bool:
                try:
                    return client.predict(MODEL, images[:1], label="canary").model_version == new
                except ClientError:
                    return False

            wait_until(step, "the canary label to move", canary_moved, 60, serving.stand_in_log)
        say(step, f"label canary -> version {new}, stable stays on version {old}")
        time.sleep(options.load_seconds)
    with RestClient(serving.rest_url, timeout=5) as client:
        states = ", ".join(f"{s.version}: {s.state}" for s in client.status(MODEL))
    say(step, f"model status: {states}")


# --- 7. synth ---------------------------------------------------------------------------------


def synth(procs: Processes, options: Options) -> Path:
    step = "7/8 synth"
    out = options.workdir / "synth" / STACK
    say(step, f"python -m infra.synth --stack {STACK} (offline plan, policies, schema checks)")
    procs.run(
        step,
        "synth",
        ["-m", "infra.synth", "--stack", STACK, "--out", str(out)],
        timeout_s=600,
    )
    summary = (out / "summary.md").read_text()
    # The head of the pull-request comment: verdict, counts, violations, schema errors.
    head = summary.split("<details>", 1)[0]
    print("\n".join(line for line in head.splitlines() if not line.startswith("<!--")).strip())
    say(step, f"full plan: {out / 'summary.md'}, {out / 'resources.json'}, {out / 'manifests'}")
    return out
