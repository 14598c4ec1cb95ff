"""The canary SLO gate: compare a model's canary track with its stable track in Prometheus.

``python -m ops.canary decide --prometheus-url URL --model NAME [--window S]`` asks any
Prometheus HTTP API (``/api/v1/query``) for each track's requests, errors and latency over the
window, and prints one JSON object: the decision (``promote``, ``hold`` or ``rollback``), the
figures per track, and the reasons. It exits 0 whatever it decides (so a workflow reads the JSON);
bad arguments exit 2.

- ``rollback``: the canary's error ratio is more than ``max_error_ratio_increase`` above stable's,
  or its p99 latency is more than ``max_p99_ratio`` times stable's plus ``p99_slack_seconds``.
  The thresholds are those of the ``CanaryWorseThanStable`` alert (monitoring/rules/tfserving.yml).
- ``hold``: either track had fewer than ``min_requests`` requests in the window, or Prometheus
  could not be asked (the reason says why): nothing is known yet, nothing changes.
- ``promote``: enough traffic on both tracks and the canary is no worse.

Series: TF Serving's ``:tensorflow:serving:request_count`` (``status`` label) and
``:tensorflow:serving:request_latency`` histogram (microseconds), with the ``track`` label the
scrape configuration adds from the pod label. When the URL's host is an Amazon Managed Service for
Prometheus workspace (``aps-workspaces.<region>.amazonaws.com``) each request is signed with
SigV4 (service ``aps``) from the default credential chain; the query API is AMP's
``<workspace>/api/v1/query`` (AMP user guide, "Query your Prometheus metrics").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from cli.args import positive_float, positive_int
from contracts import rules

TRACKS = ("stable", "canary")
AMP_HOST = re.compile(r"^aps-workspaces\.([a-z0-9-]+)\.amazonaws\.com$")
DEFAULT_WINDOW_S = 600


class GateError(RuntimeError):
    """Prometheus could not be asked, or answered something that is not a query result."""


@dataclass(frozen=True)
class Thresholds:
    """When the canary counts as worse than stable (same numbers as the alert rule)."""

    max_error_ratio_increase: float = 0.02
    max_p99_ratio: float = 1.5
    p99_slack_seconds: float = 0.025
    min_requests: int = 50


@dataclass(frozen=True)
class TrackFigures:
    requests: float
    errors: float
    p50_seconds: float | None
    p99_seconds: float | None

    @property
    def error_ratio(self) -> float | None:
        return self.errors / self.requests if self.requests > 0 else None


@dataclass(frozen=True)
class Decision:
    decision: str
    model: str
    window_seconds: int
    reasons: list[str]
    tracks: dict[str, dict[str, Any]] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False)


# --- Prometheus queries ---------------------------------------------------------------------


def track_queries(model: str, window_s: int) -> dict[str, str]:
    """PromQL for each figure, one series per ``track``."""
    selector = f'model_name="{model}",track=~"{"|".join(TRACKS)}"'
    window = f"[{window_s}s]"
    latency = (
        f"sum by (track, le) (rate(:tensorflow:serving:request_latency_bucket{{{selector}}}"
        f"{window}))"
    )
    count = ":tensorflow:serving:request_count"
    return {
        "requests": f"sum by (track) (increase({count}{{{selector}}}{window}))",
        "errors": f'sum by (track) (increase({count}{{{selector},status!="OK"}}{window}))',
        # TF Serving's histogram is in microseconds.
        "p50_seconds": f"histogram_quantile(0.5, {latency}) / 1e6",
        "p99_seconds": f"histogram_quantile(0.99, {latency}) / 1e6",
    }


Fetch = Callable[[str], Mapping[str, Any]]


def http_fetch(base_url: str, timeout_s: float = 10.0) -> Fetch:
    """A function that runs one instant query against `base_url` and returns the parsed JSON."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--prometheus-url {base_url!r}: give an http(s) URL of a Prometheus")
    endpoint = base_url.rstrip("/") + "/api/v1/query"
    amp = AMP_HOST.match(parts.hostname or "")
    signer = _sigv4_signer(amp.group(1)) if amp else None

    def fetch(query: str) -> Mapping[str, Any]:
        url = f"{endpoint}?{urlencode({'query': query})}"
        headers = signer(url) if signer else {}
        try:
            response = httpx.get(url, headers=headers, timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise GateError(f"cannot reach {endpoint}: {exc}") from exc
        if response.status_code != 200:
            raise GateError(f"{endpoint} answered {response.status_code}: {response.text[:300]}")
        try:
            return response.json()
        except ValueError as exc:
            raise GateError(f"{endpoint} did not answer JSON: {response.text[:300]}") from exc

    return fetch


def _sigv4_signer(region: str) -> Callable[[str], dict[str, str]]:
    """SigV4 headers for a GET to AMP (service name ``aps``), from botocore's credential chain."""
    import botocore.session
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    credentials = botocore.session.get_session().get_credentials()
    if credentials is None:
        raise GateError("no AWS credentials found to sign requests to the AMP workspace")

    def sign(url: str) -> dict[str, str]:
        request = AWSRequest(method="GET", url=url)
        SigV4Auth(credentials.get_frozen_credentials(), "aps", region).add_auth(request)
        return dict(request.headers.items())

    return sign


def _vector(answer: Mapping[str, Any], query: str) -> dict[str, float]:
    if answer.get("status") != "success":
        raise GateError(f"query failed ({answer.get('error', 'no error given')}): {query}")
    data = answer.get("data", {})
    if data.get("resultType") != "vector":
        raise GateError(f"expected an instant vector, got {data.get('resultType')}: {query}")
    values: dict[str, float] = {}
    for sample in data.get("result", []):
        value = float(sample["value"][1])
        values[sample["metric"].get("track", "")] = value
    return values


def measure(fetch: Fetch, model: str, window_s: int) -> dict[str, TrackFigures]:
    """Each track's figures over the window (absent series count as 0 requests / no latency)."""
    results = {name: _vector(fetch(q), q) for name, q in track_queries(model, window_s).items()}

    def finite(value: float | None) -> float | None:
        return value if value is not None and math.isfinite(value) else None

    return {
        track: TrackFigures(
            requests=results["requests"].get(track, 0.0),
            errors=results["errors"].get(track, 0.0),
            p50_seconds=finite(results["p50_seconds"].get(track)),
            p99_seconds=finite(results["p99_seconds"].get(track)),
        )
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

    short = [
        f"{name} served {f.requests:.0f} requests in {window_s}s (need {limits.min_requests})"
        for name, f in (("stable", stable), ("canary", canary))
        if f.requests < limits.min_requests
    ]
    if short:
        return result("hold", ["not enough traffic to judge: " + "; ".join(short)])

    worse: list[str] = []
    s_err, c_err = stable.error_ratio or 0.0, canary.error_ratio or 0.0
    if c_err > s_err + limits.max_error_ratio_increase:
        worse.append(
            f"canary error ratio {c_err:.2%} exceeds stable's {s_err:.2%} by more than "
            f"{limits.max_error_ratio_increase:.2%}"
        )
    if stable.p99_seconds is not None and canary.p99_seconds is not None:
        allowed = stable.p99_seconds * limits.max_p99_ratio + limits.p99_slack_seconds
        if canary.p99_seconds > allowed:
            worse.append(
                f"canary p99 {canary.p99_seconds * 1e3:.1f} ms exceeds "
                f"{limits.max_p99_ratio:g} x stable's {stable.p99_seconds * 1e3:.1f} ms + "
                f"{limits.p99_slack_seconds * 1e3:.0f} ms = {allowed * 1e3:.1f} ms"
            )
    if worse:
        return result("rollback", worse)
    p99 = (
        f"p99 {canary.p99_seconds * 1e3:.1f} ms vs {stable.p99_seconds * 1e3:.1f} ms"
        if canary.p99_seconds is not None and stable.p99_seconds is not None
        else "no successful request latency on one track"
    )
    return result(
        "promote",
        [f"canary no worse than stable: errors {c_err:.2%} vs {s_err:.2%}, {p99}"],
    )


def evaluate(fetch: Fetch, model: str, window_s: int, limits: Thresholds) -> Decision:
    """Measure then decide; a Prometheus that cannot be asked gives ``hold`` with the reason."""
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
