"""The sync agent against a real S3 endpoint (moto on loopback), in-process."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from contracts.store import StoreLocation
from contracts.tfconfig import ModelConfig, VersionPolicy, render_models_config
from serving.sync.agent import Agent, AgentConfig
from serving.sync.local import LEDGER_NAME
from serving.sync.status import StatusBoard
from tests.sync.helpers import PREFIX, FaultProxy, Watcher, publish, small_model

NAME = "mnist"


def client(endpoint: str):
    # Few botocore retries and short timeouts: the agent's own backoff is under test.
    config = Config(
        retries={"mode": "standard", "max_attempts": 2}, connect_timeout=1, read_timeout=2
    )
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=config)


def make_agent(
    endpoint: str, bucket: str, dest: Path, policy: str | None = "latest", **kw
) -> Agent:
    config = AgentConfig(
        source=StoreLocation(bucket, PREFIX),
        dest=dest,
        models=(NAME,),
        policy=None if policy is None else VersionPolicy.parse(policy),
        interval=kw.pop("interval", 0.2),
        retry_base=kw.pop("retry_base", 0.1),
        max_backoff=kw.pop("max_backoff", 0.5),
        **kw,
    )
    status = StatusBoard(dest / "status.json", config.source.uri, dest, config.models)
    return Agent(config, client(endpoint), status)


@contextmanager
def running(agent: Agent) -> Iterator[Agent]:
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        yield agent
    finally:
        agent.stop.set()
        thread.join(timeout=20)
        assert not thread.is_alive(), "agent did not stop"


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def versions(dest: Path) -> set[int]:
    root = dest / NAME
    return {int(p.name) for p in root.iterdir() if p.name.isdigit()} if root.exists() else set()


def hidden(dest: Path) -> list[str]:
    root = dest / NAME
    if not root.exists():  # the agent thread has not opened it yet
        return []
    return [p.name for p in root.iterdir() if p.name.startswith(".incoming-")]


def _model_status(agent: Agent) -> dict:
    return json.loads((agent.config.dest / "status.json").read_text())["models"][NAME]


def assert_content(dest: Path, version: int, files: dict[str, bytes]) -> None:
    root = dest / NAME / str(version)
    for rel, data in files.items():
        assert (root / rel).read_bytes() == data, rel
    listed = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert listed == set(files) | {"manifest.json"}


def test_initial_sync_and_status(moto_endpoint: str, s3, bucket: str, tmp_path: Path) -> None:
    models = {v: small_model(v) for v in (1, 2, 3)}
    for version, files in models.items():
        publish(s3, bucket, NAME, version, files)
    agent = make_agent(moto_endpoint, bucket, tmp_path, "latest:2")
    assert agent.run_once() == 0
    assert versions(tmp_path) == {2, 3}
    for version in (2, 3):
        assert_content(tmp_path, version, models[version])
    ledger = json.loads((tmp_path / NAME / LEDGER_NAME).read_text())
    assert ledger["versions"] == [2, 3]
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["ready"] is True
    model = status["models"][NAME]
    assert (model["available"], model["wanted"], model["policy"]) == ([2, 3], [2, 3], "latest:2")
    assert set(model["installed"]) == {"2", "3"} and model["fetching"] is None
    assert status["last_error"] is None and status["last_listing"]["ok"] is True


def test_new_version_while_running_and_old_removed(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path
) -> None:
    # Without --tfserving-url nothing proves a successor loads: the previous version stays
    # beside it (and the status says so); the one before goes.
    models = {v: small_model(v) for v in (1, 2, 3)}
    publish(s3, bucket, NAME, 1, models[1])
    with (
        Watcher(tmp_path / NAME, models) as watcher,
        running(make_agent(moto_endpoint, bucket, tmp_path)) as agent,
    ):
        wait_for(lambda: versions(tmp_path) == {1}, what="version 1")
        publish(s3, bucket, NAME, 2, models[2])
        wait_for(lambda: versions(tmp_path) == {1, 2}, what="version 2 beside 1")
        publish(s3, bucket, NAME, 3, models[3])
        wait_for(lambda: versions(tmp_path) == {2, 3}, what="version 3 beside 2, 1 removed")
        wait_for(lambda: _model_status(agent)["kept_without_proof"] == [2], what="status")
    assert watcher.violations == []
    assert watcher.seen == {1, 2, 3} and watcher.scans > 50
    assert_content(tmp_path, 3, models[3])
    assert_content(tmp_path, 2, models[2])
    assert hidden(tmp_path) == []


def test_version_without_manifest_is_ignored(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path
) -> None:
    publish(s3, bucket, NAME, 1, small_model(1))
    publish(s3, bucket, NAME, 2, small_model(2), commit=False)  # publish in progress
    agent = make_agent(moto_endpoint, bucket, tmp_path)
    assert agent.run_once() == 0
    assert versions(tmp_path) == {1}
    publish(s3, bucket, NAME, 2, small_model(2))  # now committed
    assert make_agent(moto_endpoint, bucket, tmp_path).run_once() == 0
    assert versions(tmp_path) == {1, 2}  # 1 kept: no server to prove 2 loads


def test_corrupted_object_never_exposed_old_kept(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path
) -> None:
    good = small_model(1)
    publish(s3, bucket, NAME, 1, good)
    assert make_agent(moto_endpoint, bucket, tmp_path).run_once() == 0
    stored = small_model(2)
    described = dict(stored)
    # Same size, different bytes: passes the listing check, fails the sha256 check.
    described["saved_model.pb"] = bytes(len(stored["saved_model.pb"]))
    publish(s3, bucket, NAME, 2, stored, manifest_files=described)
    agent = make_agent(moto_endpoint, bucket, tmp_path, max_attempts=3)
    with Watcher(tmp_path / NAME, {1: good}) as watcher:
        assert agent.run_once() == 0  # version 1 still serves
    assert watcher.violations == []
    assert versions(tmp_path) == {1}
    assert_content(tmp_path, 1, good)
    assert hidden(tmp_path) == []
    status = json.loads((tmp_path / "status.json").read_text())
    failed = status["models"][NAME]["failed"]["2"]
    assert failed["failures"] == 3
    assert "saved_model.pb: sha256 differs from manifest" in failed["error"]
    assert "failed verification" in status["last_error"]["message"]


def test_fallback_to_older_version_when_newest_is_broken(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path
) -> None:
    publish(s3, bucket, NAME, 1, small_model(1))
    files = small_model(2)
    publish(s3, bucket, NAME, 2, files, manifest_files={**files, "saved_model.pb": b"x" * 500})
    agent = make_agent(moto_endpoint, bucket, tmp_path, max_attempts=2)
    assert agent.run_once() == 0
    assert versions(tmp_path) == {1}


def test_s3_outage_mid_download_recovers_without_partial_dir(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path
) -> None:
    big = {
        "saved_model.pb": b"graph",
        "variables/variables.data-00000-of-00001": os.urandom(12 << 20),
    }
    publish(s3, bucket, NAME, 1, big)
    proxy = FaultProxy(moto_endpoint, slow_bytes_per_s=8 << 20)
    try:
        agent = make_agent(proxy.url, bucket, tmp_path)
        with Watcher(tmp_path / NAME, {1: big}) as watcher, running(agent):
            wait_for(lambda: hidden(tmp_path) and _fetched(agent) > (1 << 20), what="download")
            proxy.cut()
            wait_for(lambda: "download failed" in _last_error(agent), what="the failure")
            assert versions(tmp_path) == set()
            time.sleep(0.5)
            proxy.restore()
            wait_for(lambda: versions(tmp_path) == {1}, timeout=60, what="recovery")
        assert watcher.violations == []
        assert_content(tmp_path, 1, big)
        assert hidden(tmp_path) == []
    finally:
        proxy.close()


def _fetched(agent: Agent) -> int:
    fetching = agent.status.snapshot()["models"][NAME]["fetching"]
    return fetching["bytes"] if fetching else 0


def _last_error(agent: Agent) -> str:
    error = agent.status.snapshot()["last_error"]
    return error["message"] if error else ""


def test_listing_outage_is_survived(moto_endpoint: str, s3, bucket: str, tmp_path: Path) -> None:
    publish(s3, bucket, NAME, 1, small_model(1))
    proxy = FaultProxy(moto_endpoint)
    try:
        proxy.cut()
        agent = make_agent(proxy.url, bucket, tmp_path)
        with running(agent):
            wait_for(lambda: agent.list_failures >= 2, what="failed listings")
            assert "listing s3://" in _last_error(agent)
            proxy.restore()
            wait_for(lambda: versions(tmp_path) == {1}, what="sync after the outage")
            wait_for(lambda: agent.list_failures == 0, what="listing backoff reset")
    finally:
        proxy.close()


def test_policy_change_removes_old_versions_but_not_foreign_ones(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path
) -> None:
    for version in (1, 2, 3):
        publish(s3, bucket, NAME, version, small_model(version))
    assert make_agent(moto_endpoint, bucket, tmp_path, "all").run_once() == 0
    assert versions(tmp_path) == {1, 2, 3}
    foreign = tmp_path / NAME / "7"  # put there by hand: served, never touched
    foreign.mkdir()
    (foreign / "saved_model.pb").write_bytes(b"hand-made")
    # Without --tfserving-url the newest version below the wanted ones stays (1 here); one
    # above them goes, or `latest` would serve it.
    assert make_agent(moto_endpoint, bucket, tmp_path, "specific:2").run_once() == 0
    assert versions(tmp_path) == {1, 2, 7}
    assert make_agent(moto_endpoint, bucket, tmp_path, "latest").run_once() == 0
    assert versions(tmp_path) == {2, 3, 7}
    assert (foreign / "saved_model.pb").read_bytes() == b"hand-made"
    assert json.loads((tmp_path / NAME / LEDGER_NAME).read_text())["versions"] == [2, 3]


def test_rollback_by_deleting_from_store_keeps_a_version(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path
) -> None:
    publish(s3, bucket, NAME, 1, small_model(1))
    publish(s3, bucket, NAME, 2, small_model(2))
    assert make_agent(moto_endpoint, bucket, tmp_path).run_once() == 0
    assert versions(tmp_path) == {2}
    location = StoreLocation(bucket, PREFIX)
    s3.delete_object(Bucket=bucket, Key=location.manifest_key(NAME, 2))
    assert make_agent(moto_endpoint, bucket, tmp_path).run_once() == 0
    assert versions(tmp_path) == {1}
    # With nothing committed at all, the last good version stays.
    s3.delete_object(Bucket=bucket, Key=location.manifest_key(NAME, 1))
    assert make_agent(moto_endpoint, bucket, tmp_path, max_attempts=1).run_once() == 0
    assert versions(tmp_path) == {1}


def test_labels_in_models_config_are_fetched(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path
) -> None:
    for version in (1, 2, 3):
        publish(s3, bucket, NAME, version, small_model(version))
    config_file = tmp_path / "models.config"
    config_file.write_text(
        render_models_config(
            [
                ModelConfig(
                    NAME,
                    f"/models/{NAME}",
                    policy=VersionPolicy.latest(1),
                    labels={"stable": 1, "canary": 3},
                )
            ]
        )
    )
    agent = make_agent(moto_endpoint, bucket, tmp_path, policy=None, model_config_file=config_file)
    with running(agent):
        wait_for(lambda: versions(tmp_path) == {1, 3}, what="policy + labelled versions")
        # Move the stable label (as a ConfigMap update would): re-read without a restart.
        config_file.write_text(
            render_models_config([ModelConfig(NAME, f"/models/{NAME}", labels={"stable": 2})])
        )
        # 1 stays beside them: without --tfserving-url nothing proves its successors load.
        wait_for(lambda: versions(tmp_path) == {1, 2, 3}, what="label move")
    assert agent.status.snapshot()["models"][NAME]["labels"] == {"stable": 2}


def test_stale_staging_debris_is_cleaned_at_start(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path
) -> None:
    publish(s3, bucket, NAME, 1, small_model(1))
    debris = tmp_path / NAME / ".incoming-1-0123456789abcdef"
    debris.mkdir(parents=True)
    (debris / "saved_model.pb").write_bytes(b"half")
    keep = tmp_path / NAME / ".incoming-notours"  # not a name the agent creates
    keep.mkdir()
    assert make_agent(moto_endpoint, bucket, tmp_path).run_once() == 0
    assert not debris.exists() and keep.exists()
    assert versions(tmp_path) == {1}


def test_once_with_nothing_committed_fails(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path
) -> None:
    publish(s3, bucket, NAME, 1, small_model(1), commit=False)
    agent = make_agent(moto_endpoint, bucket, tmp_path, max_attempts=2)
    assert agent.run_once() == 1
    assert versions(tmp_path) == set()
    assert json.loads((tmp_path / "status.json").read_text())["ready"] is False


@pytest.mark.parametrize("policy", ["latest:2", "all"])
def test_no_partial_version_with_many_versions(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path, policy: str
) -> None:
    models = {v: small_model(v) for v in range(1, 6)}
    for version, files in models.items():
        publish(s3, bucket, NAME, version, files)
    with Watcher(tmp_path / NAME, models) as watcher:
        assert make_agent(moto_endpoint, bucket, tmp_path, policy).run_once() == 0
    assert watcher.violations == []
    assert versions(tmp_path) == VersionPolicy.parse(policy).wants(models)
