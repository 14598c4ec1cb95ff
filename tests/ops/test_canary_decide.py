"""The SLO gate's decision rules and command line, without Prometheus (pure functions)."""

from __future__ import annotations

import json

import httpx
import pytest

from ops import canary
from ops.canary import Thresholds, TrackFigures

LIMITS = Thresholds()


def figures(stable: TrackFigures, canary_: TrackFigures) -> dict[str, TrackFigures]:
    return {"stable": stable, "canary": canary_}


HEALTHY = TrackFigures(requests=1000, errors=2, p50_seconds=0.002, p99_seconds=0.010)


def test_a_canary_no_worse_than_stable_is_promoted() -> None:
    same = TrackFigures(requests=200, errors=1, p50_seconds=0.002, p99_seconds=0.012)
    decision = canary.decide(figures(HEALTHY, same), "mnist", 600, LIMITS)
    assert decision.decision == "promote"
    assert decision.tracks["canary"]["error_ratio"] == pytest.approx(0.005)


def test_too_little_traffic_holds_and_says_which_track() -> None:
    few = TrackFigures(requests=49, errors=0, p50_seconds=0.002, p99_seconds=0.01)
    decision = canary.decide(figures(HEALTHY, few), "mnist", 600, LIMITS)
    assert decision.decision == "hold"
    assert "canary served 49 requests in 600s (need 50)" in decision.reasons[0]


def test_more_errors_roll_back() -> None:
    failing = TrackFigures(requests=200, errors=5, p50_seconds=0.002, p99_seconds=0.01)
    decision = canary.decide(figures(HEALTHY, failing), "mnist", 600, LIMITS)
    # 2.5 % against 0.2 %: more than two points worse
    assert decision.decision == "rollback"
    assert decision.reasons == [
        "canary error ratio 2.50% exceeds stable's 0.20% by more than 2.00%"
    ]


def test_errors_just_within_the_margin_promote() -> None:
    near = TrackFigures(requests=1000, errors=22, p50_seconds=0.002, p99_seconds=0.01)
    assert canary.decide(figures(HEALTHY, near), "m", 60, LIMITS).decision == "promote"


def test_slower_p99_rolls_back() -> None:
    slow = TrackFigures(requests=200, errors=0, p50_seconds=0.002, p99_seconds=0.041)
    decision = canary.decide(figures(HEALTHY, slow), "mnist", 600, LIMITS)
    # allowed: 1.5 x 10 ms + 25 ms = 40 ms
    assert decision.decision == "rollback"
    assert (
        "canary p99 41.0 ms exceeds 1.5 x stable's 10.0 ms + 25 ms = 40.0 ms"
        in (decision.reasons[0])
    )


def test_unreachable_prometheus_holds_with_the_reason() -> None:
    def fetch(query: str) -> dict:
        raise canary.GateError("cannot reach http://127.0.0.1:9/api/v1/query: refused")

    decision = canary.evaluate(fetch, "mnist", 60, LIMITS)
    assert decision.decision == "hold"
    assert decision.reasons == ["prometheus: cannot reach http://127.0.0.1:9/api/v1/query: refused"]


def test_a_failed_query_is_reported() -> None:
    def fetch(query: str) -> dict:
        return {"status": "error", "error": "parse error"}

    decision = canary.evaluate(fetch, "mnist", 60, LIMITS)
    assert decision.decision == "hold"
    assert decision.reasons[0].startswith("prometheus: query failed (parse error)")


def test_queries_select_the_model_and_both_tracks() -> None:
    queries = canary.track_queries("mnist", 300)
    assert 'model_name="mnist",track=~"stable|canary",status!="OK"' in queries["errors"]
    assert "[300s]" in queries["p99_seconds"] and "/ 1e6" in queries["p99_seconds"]


def test_amp_urls_are_signed_with_sigv4(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    seen: dict[str, dict] = {}

    def fake_get(url: str, headers: dict, timeout: float) -> httpx.Response:
        seen[url] = headers
        request = httpx.Request("GET", url)
        return httpx.Response(200, json={"status": "success"}, request=request)

    monkeypatch.setattr(httpx, "get", fake_get)
    url = "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1234/"
    canary.http_fetch(url)("up")
    ((called, headers),) = seen.items()
    assert called.startswith(url + "api/v1/query?query=up")
    assert "/eu-west-1/aps/aws4_request" in headers["Authorization"]


def test_other_urls_are_not_signed(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict] = []

    def fake_get(url: str, headers: dict, timeout: float) -> httpx.Response:
        seen.append(headers)
        return httpx.Response(200, json={}, request=httpx.Request("GET", url))

    monkeypatch.setattr(httpx, "get", fake_get)
    canary.http_fetch("http://127.0.0.1:9090")("up")
    assert seen == [{}]


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
