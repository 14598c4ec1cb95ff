"""The SLO gate against a real Prometheus fed by real traffic (loopback only, a few seconds).

`devtools.canary_demo.run` exports three tiny models, starts a stable and a canary stand-in
server, a real Prometheus scraping both (with the project's rule files loaded) and sends traffic
with a 30 % canary share: ``steady``'s healthy canary must be promoted, ``flaky``'s canary (a
quarter of its requests fail) and ``sluggish``'s (a quarter of its requests wait 80 ms) rolled
back, and the gate's figures must match the traffic actually sent.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from devtools import canary_demo


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory, promtool: str) -> tuple:
    workdir: Path = tmp_path_factory.mktemp("canary")
    return canary_demo.run(workdir, traffic_seconds=4.0, scrape_interval_s=0.5)


def test_a_healthy_canary_is_promoted(outcome: tuple) -> None:
    decisions, _ = outcome
    assert decisions["steady"].decision == "promote", decisions["steady"].to_json()


def test_a_canary_failing_a_share_of_requests_is_rolled_back(outcome: tuple) -> None:
    decisions, counts = outcome
    flaky = decisions["flaky"]
    assert flaky.decision == "rollback", flaky.to_json()
    assert flaky.reasons[0].startswith("canary error ratio")
    sent = sum(n for (m, t, _), n in counts.items() if (m, t) == ("flaky", "canary"))
    failed = counts[("flaky", "canary", 400)]
    assert 0.15 < failed / sent < 0.35  # the defect's 25 %, give or take sampling
    measured = flaky.tracks["canary"]["error_ratio"]
    # Prometheus sees the requests up to its last scrape, a subset of those sent: its ratio is
    # that subset's, within binomial sampling error of the whole (3 standard errors; on a loaded
    # machine the subset shrinks and the error grows).
    seen = max(flaky.tracks["canary"]["requests"], 1)
    tolerance = 0.02 + 3 * math.sqrt(0.25 * 0.75 / seen)
    assert measured == pytest.approx(failed / sent, abs=tolerance)


def test_a_canary_slowing_a_share_of_requests_is_rolled_back(outcome: tuple) -> None:
    decisions, _ = outcome
    sluggish = decisions["sluggish"]
    assert sluggish.decision == "rollback", sluggish.to_json()
    assert [r.split(" exceeds")[0].split(" ")[:2] for r in sluggish.reasons] == [["canary", "p99"]]
    assert sluggish.tracks["canary"]["p99_seconds"] >= 0.08  # the defect's sleep, at least
    assert sluggish.tracks["canary"]["error_ratio"] == 0.0


def test_figures_follow_the_traffic(outcome: tuple) -> None:
    decisions, counts = outcome
    for model, decision in decisions.items():
        for track in ("stable", "canary"):
            sent = sum(n for (m, t, _), n in counts.items() if (m, t) == (model, track))
            # increase() extrapolates to the window's edges: within a fifth of what was sent.
            assert decision.tracks[track]["requests"] == pytest.approx(sent, rel=0.2)
