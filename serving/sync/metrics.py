"""The agent's Prometheus metrics (``--metrics-port``), named ``tfserving_sync_*``.

docs/model-store-and-sync.md lists them; the alert rules and dashboards (issue 15) use these
exact names, so renaming one is a breaking change. Each `SyncMetrics` owns its registry (not the
process-wide default), so several agents in one test process do not collide.

Failure reasons (the ``reason`` label of ``tfserving_sync_failures_total``) are a closed set,
`REASONS`, so a dashboard can show every series from the start (each is pre-created at 0).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    start_http_server,
)

# The *_created series double every counter for no use here (process-wide switch).
disable_created_metrics()

REASONS = (
    "listing",  # listing the store failed (S3 unreachable, denied, throttled)
    "manifest",  # a manifest is unreadable, too large, too deep or names missing files
    "download",  # an S3 GET failed or was cut during a download
    "integrity",  # a downloaded file's size or sha256 differs from its manifest
    "disk_full",  # not enough free space for a version, or ENOSPC while writing one
    "disk",  # any other local file-system error (permissions, I/O)
    "status_file",  # the status file could not be written (full or read-only volume)
    "server_status",  # TF Serving's status endpoint did not answer
    "not_loaded",  # TF Serving reports a version on disk as not loadable (END with an error)
    "load_timeout",  # TF Serving did not report a version AVAILABLE within --load-timeout
    "internal",  # anything else the loop caught instead of exiting; a bug to report
)


class SyncMetrics:
    """Every metric of one agent; `serve` exposes them over HTTP."""

    def __init__(self, models: Iterable[str], served: bool = False) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.versions_on_disk = Gauge(
            "tfserving_sync_versions_on_disk",
            "Complete versions in the model directory (any writer).",
            ["model"],
            registry=r,
        )
        self.latest_on_disk = Gauge(
            "tfserving_sync_latest_version_on_disk",
            "Highest version in the model directory; 0 when there is none.",
            ["model"],
            registry=r,
        )
        self.versions_served = Gauge(
            "tfserving_sync_versions_served",
            "Versions TF Serving reports AVAILABLE (needs --tfserving-url).",
            ["model"],
            registry=r,
        )
        self.latest_served = Gauge(
            "tfserving_sync_latest_version_served",
            "Highest version TF Serving reports AVAILABLE; 0 when none (needs --tfserving-url).",
            ["model"],
            registry=r,
        )
        self.not_loadable = Gauge(
            "tfserving_sync_versions_not_loadable",
            "Wanted versions marked failed: TF Serving could not load them or did not report "
            "them AVAILABLE within --load-timeout (needs --tfserving-url); taken off the disk.",
            ["model"],
            registry=r,
        )
        self.versions_wanted = Gauge(
            "tfserving_sync_versions_wanted",
            "Versions the policy and labels want from the store.",
            ["model"],
            registry=r,
        )
        self.bytes_downloaded = Counter(
            "tfserving_sync_downloaded_bytes",
            "Bytes downloaded from the store (including downloads that failed).",
            ["model"],
            registry=r,
        )
        self.installed = Counter(
            "tfserving_sync_versions_installed",
            "Versions moved into place (a --force replacement counts too).",
            ["model"],
            registry=r,
        )
        self.removed = Counter(
            "tfserving_sync_versions_removed",
            "Versions retired from the model directory.",
            ["model"],
            registry=r,
        )
        self.failures = Counter(
            "tfserving_sync_failures",
            "Failures by reason; the agent logs each, backs off and keeps serving what it has.",
            ["reason"],
            registry=r,
        )
        self.manifest_downloads = Counter(
            "tfserving_sync_manifest_downloads",
            "Manifests downloaded (only new or changed ones are: ETag).",
            registry=r,
        )
        self.last_success = Gauge(
            "tfserving_sync_last_successful_poll_timestamp_seconds",
            "Unix time of the last successful store listing; 0 before the first.",
            registry=r,
        )
        self._started = time.time()
        self._last_success: float | None = None
        since = Gauge(
            "tfserving_sync_seconds_since_last_successful_poll",
            "Seconds since the last successful store listing (since start before the first).",
            registry=r,
        )
        since.set_function(self.seconds_since_success)
        for model in models:
            for metric in (
                self.versions_on_disk,
                self.latest_on_disk,
                self.versions_wanted,
                self.not_loadable,
                self.bytes_downloaded,
                self.installed,
                self.removed,
            ):
                metric.labels(model)
            if served:  # only when there is a server to ask: 0 then means "serves nothing"
                self.served(model, set())
        for reason in REASONS:
            self.failures.labels(reason)

    def seconds_since_success(self) -> float:
        return time.time() - (self._last_success or self._started)

    def polled(self) -> None:
        self._last_success = time.time()
        self.last_success.set(self._last_success)

    def failed(self, reason: str) -> None:
        self.failures.labels(reason if reason in REASONS else "internal").inc()

    def on_disk(self, model: str, versions: set[int]) -> None:
        self.versions_on_disk.labels(model).set(len(versions))
        self.latest_on_disk.labels(model).set(max(versions, default=0))

    def served(self, model: str, versions: set[int]) -> None:
        self.versions_served.labels(model).set(len(versions))
        self.latest_served.labels(model).set(max(versions, default=0))

    def serve(self, port: int, host: str = "0.0.0.0") -> tuple[object, int]:
        """Start the /metrics HTTP server on a daemon thread; returns (server, bound port)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server, int(server.server_address[1])
