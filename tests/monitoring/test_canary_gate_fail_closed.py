"""The gate fails closed against a real Prometheus: crafted series, scraped for real.

Two loopback targets play the stable and canary tracks of TF Serving's metrics endpoint, each
rendering its series at scrape time from a per-model recipe (a steady request rate, a counter
stuck at NaN or +Inf, a counter running negative, no latency histogram, no series at all). A real
Prometheus (`devtools.local_prometheus`) scrapes both with the ``track`` label, and the gate asks
it as it asks the cluster's. Every case a real Prometheus can produce is here; duplicate series
for a track cannot come out of ``sum by (track)`` and malformed answers cannot come out of a
Prometheus at all, so those are tested with fake answers (tests/ops/test_canary_decide.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from devtools.local_prometheus import LocalPrometheus, ScrapeTarget
from ops import canary

pytestmark = pytest.mark.hostile

SCRAPE_S = 0.5
BUCKETS = (1000.0, 10_000.0, 100_000.0)  # microseconds, plus +Inf


@dataclass(frozen=True)
class Series:
    """One track's series for one model: rates per second since the target started."""

    ok_per_s: float = 100.0
    errors_per_s: float = 0.0
    latency_us: float | None = 5000.0  # None: no latency histogram
    count: Callable[[float], str] | None = None  # overrides the OK counter's value


SCENARIOS: dict[str, dict[str, Series | None]] = {
    # Healthy: no failed request at all, so no non-OK series; the gate still sees 0 errors.
    "healthy": {"stable": Series(), "canary": Series()},
    # The review's case: requests on the canary but no latency histogram.
    "nolatency": {"stable": Series(), "canary": Series(latency_us=None)},
    "nancount": {"stable": Series(), "canary": Series(count=lambda t: "NaN")},
    "infcount": {"stable": Series(), "canary": Series(count=lambda t: "+Inf")},
    # A counter running below zero: every sample is a "reset", increase() comes out negative.
    "negative": {"stable": Series(), "canary": Series(count=lambda t: f"{-100 * t - 1:.3f}")},
    "nostable": {"stable": None, "canary": Series()},
    "trickle": {"stable": Series(), "canary": Series(ok_per_s=1.0)},
    "failing": {
        "stable": Series(),
        "canary": Series(ok_per_s=0, errors_per_s=100, latency_us=None),
    },
}

EXPECTED: dict[str, tuple[str, str]] = {
    "healthy": ("promote", "canary no worse than stable: errors 0.00% vs 0.00%"),
    "nolatency": (
        "hold",
        "latency the gate cannot judge on: canary: no latency_samples series; "
        "canary: no p50_seconds series; canary: no p99_seconds series",
    ),
    "nancount": ("hold", "figures the gate cannot judge on: canary: requests is NaN"),
    "infcount": ("hold", "figures the gate cannot judge on: canary: requests is"),
    "negative": ("hold", "figures the gate cannot judge on: canary: requests is negative"),
    "nostable": (
        "hold",
        "figures the gate cannot judge on: stable: no requests series; stable: no errors series",
    ),
    "trickle": ("hold", "not enough traffic to judge: canary served"),
    "failing": ("rollback", "canary error ratio 100.00% exceeds stable's 0.00%"),
}


def exposition(track: str, elapsed: float) -> str:
    lines = [
        "# TYPE :tensorflow:serving:request_count counter",
        "# TYPE :tensorflow:serving:request_latency histogram",
    ]
    for model, tracks in SCENARIOS.items():
        series = tracks[track]
        if series is None:
            continue
        name = f'model_name="{model}",API="predict",entrypoint="REST"'
        ok = series.ok_per_s * elapsed
        value = series.count(elapsed) if series.count else f"{ok:.0f}"
        lines.append(f':tensorflow:serving:request_count{{{name},status="OK"}} {value}')
        if series.errors_per_s:
            errors = series.errors_per_s * elapsed
            lines.append(
                f':tensorflow:serving:request_count{{{name},status="INVALID_ARGUMENT"}} '
                f"{errors:.0f}"
            )
        if series.latency_us is not None:
            for le in (*BUCKETS, float("inf")):
                n = ok if series.latency_us <= le else 0
                bound = "+Inf" if le == float("inf") else f"{le:g}"
                lines.append(
                    f':tensorflow:serving:request_latency_bucket{{{name},le="{bound}"}} {n:.0f}'
                )
            lines.append(f":tensorflow:serving:request_latency_count{{{name}}} {ok:.0f}")
            lines.append(
                f":tensorflow:serving:request_latency_sum{{{name}}} {ok * series.latency_us:.0f}"
            )
    return "\n".join(lines) + "\n"


def start_target(track: str, started: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = exposition(track, time.monotonic() - started).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def decisions(tmp_path_factory: pytest.TempPathFactory, promtool: str) -> Iterator[dict]:
    workdir: Path = tmp_path_factory.mktemp("gate")
    started = time.monotonic()
    servers = {track: start_target(track, started) for track in canary.TRACKS}
    targets = [
        ScrapeTarget("tfserving", f"127.0.0.1:{s.server_address[1]}", "/metrics", {"track": t})
        for t, s in servers.items()
    ]
    try:
        with LocalPrometheus(workdir, targets, SCRAPE_S, rule_files=()) as prom:
            prom.wait_for_samples('up{job="tfserving"} == 1', 2, timeout_s=15)
            time.sleep(8 * SCRAPE_S)  # enough samples for increase() over the window
            fetch = canary.http_fetch(prom.url)
            limits = canary.Thresholds()
            yield {m: canary.evaluate(fetch, m, 30, limits) for m in SCENARIOS}
    finally:
        for server in servers.values():
            server.shutdown()
            server.server_close()


@pytest.mark.parametrize("model", list(SCENARIOS))
def test_the_gate_on_a_real_prometheus(decisions: dict, model: str) -> None:
    decision, reason = EXPECTED[model]
    got = decisions[model]
    assert got.decision == decision, got.to_json()
    assert got.reasons[0].startswith(reason), got.to_json()
