"""Closed-loop load generation: N threads, each with its own persistent client, for a fixed time.

Creates `run_load`, which the benchmark uses for every server and protocol. Each worker thread
gets its own call (built by ``make_call``, so REST workers each hold one keep-alive connection
and gRPC workers share or own a channel as the caller decides), sends one request, waits for the
answer, records the latency, and repeats until the deadline: concurrency N means N requests in
flight. Failures are counted by exception type with one example message each, never raised.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["LoadResult", "run_load"]


@dataclass(frozen=True)
class LoadResult:
    """What one load run measured. Latencies are of successful requests, in milliseconds."""

    concurrency: int
    elapsed_s: float
    latencies_ms: np.ndarray
    failures: int
    failure_kinds: dict[str, int] = field(default_factory=dict)
    failure_examples: dict[str, str] = field(default_factory=dict)
    tags: Counter[object] = field(default_factory=Counter)

    @property
    def succeeded(self) -> int:
        return int(self.latencies_ms.size)

    @property
    def requests_per_s(self) -> float:
        return self.succeeded / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms.size else 0.0


def run_load(
    make_call: Callable[[int], Callable[[], object]],
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float = 0.0,
    max_requests: int | None = None,
    stop_event: threading.Event | None = None,
) -> LoadResult:
    """Run `concurrency` closed-loop workers for `duration_s` seconds after `warmup_s`.

    ``make_call(worker_index)`` is called once per worker, in that worker's thread, and returns
    the request function it repeats; whatever that returns is counted in `LoadResult.tags`
    (e.g. the model version that answered). Requests that end during the warm-up are not
    measured. The run stops at the deadline, after `max_requests` measured requests, or when
    `stop_event` is set, whichever comes first: it is always bounded in time.
    """
    if concurrency < 1 or duration_s <= 0:
        raise ValueError("concurrency must be >= 1 and duration_s > 0")
    start_barrier = threading.Barrier(concurrency + 1)
    stop = stop_event or threading.Event()
    lock = threading.Lock()
    latencies: list[float] = []
    kinds: Counter[str] = Counter()
    examples: dict[str, str] = {}
    tags: Counter[object] = Counter()
    # Workers read the window while the main thread sets it; until then nothing is measured.
    window = {"measure_from": float("inf"), "measure_until": float("inf")}
    budget = [max_requests if max_requests is not None else -1]

    def worker(index: int) -> None:
        try:
            call = make_call(index)
        except Exception as exc:
            with lock:
                kinds[f"setup {type(exc).__name__}"] += 1
                examples.setdefault(f"setup {type(exc).__name__}", str(exc)[:300])
            start_barrier.wait()
            return
        start_barrier.wait()
        local_latencies: list[float] = []
        local_tags: Counter[object] = Counter()
        while not stop.is_set():
            began = time.perf_counter()
            try:
                tag = call()
            except Exception as exc:  # every failure is a data point, never a crash
                ended = time.perf_counter()
                if ended >= window["measure_from"] and began < window["measure_until"]:
                    name = type(exc).__name__
                    with lock:
                        kinds[name] += 1
                        examples.setdefault(name, str(exc)[:300])
                continue
            ended = time.perf_counter()
            if ended >= window["measure_from"] and began < window["measure_until"]:
                if tag is not None and not isinstance(tag, (int, str)):
                    tag = type(tag).__name__  # tags are counted, so only hashable scalars
                local_latencies.append((ended - began) * 1000.0)
                local_tags[tag] += 1
                if budget[0] >= 0:
                    with lock:
                        budget[0] -= 1
                        if budget[0] <= 0:
                            stop.set()
        with lock:
            latencies.extend(local_latencies)
            tags.update(local_tags)

    threads = [
        threading.Thread(target=worker, args=(i,), name=f"load-{i}", daemon=True)
        for i in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    start_barrier.wait()
    now = time.perf_counter()
    window["measure_from"] = now + warmup_s
    window["measure_until"] = now + warmup_s + duration_s
    stop.wait(timeout=warmup_s + duration_s)
    stop.set()
    ended = time.perf_counter()
    for thread in threads:
        thread.join(timeout=60)
    elapsed = min(ended, window["measure_until"]) - window["measure_from"]
    return LoadResult(
        concurrency=concurrency,
        elapsed_s=max(elapsed, 1e-9),
        latencies_ms=np.asarray(latencies, dtype=np.float64),
        failures=sum(kinds.values()),
        failure_kinds=dict(kinds),
        failure_examples=examples,
        tags=tags,
    )
