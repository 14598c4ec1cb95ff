"""The local run on your own models: ``scripts/local-run --export DIR/<name>`` (repeatable).

The steps of `devtools.local_run` with the user's export directories in place of the recipes,
nothing trained and nothing written into those directories:

2. exports: each DIR/<name> holds integer version directories; the newest is the one hot-swapped
   in, the one before it is served first (with a single version, a copy of it under the run's
   work directory, one version up, stands in for the second). Each model gets a dev-stack entry:
   the settings of the dev stack's CPU model with memory and disk sized from the export,
   validated as `pulumi up` would validate them, before anything starts;
3. a loopback S3 store, `python -m model publish` of each first version;
4. one sync agent per model and the stand-in, from one models.config with the entries' policies,
   labels ``stable`` and ``canary`` on the first version, and their batching;
5. over REST and gRPC: the signature from the server's metadata, inputs generated from it
   (`serving.client.sample_inputs`), a predict per model, its outputs' names, shapes and dtypes;
6. steady load on every model while each second version is published, synced, loaded and the
   ``canary`` label moved to it; a failed request fails the run;
7. `python -m devtools.local_synth`: the dev stack's plan with the models added, and the entry to
   paste into Pulumi.dev.yaml.
"""

from __future__ import annotations

import copy
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from contracts import tfconfig
from contracts.rules import RuleError, parse_version_dir, validate_model_name
from devtools.local_steps import (
    BATCHING_FILE,
    LOAD_THINK_TIME_S,
    MONITORING_FILE,
    STACK,
    STORE_URI,
    Options,
    Store,
    _start_sync,
    _sync_once,
    say,
    start_stand_in,
    steady_load,
    wait_version_available,
)
from devtools.processes import REPO, Processes, StepFailed, wait_until
from serving.client import ClientError, RestClient, ServerError
from serving.sync.local import write_atomic

STACK_FILES = ("Pulumi.yaml", f"Pulumi.{STACK}.yaml", f"policies/config.{STACK}.json")
MODELS_KEY = "tfserving-eks:models"
# A loaded SavedModel takes more memory than its files (graph, kernels, buffers): a first guess
# to measure and adjust, never less than the smallest model of the dev stack declares.
MEMORY_PER_DISK, MIN_MEMORY_MIB = 3, 128
SAMPLE_ROWS = 2


@dataclass(frozen=True)
class UserModel:
    name: str
    source: Path  # the user's model directory
    first: int
    second: int
    second_dir: Path  # the user's newest version, or the copy standing in for it
    entry: dict[str, Any]  # the dev stack's entry for it (Pulumi.dev.yaml form)
    settings: Any  # the entry as infra.settings.ModelSettings, validated

    @property
    def copied(self) -> bool:
        return not self.second_dir.is_relative_to(self.source)


def check_export_dirs(paths: list[Path]) -> list[Path]:
    """The model directories, or ValueError naming what is wrong (before anything runs)."""
    seen: dict[str, Path] = {}
    for given in paths:
        path = given.expanduser().resolve()
        if not path.is_dir():
            raise ValueError(f"--export {given}: no such directory")
        if (path / "saved_model.pb").is_file():
            raise ValueError(
                f"--export {given} is a version directory: give the model directory above it, "
                f"{path.parent} (DIR/<name>, holding the versions)"
            )
        try:
            validate_model_name(path.name)
        except RuleError as exc:
            raise ValueError(
                f"--export {given}: the local run publishes the model to a store and adds it to "
                f"the {STACK} stack, so {exc}. Copy or rename the directory"
            ) from None
        _versions(path, given)
        if path.name in seen:
            raise ValueError(f"--export {given}: a second model named {path.name!r}")
        seen[path.name] = path
    return list(seen.values())


