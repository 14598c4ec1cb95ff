"""``python -m devtools.scaling_proof``: the query a model's ScaledObject carries, answered by a
real Prometheus scraping the local server under a stepped load, and the replica counts the HPA
gives from those answers (docs/autoscaling.md, "Shown offline").

What it does, all on 127.0.0.1, in about a minute:

1. exports a model whose every request holds the server `devtools.canary_demo.SLOW_MS` (a
   graph-level sleep: it takes no CPU, so the figures do not depend on the machine's load) and
   publishes it to a loopback S3 store with the publisher's own commit
   (`model.publish.commit_version`);
2. starts the local server (``python -m devtools.server``) on an empty model directory (first:
   it imports TensorFlow meanwhile) and the real sync agent beside it, which brings the version
   in and reports ``tfserving_sync_versions_served`` as in a serving pod;
3. starts a real Prometheus scraping both every `SCRAPE_S`, labelling the series the way the
   managed scraper does in the cluster (``namespace``, ``pod``, ``track``;
   monitoring/scrape/eks.yml);
4. builds the model's ScaledObject with `infra.components.scaling` (the functions the stacks
   use) for ``scaling: {signal: inFlight, target: TARGET}`` and windows scaled down to this run,
   the rate window four scrape intervals as in the cluster (`infra.scaling_query.rate_window`);
5. drives the benchmark's closed-loop load (`devtools.bench.load.run_load`) in steps of
   concurrency, and every `PERIOD_S` (the HPA's sync period, scaled) asks Prometheus the
   ScaledObject's query, exactly as written there, and feeds the answer to `devtools.hpa` (the
   HPA's formula, tolerance, windows and rate policies);
6. prints each evaluation: time, load step, the query's answer, the HPA's raw recommendation and
   the replica count.

Time is compressed about 30 times (the cluster scrapes every 30 s and the HPA syncs every 15 s):
the query differs from the stack's only in its rate window. Exit 0 when the replicas rose with
the load and fell back within the scale-down window, 1 otherwise, 2 when something could not
start (the message names the log to read).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from contracts import tfconfig
from contracts.store import StoreLocation, VersionManifest, scan_export
from devtools.bench.load import run_load
from devtools.hpa import Decision, HpaSimulator, HpaSpec
from devtools.local_prometheus import LocalPrometheus, PrometheusError, ScrapeTarget
from devtools.processes import (
    LOCAL_AWS_ENV,
    Processes,
    StepFailed,
    free_port,
    port_open,
    start_local_s3,
    wait_until,
)
from infra.components import scaling
from infra.scaling_query import rate_window, scaling_query
from infra.settings.models import STABLE
from infra.settings.scaling import IN_FLIGHT, Scaling

STEP = "scaling proof"
MODEL, VERSION, BUCKET = "paced", 1, "scaling-proof"
STORE = f"s3://{BUCKET}/models"
SCRAPE_S, PERIOD_S = 0.5, 0.5
TARGET = 2  # in-flight requests per pod
SCALE_UP_WINDOW_S, SCALE_DOWN_WINDOW_S = 0, 6
MAX_REPLICAS = 8
# (concurrency, seconds): a rising load, then none.
STEPS: tuple[tuple[int, float], ...] = ((1, 4.5), (4, 4.5), (8, 4.5), (0, 12.0))


@dataclass(frozen=True)
class Evaluation:
    """One HPA evaluation during the run."""

    at_s: float
    concurrency: int
    answer: float | None  # what the query returned (None: no series yet)
    decision: Decision


@dataclass(frozen=True)
class Step:
    """One load step as it ran: its concurrency and when it began and ended (seconds into the
    run; a step lasts its planned time plus what the load generator needs to start its workers
    and let the last requests finish)."""

    concurrency: int
    began_s: float
    ended_s: float


@dataclass(frozen=True)
class Proof:
    query: str
    spec: dict[str, Any]
    evaluations: tuple[Evaluation, ...]
    steps: tuple[Step, ...]

    @property
    def load_end_s(self) -> float:
        """When the last request of the last loaded step ended."""
        return max(s.ended_s for s in self.steps if s.concurrency)

    def table(self) -> str:
        lines = ["   t s | load (concurrency) | query answer | HPA recommends | replicas"]
        for e in self.evaluations:
            answer = "-" if e.answer is None else f"{e.answer:.2f}"
            lines.append(
                f"{e.at_s:6.1f} | {e.concurrency:18d} | {answer:>12} | "
                f"{e.decision.recommended:14d} | {e.decision.replicas:8d}"
            )
        return "\n".join(lines)


def scaled_object(prometheus_url: str, window: str) -> dict[str, Any]:
    """The ScaledObject spec the stacks would declare for this model, here pointed at the local
    Prometheus (no SigV4: no region, no authentication)."""
    model_scaling = Scaling(
        signal=IN_FLIGHT,
        target=TARGET,
        scale_up_stabilization_seconds=SCALE_UP_WINDOW_S,
        scale_down_stabilization_seconds=SCALE_DOWN_WINDOW_S,
    )
    query = scaling_query(IN_FLIGHT, MODEL, MODEL, STABLE, window)
    trigger = scaling.prometheus_trigger(IN_FLIGHT, TARGET, query, prometheus_url, None, None)
    return scaling.scaled_object_spec(MODEL, (1, MAX_REPLICAS), model_scaling, [trigger], 0)


def export_model(root: Path) -> Path:
    from devtools.canary_demo import export_model as export_paced

    version_dir = root / MODEL / str(VERSION)
    export_paced(version_dir, 2.0, slow_at=0.0)  # inputs are >= 0: every request waits
    return version_dir


def publish(endpoint: str, version_dir: Path) -> None:
    """The version, committed with the publisher's own protocol (no TensorFlow validation: the
    export was just made)."""
    import boto3

    from model.publish import commit_version, s3_errors

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=LOCAL_AWS_ENV["AWS_DEFAULT_REGION"],
        aws_access_key_id=LOCAL_AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    )
    location = StoreLocation.parse(STORE)
    manifest = VersionManifest(
        model=MODEL,
        version=VERSION,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        files=scan_export(version_dir),
    )
    commit_version(
        s3, location, manifest, version_dir, False, io.StringIO(),
        lambda action: s3_errors(location, action, endpoint),
    )  # fmt: skip


def start_server(processes: Processes, workdir: Path) -> tuple[Any, Path, Path]:
    """The local server on an empty model directory (it polls it for versions); returns the
    process, the models.config and the file its ports will be written to."""
    models = workdir / "models"
    (models / MODEL).mkdir(parents=True)
    config = workdir / "models.config"
    config.write_text(
        tfconfig.render_models_config(
            [
                tfconfig.ModelConfig(
                    name=MODEL,
                    base_path=str(models / MODEL),
                    policy=tfconfig.VersionPolicy.latest(1),
                )
            ]
        )
    )
    monitoring = workdir / "monitoring.config"
    monitoring.write_text(tfconfig.render_monitoring_config())
    port_file = workdir / "ports.json"
    server = processes.start(
        "server",
        [
            *("-m", "devtools.server", "--host=127.0.0.1", "--port=-1", "--rest_api_port=-1"),
            f"--port_file={port_file}",
            f"--model_config_file={config}",
            f"--monitoring_config_file={monitoring}",
        ],
    )
    return server, config, port_file


def start_sync(
    processes: Processes, server: Any, config: Path, port_file: Path, endpoint: str
) -> tuple[int, int]:
    """The sync agent beside the server, once it listens; returns the server's REST port and the
    agent's metrics port once the agent has brought the version in and TF Serving serves it."""

    def ports() -> dict | None:
        server.check_alive(STEP)
        return json.loads(port_file.read_text()) if port_file.exists() else None

    rest = int(wait_until(STEP, "the local server", ports, 90, server.log)["rest"])
    processes.add_ports([rest])
    metrics = free_port()
    models = config.parent / "models"
    agent = processes.start(
        "sync",
        [
            *("-m", "serving.sync", "--source", STORE, "--dest", str(models), "--model", MODEL),
            *("--endpoint-url", endpoint, "--model-config-file", str(config)),
            *("--interval", "2", "--metrics-port", str(metrics), "--health-port", "0"),
            *("--health-host", "127.0.0.1", "--tfserving-url", f"http://127.0.0.1:{rest}"),
        ],
        [metrics],
    )

    def served() -> bool:
        agent.check_alive(STEP)
        server.check_alive(STEP)
        try:
            status = httpx.get(f"http://127.0.0.1:{rest}/v1/models/{MODEL}", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return False
        states = [v.get("state") for v in status.get("model_version_status", [])]
        return "AVAILABLE" in states and port_open(metrics)

    wait_until(STEP, f"{MODEL} served (synced by the agent)", served, 90, agent.log)
    return rest, metrics


def _ask(url: str, query: str) -> float | None:
    result = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=5).json()
    found = result.get("data", {}).get("result", [])
    return float(found[0]["value"][1]) if found else None


