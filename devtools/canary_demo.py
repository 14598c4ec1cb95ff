"""``python -m devtools.canary_demo``: the canary gate against a real Prometheus, both outcomes.

What it does, all on 127.0.0.1:

1. exports three tiny SavedModels with two versions each (``y = 0.5 x + b``, input ``x`` float):
   ``steady`` v2 is as healthy as v1; ``flaky`` v2 has a defect that fails a share of requests
   (a ``tf.debugging.assert_less`` on the input: TF Serving answers INVALID_ARGUMENT);
   ``sluggish`` v2 answers correctly but slows the same share down (a graph-level sleep of
   `SLOW_MS` on those inputs: slow without taking CPU from the other models of the process);
2. starts two stand-in servers (``python -m devtools.server``) configured as the cluster's two
   tracks (infra/components/model_serving.py): both load versions 1 and 2; on the stable track the
   ``stable`` label names version 1, on the canary track it names version 2 (``canary`` names 2 on
   both); TF Serving's monitoring config enabled;
3. starts a real Prometheus (`devtools.local_prometheus`) scraping both with a ``track`` label and
   loading ``monitoring/rules/*.yml``;
4. sends ``labels/stable`` predict requests (the clients' default) for a few seconds, each to the
   canary track with the canary share's probability (as the Service spreads requests over the
   pods of both tracks), inputs uniform in [0, 1);
5. runs the SLO gate (`ops.canary`) for each model and prints its JSON: ``steady`` is promoted,
   ``flaky`` (errors) and ``sluggish`` (p99 latency) rolled back.

Exit 0 when every decision is the expected one, 1 otherwise (the figures say why), 2 when
something could not start (the message names the log to read).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from contracts import tfconfig
from devtools import canary_store
from devtools.local_prometheus import LocalPrometheus, PrometheusError, ScrapeTarget
from devtools.processes import Processes, StepFailed, wait_until
from ops import canary

MODELS = ("steady", "flaky", "sluggish")
EXPECTED = {"steady": "promote", "flaky": "rollback", "sluggish": "rollback"}
# How long sluggish v2 holds a slowed request.
SLOW_MS = 80
STABLE_VERSION, CANARY_VERSION = 1, 2


def export_model(
    path: Path, offset: float, fail_at: float | None = None, slow_at: float | None = None
) -> None:
    """A ``half_plus``-style SavedModel. The canary defects: with `fail_at`, inputs >= it fail;
    with `slow_at`, requests with an input >= it wait `SLOW_MS` first."""
    # Through model.tf_runtime: this is the demo's first device use, and the CPU-only cuInit
    # line must be dropped here as in every other command (model/tf_quiet.py).
    from model.tf_runtime import tensorflow

    tf = tensorflow()

    # TensorFlow's own tf.data test transformation (a SleepDataset op): a sleep inside the graph.
    from tensorflow.python.data.experimental.ops import testing

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            if fail_at is not None:
                tf.debugging.assert_less(x, tf.constant(fail_at), message="canary defect")
            y = 0.5 * x + offset
            if slow_at is not None:
                wait_us = tf.where(
                    tf.reduce_max(x) >= slow_at,
                    tf.constant(SLOW_MS * 1000, tf.int64),
                    tf.constant(0, tf.int64),
                )
                slept = tf.data.Dataset.from_tensors(0.0).apply(testing.sleep(wait_us))
                # Adds 0, but makes the answer depend on the sleep so it is never pruned.
                y = y + slept.reduce(tf.constant(0.0), lambda total, item: total + item)
            return {"y": y}

    model = Model()
    tf.saved_model.save(model, str(path), signatures={"serving_default": model.serve})


def export_models(root: Path, fail_share: float) -> None:
    """``root/<model>/<version>`` for every model and both versions."""
    for name in MODELS:
        export_model(root / name / str(STABLE_VERSION), 2.0)
        at = 1.0 - fail_share
        export_model(
            root / name / str(CANARY_VERSION),
            2.5,
            fail_at=at if name == "flaky" else None,
            slow_at=at if name == "sluggish" else None,
        )


def write_track_config(workdir: Path, models_root: Path, track: str, version: int) -> Path:
    """This track's ``models.config`` (both versions, ``stable`` naming `version`) and
    monitoring config."""
    configs = [
        tfconfig.ModelConfig(
            name=name,
            base_path=str(models_root / name),
            policy=tfconfig.VersionPolicy.specific([STABLE_VERSION, CANARY_VERSION]),
            labels={"stable": version, "canary": CANARY_VERSION},
        )
        for name in MODELS
    ]
    directory = workdir / track
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "models.config").write_text(tfconfig.render_models_config(configs))
    (directory / "monitoring.config").write_text(tfconfig.render_monitoring_config())
    return directory


@dataclass(frozen=True)
class Track:
    name: str
    rest_port: int


TRACKS = (("stable", STABLE_VERSION), ("canary", CANARY_VERSION))


def start_tracks(
    processes: Processes, workdir: Path, models_roots: Mapping[str, Path]
) -> list[Track]:
    """Both stand-in servers, started together (each imports TensorFlow), then waited for."""
    started = []
    for track, version in TRACKS:
        config = write_track_config(workdir, models_roots[track], track, version)
        port_file = config / "ports.json"
        service = processes.start(
            f"server-{track}",
            [
                "-m",
                "devtools.server",
                "--host=127.0.0.1",
                "--port=-1",
                "--rest_api_port=-1",
                f"--port_file={port_file}",
                f"--model_config_file={config / 'models.config'}",
                f"--monitoring_config_file={config / 'monitoring.config'}",
                # As the cluster's pods: labels may name a version still loading (#1608).
                "--allow_version_labels_for_unavailable_models",
            ],
        )
        started.append((track, service, port_file))
    tracks = []
    for track, service, port_file in started:

        def ports(service=service, port_file=port_file) -> dict | None:
            service.check_alive("canary demo")
            return json.loads(port_file.read_text()) if port_file.exists() else None

        found = wait_until("canary demo", f"the {track} server", ports, 90, service.log)
        processes.add_ports([found["rest"], found["grpc"]])
        tracks.append(Track(track, int(found["rest"])))
    return tracks


def send_traffic(
    tracks: Sequence[Track],
    canary_share: float,
    seconds: float,
    workers: int = 4,
    seed: int = 7,
) -> Counter[tuple[str, str, int]]:
    """Predict requests for `seconds`: (model, track, HTTP status) -> count."""
    by_name = {t.name: t for t in tracks}
    counts: Counter[tuple[str, str, int]] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(index: int) -> None:
        rng = random.Random(seed + index)
        with httpx.Client(timeout=10) as client:
            while time.monotonic() < deadline:
                model = MODELS[rng.randrange(len(MODELS))]
                track = by_name["canary" if rng.random() < canary_share else "stable"]
                url = f"http://127.0.0.1:{track.rest_port}/v1/models/{model}/labels/stable:predict"
                reply = client.post(url, json={"instances": [rng.random()]})
                with lock:
                    counts[(model, track.name, reply.status_code)] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return counts


def run(
    workdir: Path,
    canary_share: float = 0.3,
    fail_share: float = 0.25,
    traffic_seconds: float = 6.0,
    scrape_interval_s: float = 0.5,
    min_requests: int = 20,
    picture: Path | None = None,
    sync: bool = False,
) -> tuple[dict[str, canary.Decision], Counter[tuple[str, str, int]]]:
    """The whole scenario; returns each model's decision and the traffic actually sent.

    With `sync`, versions reach each track's server as in the cluster: published to a loopback
    S3 store, brought in by the real sync agent, which Prometheus then scrapes too.
    """
    exports = workdir / "exports"
    export_models(exports, fail_share)
    with Processes(workdir / "logs") as processes:
        roots = {track: exports for track, _ in TRACKS}
        if sync:
            endpoint = canary_store.start_store(processes, exports, MODELS)
            roots = {track: workdir / track / "models" for track, _ in TRACKS}
            for track, version in TRACKS:
                config = write_track_config(workdir, roots[track], track, version)
                canary_store.sync_track(
                    processes, endpoint, track, roots[track], config / "models.config", MODELS
                )
        tracks = start_tracks(processes, workdir, roots)
        targets = [
            ScrapeTarget(
                "tfserving",
                f"127.0.0.1:{t.rest_port}",
                tfconfig.DEFAULT_PROMETHEUS_PATH,
                {"track": t.name},
            )
            for t in tracks
        ]
        if sync:
            for t in tracks:
                port = canary_store.start_sync_agent(
                    processes,
                    endpoint,
                    t.name,
                    roots[t.name],
                    workdir / t.name / "models.config",
                    MODELS,
                    t.rest_port,
                )
                targets.append(
                    ScrapeTarget("model-sync", f"127.0.0.1:{port}", "/metrics", {"track": t.name})
                )
        with LocalPrometheus(workdir / "prometheus", targets, scrape_interval_s) as prom:
            prom.wait_for_samples('up{job="tfserving"} == 1', len(tracks), timeout_s=15)
            started = time.time()
            counts = send_traffic(tracks, canary_share, traffic_seconds)
            # Two more scrapes so the last requests are in the TSDB before the gate asks.
            time.sleep(2.5 * scrape_interval_s)
            if picture is not None:
                from devtools.dashboard_picture import render

                render(prom.url, started, time.time(), picture, step=scrape_interval_s)
            if sync:
                served = httpx.get(
                    f"{prom.url}/api/v1/query",
                    params={"query": "sum by (track, model) (tfserving_sync_versions_served)"},
                    timeout=5,
                ).json()["data"]["result"]
                for series in sorted(served, key=lambda r: sorted(r["metric"].items())):
                    labels = series["metric"]
                    print(
                        f"sync agent ({labels.get('track')} track): {labels.get('model')} has "
                        f"{series['value'][1]} version(s) AVAILABLE"
                    )
            window = int(traffic_seconds + 10)
            fetch = canary.http_fetch(prom.url)
            limits = canary.Thresholds(min_requests=min_requests)
            decisions = {m: canary.evaluate(fetch, m, window, limits) for m in MODELS}
    return decisions, counts


def _summary(counts: Mapping[tuple[str, str, int], int]) -> str:
    return ", ".join(f"{m}/{t} HTTP {s}: {n}" for (m, t, s), n in sorted(counts.items()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.canary_demo", description=__doc__)
    parser.add_argument("--canary-share", type=float, default=0.3, help="0-1, default 0.3")
    parser.add_argument(
        "--fail-share", type=float, default=0.25, help="of flaky and sluggish v2's requests"
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="of traffic (default 6)")
    parser.add_argument("--workdir", type=Path, help="keep models, configs, logs here")
    parser.add_argument("--picture", type=Path, help="draw the dashboard with the demo's data")
    parser.add_argument(
        "--no-sync",
        action="store_true",
        help="serve the exports directly (no S3 store, no sync agents; faster)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported
    for flag, value in (("--canary-share", args.canary_share), ("--fail-share", args.fail_share)):
        if not 0 < value < 1:
            parser.error(f"{flag} {value}: give a share between 0 and 1")
    with tempfile.TemporaryDirectory(prefix="canary-demo-") as tmp:
        workdir = args.workdir or Path(tmp)
        try:
            decisions, counts = run(
                workdir,
                args.canary_share,
                args.fail_share,
                args.seconds,
                picture=args.picture,
                sync=not args.no_sync,
            )
        except (StepFailed, PrometheusError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    print(f"traffic: {_summary(counts)}")
    ok = True
    for model, decision in decisions.items():
        print(f"\n== {model}: expected {EXPECTED[model]}, gate says {decision.decision}")
        print(decision.to_json())
        ok &= decision.decision == EXPECTED[model]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
