"""The SLO gate's decision rules and command line against fake Prometheus answers.

Every case of the fail-closed rule (docs/observability.md, "The gate") has its own answer here:
missing, NaN, infinite, negative, duplicated and too-small samples on either track, and
malformed answers. tests/monitoring/test_canary_gate_fail_closed.py runs the cases a real
Prometheus can produce against one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from ops import canary, canary_query
from ops.canary import Thresholds, TrackFigures

pytestmark = pytest.mark.hostile

LIMITS = Thresholds()
MODEL, WINDOW = "mnist", 600

# Prometheus's answers for a healthy pair of tracks, as strings (the API's number format).
HEALTHY: dict[str, dict[str, str]] = {
    "requests": {"stable": "1000", "canary": "200"},
    "errors": {"stable": "2", "canary": "1"},
    "p50_seconds": {"stable": "0.002", "canary": "0.002"},
    "p99_seconds": {"stable": "0.010", "canary": "0.012"},
    "latency_samples": {"stable": "998", "canary": "199"},
}


def vector(series: Mapping[str, str] | list[tuple[str, str]]) -> dict[str, Any]:
    items = series.items() if isinstance(series, Mapping) else series
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"track": track}, "value": [1700000000.0, value]}
                for track, value in items
            ],
        },
    }


def fake_prometheus(answers: Mapping[str, Any], changes: Mapping[str, Any]) -> canary.Fetch:
    """A fetch answering each of the gate's queries: a figure in `answers` with that whole
    answer (any JSON), any other from HEALTHY with `changes` applied (per track; None drops it)."""
    queries = {q: name for name, q in canary.track_queries(MODEL, WINDOW).items()}

    def fetch(query: str, at: float) -> Any:
        name = queries[query]
        if name in answers:
            return answers[name]
        values = {**HEALTHY[name], **changes.get(name, {})}
        return vector({t: v for t, v in values.items() if v is not None})

    return fetch


def gate(
    answers: Mapping[str, Any] | None = None, **changes: Mapping[str, str | None]
) -> canary.Decision:
    return canary.evaluate(fake_prometheus(answers or {}, changes), MODEL, WINDOW, LIMITS)


def test_a_healthy_canary_is_promoted() -> None:
    decision = gate()
    assert decision.decision == "promote", decision.reasons
    assert decision.tracks["canary"]["error_ratio"] == pytest.approx(0.005)
    assert decision.tracks["canary"]["latency_samples"] == 199
    assert decision.reasons == [
        "canary no worse than stable: errors 0.50% vs 0.20%, p99 12.0 ms vs 10.0 ms"
    ]


def test_decision_json_keeps_its_fields() -> None:
    out = json.loads(gate().to_json())
    assert list(out) == ["decision", "model", "window_seconds", "reasons", "tracks", "thresholds"]
    assert set(out["tracks"]["stable"]) >= {
        "requests",
        "errors",
        "p50_seconds",
        "p99_seconds",
        "error_ratio",
    }


@pytest.mark.parametrize("track", ["stable", "canary"])
@pytest.mark.parametrize(
    ("figure", "value", "flaw"),
    [
        ("requests", None, "no requests series"),
        ("requests", "NaN", "requests is NaN"),
        ("requests", "+Inf", "requests is +inf"),
        ("requests", "-Inf", "requests is -inf"),
        ("requests", "-5", "requests is negative (-5)"),
        ("errors", None, "no errors series"),
        ("errors", "NaN", "errors is NaN"),
        ("errors", "+Inf", "errors is +inf"),
        ("errors", "-1", "errors is negative (-1)"),
    ],
)
def test_an_unsound_count_holds(track: str, figure: str, value: str | None, flaw: str) -> None:
    decision = gate(**{figure: {track: value}})
    assert decision.decision == "hold"
    assert decision.reasons == [f"figures the gate cannot judge on: {track}: {flaw}"]
    json.loads(decision.to_json())  # strict JSON: NaN and infinities are written as null


def test_a_missing_track_holds_naming_both_figures() -> None:
    decision = gate(requests={"stable": None}, errors={"stable": None})
    assert decision.decision == "hold"
    assert decision.reasons == [
        "figures the gate cannot judge on: stable: no requests series; stable: no errors series"
    ]


def test_more_errors_than_requests_holds() -> None:
    decision = gate(errors={"canary": "201"})
    assert decision.decision == "hold"
    assert decision.reasons == [
        "figures the gate cannot judge on: canary: 201 errors out of 200 requests"
    ]


@pytest.mark.parametrize("track", ["stable", "canary"])
@pytest.mark.parametrize(
    ("figure", "value", "flaw"),
    [
        ("p99_seconds", None, "no p99_seconds series"),
        ("p99_seconds", "NaN", "p99_seconds is NaN"),
        ("p99_seconds", "+Inf", "p99_seconds is +inf"),
        ("p99_seconds", "-0.5", "p99_seconds is negative (-0.5)"),
        ("p50_seconds", "NaN", "p50_seconds is NaN"),
        ("latency_samples", None, "no latency_samples series"),
        ("latency_samples", "NaN", "latency_samples is NaN"),
    ],
)
def test_unsound_latency_holds(track: str, figure: str, value: str | None, flaw: str) -> None:
    decision = gate(**{figure: {track: value}})
    assert decision.decision == "hold"
    assert decision.reasons == [f"latency the gate cannot judge on: {track}: {flaw}"]


def test_requests_without_a_latency_histogram_hold() -> None:
    # The review's case: 709 canary requests and no latency series at all.
    decision = gate(
        requests={"canary": "709"},
        errors={"canary": "0"},
        p50_seconds={"canary": None},
        p99_seconds={"canary": None},
        latency_samples={"canary": None},
    )
    assert decision.decision == "hold"
    assert decision.reasons == [
        "latency the gate cannot judge on: canary: no latency_samples series; "
        "canary: no p50_seconds series; canary: no p99_seconds series"
    ]


def test_too_little_traffic_holds_and_says_which_track() -> None:
    decision = gate(requests={"canary": "49"}, errors={"canary": "0"})
    assert decision.decision == "hold"
    assert decision.reasons == [
        "not enough traffic to judge: canary served 49 requests in 600s (need 50)"
    ]


def test_too_few_latency_samples_hold() -> None:
    decision = gate(latency_samples={"stable": "49"})
    assert decision.decision == "hold"
    assert decision.reasons == [
        "too few latency samples to judge: stable has 49 successful requests in its latency "
        "histogram (need 50)"
    ]


def test_more_errors_roll_back() -> None:
    decision = gate(errors={"canary": "5"})
    # 2.5 % against 0.2 %: more than two points worse
    assert decision.decision == "rollback"
    assert decision.reasons == [
        "canary error ratio 2.50% exceeds stable's 0.20% by more than 2.00%"
    ]


def test_a_canary_failing_everything_rolls_back_without_latency() -> None:
    # TF Serving records latency for successful requests only: no histogram, still a rollback.
    decision = gate(
        errors={"canary": "200"}, p99_seconds={"canary": None}, latency_samples={"canary": "0"}
    )
    assert decision.decision == "rollback"
    assert decision.reasons[0].startswith("canary error ratio 100.00%")


def test_errors_just_within_the_margin_promote() -> None:
    assert gate(requests={"canary": "1000"}, errors={"canary": "22"}).decision == "promote"


def test_slower_p99_rolls_back() -> None:
    decision = gate(p99_seconds={"canary": "0.041"})
    # allowed: 1.5 x 10 ms + 25 ms = 40 ms
    assert decision.decision == "rollback"
    assert decision.reasons == [
        "canary p99 41.0 ms exceeds 1.5 x stable's 10.0 ms + 25 ms = 40.0 ms"
    ]


@pytest.mark.parametrize("figure", list(HEALTHY))
def test_duplicate_series_for_a_track_hold(figure: str) -> None:
    # The review's case: two canary series, 500 errors then 0; whichever comes last must not win.
    duplicated = vector([("stable", "2"), ("canary", "500"), ("canary", "0")])
    decision = gate({figure: duplicated})
    assert decision.decision == "hold"
    assert decision.reasons == [f"prometheus: {figure}: more than one series for the canary track"]
    assert decision.tracks == {}


MALFORMED: dict[str, tuple[Any, str]] = {
    "not an object": (["success"], 'requests: the answer is not a JSON object: ["success"]'),
    "null": (None, "requests: the answer is not a JSON object: null"),
    "failed query": (
        {"status": "error", "error": "parse error"},
        "requests: query failed (parse error)",
    ),
    "data null": (
        {"status": "success", "data": None},
        "requests: expected an instant vector, got data null",
    ),
    "a matrix": (
        {"status": "success", "data": {"resultType": "matrix", "result": []}},
        'requests: expected an instant vector, got data {"resultType": "matrix", "result": []}',
    ),
    "result null": (
        {"status": "success", "data": {"resultType": "vector", "result": None}},
        "requests: the vector's result is not a list: null",
    ),
    "sample without a value": (
        {
            "status": "success",
            "data": {"resultType": "vector", "result": [{"metric": {"track": "canary"}}]},
        },
        'requests: malformed sample {"metric": {"track": "canary"}}',
    ),
    "sample not an object": (
        {"status": "success", "data": {"resultType": "vector", "result": [7]}},
        "requests: malformed sample 7",
    ),
    "value of one element": (
        {
            "status": "success",
            "data": {
                "resultType": "vector",
                "result": [{"metric": {"track": "canary"}, "value": ["1"]}],
            },
        },
        'requests: malformed sample {"metric": {"track": "canary"}, "value": ["1"]}',
    ),
    "non-numeric value": (
        vector({"canary": "many"}),
        'requests: the canary value is not a number: "many"',
    ),
    "value not a string": (
        {
            "status": "success",
            "data": {
                "resultType": "vector",
                "result": [{"metric": {"track": "canary"}, "value": [1, None]}],
            },
        },
        "requests: the canary value is not a string: null",
    ),
    "unasked track": (
        vector({"blue": "5"}),
        "requests: a series for track \"blue\", asked for ('stable', 'canary')",
    ),
    "no track label": (
        {
            "status": "success",
            "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "5"]}]},
        },
        "requests: a series for track null, asked for ('stable', 'canary')",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_answer_holds_with_the_reason(case: str) -> None:
    answer, reason = MALFORMED[case]
    decision = gate({"requests": answer})
    assert decision.decision == "hold"
    assert decision.reasons == [f"prometheus: {reason}"]


def test_unreachable_prometheus_holds_with_the_reason() -> None:
    def fetch(query: str, at: float) -> dict:
        raise canary.GateError("cannot reach http://127.0.0.1:9/api/v1/query: refused")

    decision = canary.evaluate(fetch, "mnist", 60, LIMITS)
    assert decision.decision == "hold"
    assert decision.reasons == ["prometheus: cannot reach http://127.0.0.1:9/api/v1/query: refused"]


def test_queries_select_the_model_and_both_tracks() -> None:
    queries = canary.track_queries("mnist", 300)
    assert 'model_name="mnist",track=~"stable|canary",status!="OK"' in queries["errors"]
    # A track with requests and no failed one gets an explicit 0, not a missing series.
    assert queries["errors"].endswith(f" or (0 * {queries['requests']})")
    assert "[300s]" in queries["p99_seconds"] and "/ 1e6" in queries["p99_seconds"]
    assert "request_latency_count{" in queries["latency_samples"]


def _serve(monkeypatch: pytest.MonkeyPatch, handler: Any) -> list[httpx.Request]:
    """Route the gate's httpx calls to `handler` (an httpx.MockTransport handler)."""
    seen: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda r: seen.append(r) or handler(r))
    real_stream = httpx.stream

    def stream(method: str, url: str, **kwargs: Any) -> Any:
        kwargs.pop("timeout", None)
        client = httpx.Client(transport=transport)
        return client.stream(method, url, **kwargs)

    monkeypatch.setattr(httpx, "stream", stream)
    assert real_stream is not stream
    return seen