def drive(
    prometheus_url: str, rest: int, spec: dict[str, Any], steps: Sequence[tuple[int, float]]
) -> tuple[list[Evaluation], list[Step]]:
    """The stepped load in a thread; every PERIOD_S the query is asked and the HPA steps."""
    query = spec["triggers"][0]["metadata"]["query"]
    url = f"http://127.0.0.1:{rest}/v1/models/{MODEL}:predict"
    current = {"concurrency": steps[0][0]}

    def make_call(_: int):
        client = httpx.Client(timeout=30)
        return lambda: client.post(url, json={"instances": [0.5]}).raise_for_status()

    ran: list[Step] = []

    def load() -> None:
        for concurrency, seconds in steps:
            current["concurrency"] = concurrency
            began = time.monotonic() - start
            if concurrency:
                run_load(make_call, concurrency=concurrency, duration_s=seconds)
            else:
                time.sleep(seconds)
            ran.append(Step(concurrency, began, time.monotonic() - start))

    hpa = HpaSimulator(HpaSpec.from_scaled_object(spec), replicas=spec["minReplicaCount"])
    worker = threading.Thread(target=load, daemon=True)
    start = time.monotonic()
    worker.start()
    evaluations = []
    while worker.is_alive():
        now = time.monotonic() - start
        answer = _ask(prometheus_url, query)
        # The query answers per serving pod; here one pod served all of it.
        decision = hpa.step(now, answer or 0.0)
        evaluations.append(Evaluation(now, current["concurrency"], answer, decision))
        time.sleep(max(0.0, PERIOD_S - (time.monotonic() - start - now)))
    return evaluations, ran