def _versions(path: Path, given: Path | None = None) -> list[int]:
    digits = [c.name for c in path.iterdir() if c.is_dir() and c.name.isdigit()]
    bad = [d for d in digits if parse_version_dir(d) is None]
    if bad:
        raise ValueError(
            f"--export {given or path}: version directory {bad[0]} is not one the store takes "
            "(1 ... 2^63-1 without leading zeros): rename it"
        )
    if not digits:
        raise ValueError(
            f"--export {given or path} holds no version directory (1/, 2/, ...): TF Serving "
            "loads <model dir>/<version>/"
        )
    return sorted(int(d) for d in digits)


def _size_mib(directory: Path) -> float:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file()) / 2**20


def _stack_config() -> dict[str, Any]:
    from infra.capture import stack_config

    return stack_config(STACK)


def stack_entry(config: dict[str, Any], version_dir: Path) -> dict[str, Any]:
    """The dev stack's CPU model's entry, with memory and disk sized from `version_dir`."""
    cpu = [e for e in config[MODELS_KEY].values() if e.get("nodePool", "system") == "system"]
    if not cpu:
        raise StepFailed("2/8 exports", f"the {STACK} stack has no CPU model to copy settings from")
    entry = copy.deepcopy(cpu[0])
    disk = _size_mib(version_dir)
    entry.update(
        labels={},
        modelDiskMiB=max(1, math.ceil(disk * 1.25)),
        modelMemoryMiB=max(MIN_MEMORY_MIB, math.ceil(disk * MEMORY_PER_DISK)),
    )
    return entry


def prepare(options: Options, dirs: list[Path]) -> list[UserModel]:
    """Step 2: versions, the stand-in second version where needed, validated stack entries."""
    from infra.settings import InvalidSettingsError, settings_from_config

    step = "2/8 exports"
    config = _stack_config()
    chosen = []
    for path in dirs:
        versions = _versions(path)
        first = versions[-2] if len(versions) > 1 else versions[-1]
        second, second_dir = versions[-1], path / str(versions[-1])
        if len(versions) == 1:
            second = first + 1
            second_dir = options.workdir / "exports" / path.name / str(second)
            shutil.rmtree(second_dir, ignore_errors=True)
            shutil.copytree(path / str(first), second_dir)
        chosen.append((path, first, second, second_dir))
    config[MODELS_KEY] = dict(config[MODELS_KEY])
    for path, _, _, second_dir in chosen:
        config[MODELS_KEY][path.name] = stack_entry(config, second_dir)
    try:
        settings = settings_from_config(STACK, config)
    except InvalidSettingsError as exc:
        message = f"the {STACK} stack with the models added is invalid: {exc}"
        raise StepFailed(step, message) from None
    models = []
    for path, first, second, second_dir in chosen:
        (declared,) = [m for m in settings.models if m.name == path.name]
        model = UserModel(
            path.name, path, first, second, second_dir, config[MODELS_KEY][path.name], declared
        )
        how = (
            f"version {second} is a copy of {first} under {second_dir.parent} (the export has "
            "one version; the swap works the same)"
            if model.copied
            else f"then version {second}"
        )
        say(step, f"{model.name}: version {first} served first, {how}")
        models.append(model)
    return models


def _publish(procs: Processes, step: str, store: Store, name: str, version_dir: Path) -> None:
    command = ["-m", "model", "publish", "--export", str(version_dir), "--store", STORE_URI]
    command += ["--endpoint-url", store.endpoint]
    procs.run(step, f"publish-{name}-{version_dir.name}", command, timeout_s=300)


def publish_first(procs: Processes, store: Store, models: list[UserModel]) -> None:
    for model in models:
        _publish(procs, "3/8 store", store, model.name, model.source / str(model.first))
        where = f"{STORE_URI}/{model.name}/"
        say("3/8 store", f"published {model.name} version {model.first} to {where}")


@dataclass(frozen=True)
class Served:
    rest_url: str
    grpc_target: str
    models_dir: Path
    models_config: Path
    log: Path
    sync_logs: dict[str, Path]


def _configs(models: list[UserModel], models_dir: Path, canary: dict[str, int]) -> bytes:
    configs = []
    for model in models:
        config = model.settings.model_config(str(models_dir))
        labels = {"stable": model.first, "canary": canary[model.name]}
        configs.append(
            tfconfig.ModelConfig(config.name, config.base_path, policy=config.policy, labels=labels)
        )
    return tfconfig.render_models_config(configs).encode()


