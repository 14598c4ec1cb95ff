"""The canary gate's questions to Prometheus, and the strict reading of its answers.

`track_queries` is the PromQL for each figure of both tracks; `http_fetch` runs one instant query
at a given time against any Prometheus HTTP API (``/api/v1/query``), SigV4-signed for an Amazon
Managed Service for Prometheus workspace (``aps-workspaces.<region>.amazonaws.com``, service
``aps``, the default credential chain; AMP user guide, "Query your Prometheus metrics"); `vector`
reads an answer as an instant vector of at most one series per track, or raises `GateError`
naming what is wrong, so `ops.canary` can hold on anything else.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

TRACKS = ("stable", "canary")
AMP_HOST = re.compile(r"^aps-workspaces\.([a-z0-9-]+)\.amazonaws\.com$")
# An instant vector of a few series is a few hundred bytes; more is not a Prometheus answer.
MAX_ANSWER_BYTES = 1 << 20
# How much of an answer a reason quotes.
QUOTE_CHARS = 300


class GateError(RuntimeError):
    """Prometheus could not be asked, or answered something that is not a query result."""


def track_queries(model: str, window_s: int) -> dict[str, str]:
    """PromQL for each figure, one series per ``track``."""
    selector = f'model_name="{model}",track=~"{"|".join(TRACKS)}"'
    window = f"[{window_s}s]"
    histogram = ":tensorflow:serving:request_latency"
    latency = f"sum by (track, le) (rate({histogram}_bucket{{{selector}}}{window}))"
    count = ":tensorflow:serving:request_count"
    requests = f"sum by (track) (increase({count}{{{selector}}}{window}))"
    return {
        "requests": requests,
        # A track with requests but no failed one has no non-OK series: `or` gives it an
        # explicit 0 (NaN if its requests are NaN), so a missing error figure means missing data.
        "errors": (
            f'sum by (track) (increase({count}{{{selector},status!="OK"}}{window}))'
            f" or (0 * {requests})"
        ),
        # TF Serving's histogram is in microseconds.
        "p50_seconds": f"histogram_quantile(0.5, {latency}) / 1e6",
        "p99_seconds": f"histogram_quantile(0.99, {latency}) / 1e6",
        "latency_samples": f"sum by (track) (increase({histogram}_count{{{selector}}}{window}))",
    }


# One instant query, evaluated at a given Unix time: every figure of one decision is taken at
# the same instant, or two queries a moment apart could see more errors than requests.
Fetch = Callable[[str, float], Any]


def http_fetch(base_url: str, timeout_s: float = 10.0) -> Fetch:
    """A function that runs one instant query against `base_url` and returns the parsed JSON."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--prometheus-url {base_url!r}: give an http(s) URL of a Prometheus")
    endpoint = base_url.rstrip("/") + "/api/v1/query"
    amp = AMP_HOST.match(parts.hostname or "")
    signer = _sigv4_signer(amp.group(1)) if amp else None

    def fetch(query: str, at: float) -> Any:
        url = f"{endpoint}?{urlencode({'query': query, 'time': f'{at:.3f}'})}"
        try:
            headers = signer(url) if signer else {}
        except Exception as exc:  # botocore's errors (expired or refused credentials...)
            raise GateError(f"cannot sign the request to {endpoint}: {exc}") from exc
        try:
            with httpx.stream("GET", url, headers=headers, timeout=timeout_s) as response:
                body = b""
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise GateError(
                            f"{endpoint} answered more than {MAX_ANSWER_BYTES} bytes: "
                            "not an instant query result"
                        )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise GateError(f"cannot reach {endpoint}: {exc}") from exc
        text = body.decode("utf-8", "replace")
        if response.status_code != 200:
            raise GateError(f"{endpoint} answered {response.status_code}: {text[:QUOTE_CHARS]}")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise GateError(f"{endpoint} did not answer JSON: {text[:QUOTE_CHARS]}") from exc

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


def _quote(value: Any) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "..."


def vector(answer: Any, figure: str) -> dict[str, float]:
    """The series of one instant-vector answer, by track. Anything else is a GateError: a
    failed query, another result type, a malformed sample, a track the query did not ask for,
    or two series for one track (which a ``sum by (track)`` never returns)."""
    if not isinstance(answer, dict):
        raise GateError(f"{figure}: the answer is not a JSON object: {_quote(answer)}")
    if answer.get("status") != "success":
        raise GateError(f"{figure}: query failed ({answer.get('error', 'no error given')})")
    data = answer.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise GateError(f"{figure}: expected an instant vector, got data {_quote(data)}")
    result = data.get("result")
    if not isinstance(result, list):
        raise GateError(f"{figure}: the vector's result is not a list: {_quote(result)}")
    values: dict[str, float] = {}
    for sample in result:
        metric = sample.get("metric") if isinstance(sample, dict) else None
        pair = sample.get("value") if isinstance(sample, dict) else None
        if not isinstance(metric, dict) or not isinstance(pair, list) or len(pair) != 2:
            raise GateError(f"{figure}: malformed sample {_quote(sample)}")
        track = metric.get("track")
        if track not in TRACKS:
            raise GateError(f"{figure}: a series for track {_quote(track)}, asked for {TRACKS}")
        if track in values:
            raise GateError(f"{figure}: more than one series for the {track} track")
        if not isinstance(pair[1], str):
            raise GateError(f"{figure}: the {track} value is not a string: {_quote(pair[1])}")
        try:
            values[track] = float(pair[1])
        except ValueError:
            raise GateError(
                f"{figure}: the {track} value is not a number: {_quote(pair[1])}"
            ) from None
    return values