def test_amp_urls_are_signed_with_sigv4(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    seen = _serve(monkeypatch, lambda r: httpx.Response(200, json={"status": "success"}))
    url = "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1234/"
    canary.http_fetch(url)("up", 1700000000.0)
    (request,) = seen
    assert str(request.url) == url + "api/v1/query?query=up&time=1700000000.000"
    assert "/eu-west-1/aps/aws4_request" in request.headers["Authorization"]


def test_other_urls_are_not_signed(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _serve(monkeypatch, lambda r: httpx.Response(200, json={}))
    canary.http_fetch("http://127.0.0.1:9090")("up", 1700000000.0)
    assert "Authorization" not in seen[0].headers


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (httpx.Response(503, text="overloaded"), "answered 503: overloaded"),
        (httpx.Response(200, text="<html>login</html>"), "did not answer JSON: <html>login</html>"),
        (
            httpx.Response(200, content=b"[" * (canary_query.MAX_ANSWER_BYTES + 1)),
            f"answered more than {canary_query.MAX_ANSWER_BYTES} bytes",
        ),
    ],
)
def test_a_bad_http_answer_is_a_gate_error(
    monkeypatch: pytest.MonkeyPatch, response: httpx.Response, reason: str
) -> None:
    _serve(monkeypatch, lambda r: response)
    with pytest.raises(canary.GateError, match=reason):
        canary.http_fetch("http://127.0.0.1:9090")("up", 1700000000.0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "Not_A_Model"], "is not a valid model name"),
        (["--model", "mnist", "--window", "0"], "--window: expected an integer >= 1, got '0'"),
    ],
)
def test_bad_arguments_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        canary.main(["decide", "--prometheus-url", "http://127.0.0.1:9", *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bad_url_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert canary.main(["decide", "--prometheus-url", "localhost:9090", "--model", "m"]) == 2
    assert "give an http(s) URL" in capsys.readouterr().err


def test_an_unreachable_prometheus_prints_hold_and_exits_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Port 9 (discard) on loopback: nothing listens there.
    code = canary.main(["decide", "--prometheus-url", "http://127.0.0.1:9", "--model", "mnist"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["decision"] == "hold" and out["reasons"][0].startswith("prometheus: cannot reach")


def test_a_malformed_answer_prints_hold_json_and_exits_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _serve(monkeypatch, lambda r: httpx.Response(200, json={"status": "success", "data": None}))
    code = canary.main(["decide", "--prometheus-url", "http://127.0.0.1:9", "--model", "mnist"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["decision"] == "hold"
    assert out["reasons"] == ["prometheus: requests: expected an instant vector, got data null"]


def test_non_finite_figures_are_written_as_null() -> None:
    figures = {
        "stable": TrackFigures(1000, 2, 0.002, 0.01, 998),
        "canary": TrackFigures(float("nan"), 0, 0.002, float("inf"), 100),
    }
    out = json.loads(canary.decide(figures, MODEL, WINDOW, LIMITS).to_json())
    assert out["tracks"]["canary"]["requests"] is None
    assert out["tracks"]["canary"]["p99_seconds"] is None
    assert out["decision"] == "hold"


def test_every_figure_is_taken_at_one_instant() -> None:
    # Two queries a moment apart could see the canary's errors grow past its requests.
    seen: list[float] = []
    healthy = fake_prometheus({}, {})

    def fetch(query: str, at: float) -> Any:
        seen.append(at)
        return healthy(query, at)

    assert canary.evaluate(fetch, MODEL, WINDOW, LIMITS).decision == "promote"
    assert len(seen) == len(canary.track_queries(MODEL, WINDOW)) and len(set(seen)) == 1
