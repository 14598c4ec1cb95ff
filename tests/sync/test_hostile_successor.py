"""Issue 27: the last good version stays until its successor is proven (hostile suite).

A successor TF Serving never reports AVAILABLE, whether it answers (stuck loading) or not (a
server in a crash loop), is marked failed after ``--load-timeout`` and taken off the disk, the
last good version staying; a ``--force`` repair of a version whose fetch failed is fetched at
the next listing, not after the failure's backoff. Loopback only: moto and a fake TF Serving
status endpoint.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from contracts.store import StoreLocation, content_prefix
from tests.sync.helpers import FakeModelStatus, publish, publish_content, small_model
from tests.sync.test_agent import NAME, make_agent, running, versions, wait_for

pytestmark = pytest.mark.hostile


def sample(agent, metric: str, **labels: str) -> float | None:
    return agent.metrics.registry.get_sample_value(metric, labels)


@pytest.fixture
def server():
    fake = FakeModelStatus(NAME)
    yield fake
    fake.close()


@pytest.mark.parametrize("answers", [True, False], ids=["stuck-loading", "not-answering"])
def test_a_successor_that_never_becomes_available_is_marked_failed_and_removed(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path, server: FakeModelStatus, answers: bool
) -> None:
    publish(s3, bucket, NAME, 1, small_model(1))
    dest = tmp_path / "models"
    server.states = {1: ("AVAILABLE", "OK")}
    url = server.url
    agent = make_agent(moto_endpoint, bucket, dest, tfserving_url=url, load_timeout=1.0)
    with running(agent):
        wait_for(lambda: versions(dest) == {1}, what="v1")
        wait_for(lambda: (NAME, 1) in agent.proven, what="v1 proven AVAILABLE")
        if answers:
            server.states = {1: ("AVAILABLE", "OK"), 2: ("LOADING", "OK")}
        else:
            server.close()  # TF Serving in a crash loop: its status answers nothing
        started = time.monotonic()
        publish(s3, bucket, NAME, 2, small_model(2))
        wait_for(lambda: 2 in versions(dest), what="v2 placed")
        wait_for(lambda: versions(dest) == {1}, timeout=10, what="v2 taken off, v1 kept")
        assert time.monotonic() - started >= 1.0
        time.sleep(0.5)
        assert versions(dest) == {1}  # the same files are not fetched again
    status = agent.status.snapshot()["models"][NAME]
    assert status["not_loadable"] == {"2": "LOAD_TIMEOUT"}
    assert sample(agent, "tfserving_sync_failures_total", reason="load_timeout") == 1
    assert sample(agent, "tfserving_sync_versions_not_loadable", model=NAME) == 1
    assert "not reported it AVAILABLE" in agent.status.snapshot()["last_error"]["message"]


def test_a_proven_version_is_not_timed_out(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path, server: FakeModelStatus
) -> None:
    publish(s3, bucket, NAME, 1, small_model(1))
    dest = tmp_path / "models"
    server.states = {1: ("AVAILABLE", "OK")}
    agent = make_agent(moto_endpoint, bucket, dest, tfserving_url=server.url, load_timeout=0.5)
    with running(agent):
        wait_for(lambda: (NAME, 1) in agent.proven, what="v1 proven")
        server.states = {1: ("LOADING", "OK")}  # e.g. TF Serving restarting
        seen = server.requests
        wait_for(lambda: server.requests > seen + 10, what="polls past the timeout")
        assert versions(dest) == {1}
    assert sample(agent, "tfserving_sync_failures_total", reason="load_timeout") == 0


def test_the_only_version_is_never_removed_for_a_timeout(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path, server: FakeModelStatus
) -> None:
    publish(s3, bucket, NAME, 1, small_model(1))
    dest = tmp_path / "models"
    server.states = {1: ("LOADING", "OK")}
    agent = make_agent(moto_endpoint, bucket, dest, tfserving_url=server.url, load_timeout=0.3)
    with running(agent):
        wait_for(lambda: versions(dest) == {1}, what="v1")
        seen = server.requests
        wait_for(lambda: server.requests > seen + 10, what="polls past the timeout")
        assert versions(dest) == {1}  # nothing to fall back to: kept, a restart may load it


def test_a_force_repair_is_fetched_at_the_next_listing_not_after_the_backoff(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path
) -> None:
    publish(s3, bucket, NAME, 1, small_model(1))
    manifest = publish_content(s3, bucket, NAME, 2, small_model(2))
    # Damage one uploaded file (same size, other bytes): every fetch fails its sha256 check.
    location = StoreLocation(bucket, "models")
    key = content_prefix(location, manifest) + "saved_model.pb"
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(b ^ 0xFF for b in data))
    dest = tmp_path / "models"
    # A backoff far longer than the test: only a repair picked up at a listing can make it.
    agent = make_agent(moto_endpoint, bucket, dest, interval=0.3, retry_base=120, max_backoff=300)
    with running(agent):
        wait_for(lambda: (NAME, 2) in agent.retries.states, what="v2's fetch failing")
        wait_for(lambda: versions(dest) == {1}, what="the fall-back to v1")
        started = time.monotonic()
        publish_content(s3, bucket, NAME, 2, small_model(22), force=True)
        wait_for(lambda: 2 in versions(dest), timeout=10, what="the repaired v2")
        assert time.monotonic() - started < 5