def run(workdir: Path, steps: Sequence[tuple[int, float]] = STEPS) -> Proof:
    with Processes(workdir / "logs") as processes:
        # The server imports TensorFlow while this process exports and publishes the model.
        server, config, port_file = start_server(processes, workdir / "serve")
        endpoint = start_local_s3(processes, STEP, BUCKET)
        publish(endpoint, export_model(workdir / "exports"))
        rest, metrics = start_sync(processes, server, config, port_file, endpoint)
        labels = {"namespace": MODEL, "pod": f"{MODEL}-local", "track": STABLE}
        targets = [
            ScrapeTarget(
                "tfserving", f"127.0.0.1:{rest}", tfconfig.DEFAULT_PROMETHEUS_PATH, labels
            ),
            ScrapeTarget("model-sync", f"127.0.0.1:{metrics}", "/metrics", labels),
        ]
        with LocalPrometheus(workdir / "prometheus", targets, SCRAPE_S, rule_files=()) as prom:
            prom.wait_for_samples("up == 1", 2, timeout_s=15)
            prom.wait_for_samples("tfserving_sync_versions_served > 0", 1, timeout_s=15)
            spec = scaled_object(prom.url, rate_window(SCRAPE_S))
            evaluations, ran = drive(prom.url, rest, spec, steps)
    query = spec["triggers"][0]["metadata"]["query"]
    return Proof(query, spec, tuple(evaluations), tuple(ran))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.scaling_proof", description=__doc__)
    parser.add_argument("--workdir", type=Path, help="keep the export, configs and logs here")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported
    with tempfile.TemporaryDirectory(prefix="scaling-proof-") as tmp:
        try:
            proof = run(args.workdir or Path(tmp))
        except (StepFailed, PrometheusError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    print(f"query: {proof.query}\n")
    print(proof.table())
    peak = max(e.decision.replicas for e in proof.evaluations)
    last = proof.evaluations[-1].decision.replicas
    print(f"\nreplicas: {proof.spec['minReplicaCount']} -> {peak} under load -> {last} after it")
    return 0 if peak > proof.spec["minReplicaCount"] and last < peak else 1


if __name__ == "__main__":
    sys.exit(main())