def start_serving(
    procs: Processes, options: Options, store: Store, models: list[UserModel]
) -> Served:
    step = "4/8 serve"
    serving_dir = options.workdir / "serving"
    shutil.rmtree(serving_dir, ignore_errors=True)
    models_dir = serving_dir / "models"
    models_dir.mkdir(parents=True)
    models_config = serving_dir / "models.config"
    write_atomic(models_config, _configs(models, models_dir, {m.name: m.first for m in models}))
    batching = models[0].settings.batching
    (serving_dir / BATCHING_FILE).write_text(tfconfig.render_batching_parameters(batching))
    (serving_dir / MONITORING_FILE).write_text(tfconfig.render_monitoring_config())
    # As in the cluster's pods: the init container places the first versions, the server
    # starts, then each sidecar runs with the server's URL (it retires a version only once its
    # successor is AVAILABLE there).
    for model in models:
        _sync_once(procs, step, store, model.name, models_dir, serving_dir)
        if not (models_dir / model.name / str(model.first)).is_dir():
            raise StepFailed(step, f"{model.name} version {model.first} is not on disk after sync")
        say(step, f"sync agent placed {model.name} version {model.first} in {models_dir}")
    rest_url, grpc_target, server = start_stand_in(procs, step, serving_dir)
    sync_logs = {
        model.name: _start_sync(procs, store, model.name, models_dir, serving_dir, rest_url).log
        for model in models
    }
    for model in models:
        wait_version_available(step, rest_url, model.name, model.first, server.log)
        say(step, f"{model.name} version {model.first} AVAILABLE (REST {rest_url}, gRPC "
            f"{grpc_target})")  # fmt: skip
    return Served(rest_url, grpc_target, models_dir, models_config, server.log, sync_logs)


def _clients(served: Served) -> dict[str, Any]:
    from serving.client.grpc_client import GrpcClient  # no TensorFlow: protobuf and grpcio only

    return {
        "REST": RestClient(served.rest_url, timeout=30),
        "gRPC": GrpcClient(served.grpc_target, timeout=30),
    }


def _request(client: Any, model: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The model's serving signature (from the server) and sample inputs built from it."""
    from serving.client import fetch_predict_signature
    from serving.client.sample_inputs import sample_inputs

    signature = fetch_predict_signature(client, model)
    return signature, sample_inputs(signature, SAMPLE_ROWS)


def _describe(arrays: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} {list(np.shape(v))} {np.asarray(v).dtype}" for k, v in sorted(arrays.items())
    )


def predict(served: Served, models: list[UserModel]) -> None:
    """Step 5: every model over REST and gRPC, with inputs generated from its signature."""
    from serving.client import predict_with_signature
    from serving.client.signature import shape_notes

    step = "5/8 predict"
    for api, client in _clients(served).items():
        with client:
            for model in models:
                began = time.perf_counter()
                try:
                    signature, inputs = _request(client, model.name)
                except (ClientError, ValueError) as exc:
                    raise StepFailed(step, f"{api} {model.name}: {exc}", served.log) from exc
                try:
                    outputs = predict_with_signature(
                        client, model.name, inputs, signature=signature, label="stable"
                    )
                except ServerError as exc:
                    notes = "; ".join(shape_notes(inputs, signature))
                    raise StepFailed(
                        step,
                        f"{api} predict of {model.name} with inputs generated from its signature "
                        f"({_describe(inputs)}) failed: {exc}" + (f" ({notes})" if notes else ""),
                        served.log,
                    ) from exc
                except ClientError as exc:
                    raise StepFailed(step, f"{api} {model.name}: {exc}", served.log) from exc
                elapsed = (time.perf_counter() - began) * 1000
                say(
                    step,
                    f"{api}: {model.name} version {model.first} (label stable): "
                    f"{_describe(inputs)} -> {_describe(outputs)} ({elapsed:.0f} ms, "
                    "metadata call included)",
                )


