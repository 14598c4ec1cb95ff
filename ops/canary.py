"""The canary SLO gate: compare a model's canary track with its stable track in Prometheus.

``python -m ops.canary decide --prometheus-url URL --model NAME [--window S]`` asks any
Prometheus HTTP API (``/api/v1/query``) for each track's requests, errors and latency over the
window, and prints one JSON object: the decision (``promote``, ``hold`` or ``rollback``), the
figures per track, and the reasons. Exit codes: 0 whenever a decision is printed, whatever it
is and however Prometheus answered (a workflow reads the JSON); 2 for bad arguments or no AWS
credentials to sign requests to an AMP workspace (a message on stderr, no JSON).

The gate fails closed: it promotes only on figures it can vouch for.

- ``hold``: a request or error figure of either track is missing, not a number, infinite,
  negative or inconsistent (more errors than requests); either track had fewer than
  ``min_requests`` requests; Prometheus could not be asked or gave an answer that is not a
  well-formed instant vector with at most one series per track; or, the error ratios being fine,
  either track's latency is missing, not finite, negative, or measured on fewer than
  ``min_requests`` successful requests.
- ``rollback``: on sound request and error figures, the canary's error ratio is more than
  ``max_error_ratio_increase`` above stable's; or, on sound latency figures, its p99 latency is
  more than ``max_p99_ratio`` times stable's plus ``p99_slack_seconds``. The thresholds are those
  of the ``CanaryWorseThanStable`` alert (monitoring/rules/tfserving.yml).
- ``promote``: every figure of both tracks is sound, there is enough traffic on both, and the
  canary is no worse.

Series: TF Serving's ``:tensorflow:serving:request_count`` (``status`` label) and
``:tensorflow:serving:request_latency`` histogram (microseconds, successful requests only), with
the ``track`` label the scrape configuration adds from the pod label. When the URL's host is an
Amazon Managed Service for Prometheus workspace (``aps-workspaces.<region>.amazonaws.com``) each
request is signed with SigV4 (service ``aps``) from the default credential chain; the query API
is AMP's ``<workspace>/api/v1/query`` (AMP user guide, "Query your Prometheus metrics").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from cli.args import positive_float, positive_int
from contracts import rules
from ops.canary_query import TRACKS, Fetch, GateError, http_fetch, track_queries, vector

__all__ = [
    "TRACKS",
    "Decision",
    "Fetch",
    "GateError",
    "Thresholds",
    "TrackFigures",
    "decide",
    "evaluate",
    "http_fetch",
    "main",
    "measure",
    "track_queries",
]

DEFAULT_WINDOW_S = 600


@dataclass(frozen=True)
class Thresholds:
    """When the canary counts as worse than stable (same numbers as the alert rule)."""

    max_error_ratio_increase: float = 0.02
    max_p99_ratio: float = 1.5
    p99_slack_seconds: float = 0.025
    min_requests: int = 50


@dataclass(frozen=True)
class TrackFigures:
    """One track's figures over the window; None where Prometheus returned no series."""

    requests: float | None
    errors: float | None
    p50_seconds: float | None
    p99_seconds: float | None
    # Successful requests in the latency histogram: the sample p50 and p99 are taken from.
    latency_samples: float | None = None

    @property
    def error_ratio(self) -> float | None:
        if not _sound(self.requests) or not _sound(self.errors) or self.requests == 0:
            return None
        return self.errors / self.requests


def _sound(value: float | None) -> bool:
    """A figure the gate may act on: present, finite and not negative."""
    return value is not None and math.isfinite(value) and value >= 0


def _flaw(name: str, value: float | None) -> str | None:
    if value is None:
        return f"no {name} series"
    if math.isnan(value):
        return f"{name} is NaN"
    if math.isinf(value):
        return f"{name} is {value:+}"
    if value < 0:
        return f"{name} is negative ({value:g})"
    return None


@dataclass(frozen=True)
class Decision:
    decision: str
    model: str
    window_seconds: int
    reasons: list[str]
    tracks: dict[str, dict[str, Any]] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        # Strict JSON: a NaN or infinite figure is written as null (the reasons name it).
        return json.dumps(_json_safe(asdict(self)), indent=2, sort_keys=False, allow_nan=False)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def measure(fetch: Fetch, model: str, window_s: int) -> dict[str, TrackFigures]:
    """Each track's figures over the window ending now; a figure with no series is None."""
    at = time.time()
    queries = track_queries(model, window_s)
    results = {name: vector(fetch(q, at), name) for name, q in queries.items()}
    names = [f.name for f in fields(TrackFigures)]
    return {
        track: TrackFigures(**{name: results[name].get(track) for name in names})
        for track in TRACKS
    }


# --- the decision -----------------------------------------------------------------------------


