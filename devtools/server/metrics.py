"""Prometheus metrics under TF Serving's names, served on the REST port.

Creates one `Metrics` object per server with a private ``CollectorRegistry`` (never the global
one, so several in-process servers in one test run do not mix). Names follow TF Serving's
exporter, which turns ``/tensorflow/serving/request_count`` into
``:tensorflow:serving:request_count``; histograms keep TF Serving's microsecond buckets
(``Buckets::Exponential(10, 1.8, 33)``). Labels are TF Serving's plus ``version`` (and ``API`` /
``entrypoint`` on the count), so dashboards built for TF Serving keep working when they
aggregate by ``model_name`` and can split by version here.

Counters are written by hand in the text format: prometheus_client always renames a counter
``NAME_total``, and TF Serving's dashboards query ``:tensorflow:serving:request_count`` itself.
"""

from __future__ import annotations

import threading
from collections import defaultdict

from prometheus_client import CollectorRegistry, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS = tuple(10 * 1.8**i for i in range(33))  # microseconds, as TF Serving


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Counter:
    """A labelled integer counter rendered in Prometheus text format under its exact name."""

    def __init__(self, name: str, doc: str, labels: tuple[str, ...]) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self._values: dict[tuple[str, ...], int] = defaultdict(int)
        self._lock = threading.Lock()

    def inc(self, *values: str, amount: int = 1) -> None:
        with self._lock:
            self._values[values] += amount

    def value(self, *values: str) -> int:
        with self._lock:
            return self._values.get(values, 0)

    def render(self) -> str:
        lines = [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} counter"]
        with self._lock:
            items = sorted(self._values.items())
        for values, count in items:
            labels = ",".join(
                f'{k}="{_escape(v)}"' for k, v in zip(self.labels, values, strict=True)
            )
            lines.append(f"{self.name}{{{labels}}} {count}")
        return "\n".join(lines) + "\n"


class Metrics:
    """Request, load, warmup and batching metrics of one server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_count = _Counter(
            ":tensorflow:serving:request_count",
            "The total number of requests.",
            ("model_name", "version", "API", "entrypoint", "status"),
        )
        self.load_attempt_count = _Counter(
            ":tensorflow:cc:saved_model:load_attempt_count",
            "The number of times a SavedModel was successfully loaded.",
            ("model_path", "status"),
        )
        self.wrapped_run_count = _Counter(
            ":tensorflow:serving:batching_session:wrapped_run_count",
            "Tracks the number of model calls made by the batcher (one per merged batch).",
            ("thread_pool_name",),
        )
        self.request_latency = Histogram(
            ":tensorflow:serving:request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ("model_name", "version", "API", "entrypoint"),
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.model_warmup_latency = Histogram(
            ":tensorflow:serving:model_warmup_latency",
            "Distribution of wall time (in microseconds) for warming up the model.",
            ("model_path", "status"),
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.queuing_latency = Histogram(
            ":tensorflow:serving:batching_session:queuing_latency",
            "Distribution of wall time spent (in microseconds) in queuing",
            ("thread_pool_name",),
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            ":tensorflow:serving:batching_session:processed_batch_size",
            "Distribution of the number of examples per model call made by the batcher.",
            ("thread_pool_name", "padded"),
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=self.registry,
        )

    def record_request(
        self, model: str, version: str, api: str, entrypoint: str, status: str, seconds: float
    ) -> None:
        """RecordModelRequestCount + RecordRequestLatency (latency only for OK, as TF Serving)."""
        self.request_count.inc(model, version, api, entrypoint, status)
        if status == "OK":
            self.request_latency.labels(model, version, api, entrypoint).observe(seconds * 1e6)

    def record_batch(self, pool: str, size: int, padded: int, queued_seconds: float) -> None:
        self.wrapped_run_count.inc(pool)
        self.queuing_latency.labels(pool).observe(queued_seconds * 1e6)
        self.batch_size.labels(pool, "false").observe(size)
        if padded != size:
            self.batch_size.labels(pool, "true").observe(padded)

    def render(self) -> bytes:
        counters = (self.request_count, self.load_attempt_count, self.wrapped_run_count)
        text = "".join(c.render() for c in counters)
        return text.encode() + generate_latest(self.registry)
