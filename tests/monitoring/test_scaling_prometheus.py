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


def test_the_run_prints_its_load_steps_and_replica_counts(proof: Proof, capsys) -> None:
    with capsys.disabled():
        print(f"\nquery: {proof.query}\n{proof.table()}")
    assert [s.concurrency for s in proof.steps] == [c for c, _ in scaling_proof.STEPS]
    assert {e.concurrency for e in proof.evaluations} == {s.concurrency for s in proof.steps}


def test_the_query_is_the_scaled_objects_and_the_stacks_but_for_its_window(proof: Proof) -> None:
    assert proof.query == proof.spec["triggers"][0]["metadata"]["query"]
    model = scaling_proof.MODEL
    cluster = rate_window(scrape_interval_seconds(scrape_configuration()))
    stack_query = scaling_query("inFlight", model, model, "stable", cluster)
    local = rate_window(scaling_proof.SCRAPE_S)
    assert proof.query == stack_query.replace(f"[{cluster}]", f"[{local}]")


def _settled(proof: Proof) -> list[tuple[int, list[float]]]:
    """Per loaded step, the answers once a whole rate window lies inside it."""
    return [
        (
            step.concurrency,
            [
                e.answer or 0.0
                for e in proof.evaluations
                if step.began_s + WINDOW_S + 0.5 <= e.at_s < step.ended_s
            ],
        )
        for step in proof.steps
        if step.concurrency
    ]


def test_the_answers_follow_the_load(proof: Proof) -> None:
    # Closed loop: requests in flight at the server are about the concurrency (Little's law over
    # the latency histogram), a little less when the load generator itself is slowed; never more.
    medians = []
    for concurrency, answers in _settled(proof):
        assert answers, concurrency
        middle = sorted(answers)[len(answers) // 2]
        assert middle <= 1.25 * concurrency, (concurrency, answers)
        medians.append(middle)
    assert medians == sorted(medians) and medians[-1] > 2 * medians[0], medians


def test_replicas_rise_with_the_load(proof: Proof) -> None:
    at_step_ends = []
    for step in (s for s in proof.steps if s.concurrency):
        last = max((e for e in proof.evaluations if e.at_s < step.ended_s), key=lambda e: e.at_s)
        at_step_ends.append(last.decision.replicas)
    assert at_step_ends == sorted(at_step_ends), at_step_ends
    assert at_step_ends[-1] > at_step_ends[0] == proof.spec["minReplicaCount"], at_step_ends


def test_replicas_fall_after_it_within_the_scale_down_window(proof: Proof) -> None:
    end = proof.load_end_s
    window = scaling_proof.SCALE_DOWN_WINDOW_S
    peak = max(e.decision.replicas for e in proof.evaluations)
    # The answers drain within a rate window after the load stops (a request counts when it
    # ends), so the last recommendations above one pod come just after the load.
    last_high = max(e.at_s for e in proof.evaluations if e.decision.recommended >= peak)
    last_busy = max(e.at_s for e in proof.evaluations if e.decision.recommended > 1)
    assert last_busy <= end + WINDOW_S + 1.0, (last_busy, end)
    drops = [
        e.at_s
        for before, e in zip(proof.evaluations, proof.evaluations[1:], strict=False)
        if e.decision.replicas < before.decision.replicas
    ]
    # Held at the peak for the whole scale-down window after its last recommendation, then down
    # to one pod once the window has passed the last recommendation above it.
    assert drops and drops[0] >= last_high + window - scaling_proof.PERIOD_S, (drops, last_high)
    low = [e for e in proof.evaluations if e.at_s > last_busy and e.decision.replicas == 1]
    assert low and low[0].at_s <= last_busy + window + 2 * scaling_proof.PERIOD_S
    assert proof.evaluations[-1].decision.replicas == proof.spec["minReplicaCount"] == 1