def decide(
    figures: Mapping[str, TrackFigures], model: str, window_s: int, limits: Thresholds
) -> Decision:
    """promote / hold / rollback from both tracks' figures (pure: tested without Prometheus)."""
    stable, canary = figures["stable"], figures["canary"]
    tracks = {
        name: {**asdict(f), "error_ratio": f.error_ratio} for name, f in sorted(figures.items())
    }

    def result(decision: str, reasons: list[str]) -> Decision:
        return Decision(decision, model, window_s, reasons, tracks, asdict(limits))

    def flaws(names: Sequence[str]) -> list[str]:
        found = []
        for track in TRACKS:
            figure = figures[track]
            for name in names:
                flaw = _flaw(name, getattr(figure, name))
                if flaw is not None:
                    found.append(f"{track}: {flaw}")
        return found

    bad = flaws(("requests", "errors"))
    bad += [
        f"{track}: {f.errors:g} errors out of {f.requests:g} requests"
        for track, f in (("stable", stable), ("canary", canary))
        if _sound(f.requests) and _sound(f.errors) and f.errors > f.requests * (1 + 1e-9)
    ]
    if bad:
        return result("hold", ["figures the gate cannot judge on: " + "; ".join(bad)])
    short = [
        f"{name} served {f.requests:.0f} requests in {window_s}s (need {limits.min_requests})"
        for name, f in (("stable", stable), ("canary", canary))
        if f.requests < limits.min_requests
    ]
    if short:
        return result("hold", ["not enough traffic to judge: " + "; ".join(short)])

    s_err, c_err = stable.error_ratio, canary.error_ratio
    assert s_err is not None and c_err is not None  # sound and at least min_requests >= 1
    if c_err > s_err + limits.max_error_ratio_increase:
        return result(
            "rollback",
            [
                f"canary error ratio {c_err:.2%} exceeds stable's {s_err:.2%} by more than "
                f"{limits.max_error_ratio_increase:.2%}"
            ],
        )

    bad = flaws(("latency_samples", "p50_seconds", "p99_seconds"))
    if bad:
        return result("hold", ["latency the gate cannot judge on: " + "; ".join(bad)])
    short = [
        f"{name} has {f.latency_samples:.0f} successful requests in its latency histogram "
        f"(need {limits.min_requests})"
        for name, f in (("stable", stable), ("canary", canary))
        if f.latency_samples < limits.min_requests
    ]
    if short:
        return result("hold", ["too few latency samples to judge: " + "; ".join(short)])

    allowed = stable.p99_seconds * limits.max_p99_ratio + limits.p99_slack_seconds
    if canary.p99_seconds > allowed:
        return result(
            "rollback",
            [
                f"canary p99 {canary.p99_seconds * 1e3:.1f} ms exceeds "
                f"{limits.max_p99_ratio:g} x stable's {stable.p99_seconds * 1e3:.1f} ms + "
                f"{limits.p99_slack_seconds * 1e3:.0f} ms = {allowed * 1e3:.1f} ms"
            ],
        )
    return result(
        "promote",
        [
            f"canary no worse than stable: errors {c_err:.2%} vs {s_err:.2%}, "
            f"p99 {canary.p99_seconds * 1e3:.1f} ms vs {stable.p99_seconds * 1e3:.1f} ms"
        ],
    )


def evaluate(fetch: Fetch, model: str, window_s: int, limits: Thresholds) -> Decision:
    """Measure then decide; a Prometheus that cannot be asked, or answers something that is not
    a well-formed result, gives ``hold`` with the reason."""
    try:
        figures = measure(fetch, model, window_s)
    except GateError as exc:
        return Decision("hold", model, window_s, [f"prometheus: {exc}"], {}, asdict(limits))
    return decide(figures, model, window_s, limits)


# --- command line -----------------------------------------------------------------------------


def _model(text: str) -> str:
    if not rules.is_model_name(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid model name")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ops.canary", description="Canary SLO gate (prints JSON, exits 0)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("decide", help="promote, hold or rollback a model's canary")
    run.add_argument("--prometheus-url", required=True, help="Prometheus (or AMP workspace) URL")
    run.add_argument("--model", required=True, type=_model, help="model name (model_name label)")
    run.add_argument(
        "--window", type=positive_int, default=DEFAULT_WINDOW_S, help="seconds to look back"
    )
    defaults = Thresholds()
    run.add_argument("--min-requests", type=positive_int, default=defaults.min_requests)
    run.add_argument(
        "--max-error-ratio-increase",
        type=positive_float,
        default=defaults.max_error_ratio_increase,
    )
    run.add_argument("--max-p99-ratio", type=positive_float, default=defaults.max_p99_ratio)
    run.add_argument("--p99-slack-seconds", type=positive_float, default=defaults.p99_slack_seconds)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        fetch = http_fetch(args.prometheus_url)
    except (ValueError, GateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    limits = Thresholds(
        max_error_ratio_increase=args.max_error_ratio_increase,
        max_p99_ratio=args.max_p99_ratio,
        p99_slack_seconds=args.p99_slack_seconds,
        min_requests=args.min_requests,
    )
    decision = evaluate(fetch, args.model, args.window, limits).to_json()
    try:
        print(decision)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader closed the pipe early (`... | head`): not an error, and no traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
