"""The canary demo's model store and sync agents: the cluster's path, on loopback.

`start_store` starts a loopback S3 endpoint (moto), creates a bucket and publishes every exported
version with the project's own ``python -m model publish`` (in parallel: each imports
TensorFlow). `sync_track` brings a track's versions to its own model directory with the real
sync agent once (as the init container does), then `start_sync_agent` keeps one running beside the
track's server with ``--metrics-port``, so Prometheus scrapes ``tfserving_sync_*`` as in the
cluster.
"""

from __future__ import annotations

from pathlib import Path

from contracts import rules
from devtools.processes import (
    Processes,
    StepFailed,
    free_port,
    port_open,
    start_local_s3,
    wait_until,
)

STEP = "canary demo store"
BUCKET = "canary-demo"
STORE_URI = f"s3://{BUCKET}/models"


def start_store(processes: Processes, exports: Path, models: tuple[str, ...]) -> str:
    """The S3 endpoint's URL, once every ``exports/<model>/<version>`` is published."""
    endpoint = start_local_s3(processes, STEP, BUCKET)
    publishes = [
        processes.start(
            f"publish-{version.parent.name}-{version.name}",
            [
                "-m",
                "model",
                "publish",
                "--export",
                str(version),
                "--store",
                STORE_URI,
                "--endpoint-url",
                endpoint,
            ],
        )
        for model in models
        for version in sorted((exports / model).iterdir())
        if rules.parse_version_dir(version.name) is not None
    ]
    for service in publishes:
        if service.process.wait(timeout=300) != 0:
            raise StepFailed(STEP, f"{service.name} failed: see {service.log}", service.log)
    return endpoint


def _sync_args(endpoint: str, dest: Path, config: Path, models: tuple[str, ...]) -> list[str]:
    args = ["-m", "serving.sync", "--source", STORE_URI, "--dest", str(dest)]
    for model in models:
        args += ["--model", model]
    return [*args, "--endpoint-url", endpoint, "--model-config-file", str(config)]


def sync_track(
    processes: Processes,
    endpoint: str,
    track: str,
    dest: Path,
    config: Path,
    models: tuple[str, ...],
) -> None:
    """One pass of the real agent: the track's versions, whole and verified, in `dest`."""
    processes.run(
        STEP, f"sync-{track}-once", [*_sync_args(endpoint, dest, config, models), "--once"],
        timeout_s=120,
    )  # fmt: skip


def start_sync_agent(
    processes: Processes,
    endpoint: str,
    track: str,
    dest: Path,
    config: Path,
    models: tuple[str, ...],
    rest_port: int,
) -> int:
    """The long-running agent beside the track's server; returns its metrics port."""
    metrics_port = free_port()
    args = _sync_args(endpoint, dest, config, models)
    args += ["--interval", "2", "--metrics-port", str(metrics_port), "--health-port", "0"]
    args += ["--health-host", "127.0.0.1", "--tfserving-url", f"http://127.0.0.1:{rest_port}"]
    agent = processes.start(f"sync-{track}", args, [metrics_port])

    def up() -> bool:
        agent.check_alive(STEP)
        return port_open(metrics_port)

    wait_until(STEP, f"the {track} sync agent's metrics", up, 60, agent.log)
    return metrics_port