def hot_swap(
    procs: Processes, served: Served, store: Store, models: list[UserModel], options: Options
) -> None:
    """Step 6: each second version published under steady load, loaded, the canary moved."""
    from serving.client import predict_with_signature

    step = "6/8 hot swap"
    latencies: list[float] = []
    requests = {}
    with RestClient(served.rest_url, timeout=30) as client:
        for model in models:
            requests[model.name] = _request(client, model.name)

    def make_call(index: int):
        api = "gRPC" if index % 2 == 0 else "REST"
        client = _clients(served)[api]
        position = [index]

        def call() -> str:
            model = models[position[0] % len(models)].name
            position[0] += 1
            time.sleep(LOAD_THINK_TIME_S)  # steady load, leaving CPU to the publish and sync
            signature, inputs = requests[model]
            began = time.perf_counter()
            predict_with_signature(client, model, inputs, signature=signature)
            latencies.append((time.perf_counter() - began) * 1000)
            return f"{api} {model}"

        return call

    with steady_load(step, make_call, options.concurrency, latencies, served.log):
        say(step, f"steady load on {len(models)} model(s): {options.concurrency} workers, half "
            "gRPC, half REST")  # fmt: skip
        time.sleep(options.load_seconds)
        for model in models:
            began = time.monotonic()
            _publish(procs, step, store, model.name, model.second_dir)
            target = served.models_dir / model.name / str(model.second)
            wait_until(step, f"{model.name} version {model.second} on disk", target.is_dir, 120,
                       served.sync_logs[model.name])  # fmt: skip
            wait_version_available(step, served.rest_url, model.name, model.second, served.log)
            say(step, f"{model.name} version {model.second} published and AVAILABLE "
                f"{time.monotonic() - began:.1f} s after publish started")  # fmt: skip
        canary = {m.name: m.second for m in models}
        write_atomic(served.models_config, _configs(models, served.models_dir, canary))
        with RestClient(served.rest_url, timeout=5) as client:
            for model in models:

                def moved(model: UserModel = model) -> bool:
                    try:  # a label's metadata names the version it points at
                        answer = client.metadata(model.name, label="canary")
                    except ClientError:
                        return False
                    return str(answer["model_spec"]["version"]) == str(model.second)

                wait_until(step, f"{model.name}'s canary label to move", moved, 60, served.log)
                say(step, f"{model.name}: label canary -> version {model.second}, stable stays "
                    f"on version {model.first}")  # fmt: skip
        time.sleep(options.load_seconds)


def synth(procs: Processes, options: Options, models: list[UserModel]) -> Path:
    """Step 7: the dev stack's plan with the models added (a copy of its files), and the entry
    to add to Pulumi.dev.yaml."""
    step = "7/8 synth"
    project = options.workdir / "synth-project"
    shutil.rmtree(project, ignore_errors=True)
    for name in STACK_FILES:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / name, project / name)
    stack_file = project / f"Pulumi.{STACK}.yaml"
    document = yaml.safe_load(stack_file.read_text())
    entries = {m.name: m.entry for m in models}
    document["config"][MODELS_KEY] = {**document["config"].get(MODELS_KEY, {}), **entries}
    stack_file.write_text(yaml.safe_dump(document, sort_keys=False))
    out = options.workdir / "synth" / STACK
    say(step, f"the {STACK} stack with {', '.join(entries)} added: offline plan, policies, schemas")
    command = ["-m", "devtools.local_synth", "--stack", STACK, "--root", str(project)]
    log = procs.run(step, "synth", [*command, "--out", str(out)], timeout_s=600)
    print(log.read_text().strip())
    block = yaml.safe_dump(entries, sort_keys=False, default_flow_style=None, width=1000)
    say(step, f"to serve them in the {STACK} stack, add under `{MODELS_KEY}:` in Pulumi.{STACK}"
        ".yaml (memory is a first guess from the export's size: measure and adjust):")  # fmt: skip
    print("\n".join(f"    {line}" for line in block.splitlines()))
    return out
