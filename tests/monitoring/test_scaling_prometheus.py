"""The scaling query against a real Prometheus fed by real traffic, and the HPA's answer to it
(about 60 s, loopback only).

`devtools.scaling_proof.run` serves a model whose every request holds the local server 80 ms,
synced in by the real agent, scraped by a real Prometheus labelled as the cluster's scraper
labels; it drives the benchmark's closed-loop load at concurrency 1, 4 and 8 and then none, and
every half second asks Prometheus the query of the model's ScaledObject (built by the stacks' own
functions) and steps the HPA's formula (`devtools.hpa`). Printed: every evaluation's time, load
step, query answer, raw recommendation and replica count.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from devtools import scaling_proof
from devtools.scaling_proof import Proof
from infra.components.monitoring import scrape_configuration
from infra.program import scrape_interval_seconds
from infra.scaling_query import rate_window, scaling_query
from tests.monitoring.conftest import require_binary

WINDOW_S = 4 * scaling_proof.SCRAPE_S  # the query's rate window


@pytest.fixture(scope="module")
def proof(tmp_path_factory: pytest.TempPathFactory, promtool: str) -> Proof:
    require_binary("prometheus")
    workdir: Path = tmp_path_factory.mktemp("scaling")
    return scaling_proof.run(workdir)


def _load_end(proof: Proof) -> float:
    return sum(seconds for concurrency, seconds in proof.steps if concurrency)


def test_the_run_prints_its_load_steps_and_replica_counts(proof: Proof, capsys) -> None:
    with capsys.disabled():
        print(f"\nquery: {proof.query}\n{proof.table()}")
    assert proof.evaluations[0].concurrency == proof.steps[0][0]
    assert {e.concurrency for e in proof.evaluations} == {c for c, _ in proof.steps}


def test_the_query_is_the_scaled_objects_and_the_stacks_but_for_its_window(proof: Proof) -> None:
    assert proof.query == proof.spec["triggers"][0]["metadata"]["query"]
    model = scaling_proof.MODEL
    cluster = rate_window(scrape_interval_seconds(scrape_configuration()))
    stack_query = scaling_query("inFlight", model, model, "stable", cluster)
    local = rate_window(scaling_proof.SCRAPE_S)
    assert proof.query == stack_query.replace(f"[{cluster}]", f"[{local}]")


def test_the_answers_follow_the_load(proof: Proof) -> None:
    # Closed loop: requests in flight at the server are about the concurrency (Little's law over
    # the latency histogram), once a whole rate window lies inside the step.
    start = 0.0
    for concurrency, seconds in proof.steps:
        settled = [
            e.answer or 0.0
            for e in proof.evaluations
            if start + WINDOW_S + 0.5 <= e.at_s < start + seconds
        ]
        start += seconds
        if not concurrency or not settled:
            continue
        middle = sorted(settled)[len(settled) // 2]
        assert 0.5 * concurrency <= middle <= 1.25 * concurrency, (concurrency, settled)


def test_replicas_rise_with_the_load(proof: Proof) -> None:
    at_step_ends = []
    start = 0.0
    for concurrency, seconds in proof.steps:
        start += seconds
        if concurrency:
            last = max((e for e in proof.evaluations if e.at_s < start), key=lambda e: e.at_s)
            at_step_ends.append(last.decision.replicas)
    assert at_step_ends == sorted(set(at_step_ends)), at_step_ends  # strictly rising
    top = max(c for c, _ in proof.steps)
    assert at_step_ends[-1] >= math.ceil(0.5 * top / scaling_proof.TARGET)


def test_replicas_fall_after_it_within_the_scale_down_window(proof: Proof) -> None:
    end = _load_end(proof)
    peak = max(e.decision.replicas for e in proof.evaluations)
    window = scaling_proof.SCALE_DOWN_WINDOW_S
    # Held: recommendations stay high until the rate window has drained, and the HPA keeps the
    # highest of the last `window` seconds.
    held = [e.decision.replicas for e in proof.evaluations if end <= e.at_s < end + window]
    assert held and set(held) == {peak}
    # Back to the minimum once the window has passed the last high recommendation: at most the
    # window after the rate window drains, plus a scrape and an evaluation.
    back = end + WINDOW_S + window + 2 * scaling_proof.SCRAPE_S + 2 * scaling_proof.PERIOD_S
    low = [e for e in proof.evaluations if e.at_s >= end and e.decision.replicas == 1]
    assert low and low[0].at_s <= back, (low[:1], back)
    assert proof.evaluations[-1].decision.replicas == proof.spec["minReplicaCount"] == 1
