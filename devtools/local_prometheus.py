"""A real Prometheus on loopback, scraping local targets with the project's own rule files.

Creates `LocalPrometheus`, a context manager that writes a ``prometheus.yml`` (one scrape job per
target group, static targets with their extra labels, e.g. ``track``; ``rule_files`` pointing at
``monitoring/rules/*.yml``, the files the cloud workspace gets), starts Debian's ``prometheus``
binary on a free 127.0.0.1 port with its own TSDB directory, waits for ``/-/ready`` and stops it on
exit. `scripts/prometheus` installs the binary.

The cluster's scrape configuration (`infra.components.monitoring`) finds the same endpoints by
Kubernetes service discovery and takes ``track`` from the pod label; here the targets are listed.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from devtools.processes import REPO, free_port, stop, tail

RULE_FILES = sorted((REPO / "monitoring" / "rules").glob("*.yml"))


class PrometheusError(RuntimeError):
    """Prometheus is missing or did not become ready; the message says what to do."""


@dataclass(frozen=True)
class ScrapeTarget:
    """One ``host:port`` serving Prometheus text at `metrics_path`, with labels for its series."""

    job: str
    address: str
    metrics_path: str
    labels: Mapping[str, str] = field(default_factory=dict)


def render_config(
    targets: Sequence[ScrapeTarget], scrape_interval_s: float, rule_files: Sequence[Path]
) -> str:
    """``prometheus.yml`` for these targets (pure)."""
    jobs: dict[tuple[str, str], list[dict[str, object]]] = {}
    for target in targets:
        jobs.setdefault((target.job, target.metrics_path), []).append(
            {"targets": [target.address], "labels": dict(target.labels)}
        )
    interval = f"{int(scrape_interval_s * 1000)}ms"
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {"job_name": job, "metrics_path": path, "static_configs": groups}
            for (job, path), groups in jobs.items()
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


class LocalPrometheus:
    """``with LocalPrometheus(workdir, targets) as prom: prom.url``."""

    def __init__(
        self,
        workdir: Path,
        targets: Sequence[ScrapeTarget],
        scrape_interval_s: float = 1.0,
        rule_files: Sequence[Path] = tuple(RULE_FILES),
    ) -> None:
        self.workdir = workdir
        self.targets = tuple(targets)
        self.scrape_interval_s = scrape_interval_s
        self.rule_files = tuple(rule_files)
        self.port = 0
        self.log = workdir / "prometheus.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LocalPrometheus:
        binary = shutil.which("prometheus")
        if binary is None:
            raise PrometheusError("prometheus is not on PATH: run `bash scripts/prometheus`")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(render_config(self.targets, self.scrape_interval_s, self.rule_files))
        self.port = free_port()
        with self.log.open("wb") as handle:
            self._process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1h",
                ],
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            self._wait_ready(timeout_s=20)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise PrometheusError(f"prometheus exited:\n{tail(self.log)}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise PrometheusError(f"prometheus not ready after {timeout_s:g} s:\n{tail(self.log)}")

    def wait_for_samples(self, query: str, count: int, timeout_s: float) -> None:
        """Block until `query` returns at least `count` series (targets scraped, rules loaded)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            answer = httpx.get(f"{self.url}/api/v1/query", params={"query": query}, timeout=2)
            if len(answer.json().get("data", {}).get("result", [])) >= count:
                return
            time.sleep(self.scrape_interval_s / 2)
        raise PrometheusError(f"no {count} series for {query!r} after {timeout_s:g} s")

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None:
            stop(self._process, grace_s=10)
            self._process = None
