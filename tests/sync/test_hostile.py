"""Issue 14: the agent against hostile store content and faults (moto on loopback, in-process).

Each test is one finding of the attack run: the agent must log it, record it in its status and
metrics, back off and keep serving what it has, never exit.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from contracts.store import MANIFEST_FORMAT, MAX_MANIFEST_BYTES, StoreLocation
from serving.sync import status as status_mod
from serving.sync.cli import main
from tests.sync.helpers import (
    PREFIX,
    FakeModelStatus,
    publish,
    publish_content,
    small_model,
)
from tests.sync.test_agent import NAME, make_agent, running, versions, wait_for

pytestmark = pytest.mark.hostile


def failures(agent, reason: str) -> float:
    return agent.metrics.registry.get_sample_value(
        "tfserving_sync_failures_total", {"reason": reason}
    )


def put_manifest(s3, bucket: str, version: int, body: bytes) -> None:
    key = StoreLocation(bucket, PREFIX).manifest_key(NAME, version)
    s3.put_object(Bucket=bucket, Key=key, Body=body)


def deep_manifest(version: int) -> bytes:
    # ~200 KB nested 100,000 arrays deep: json.loads would raise RecursionError.
    return (
        b'{"format": "' + MANIFEST_FORMAT.encode() + b'", "model": "' + NAME.encode() + b'", '
        b'"version": ' + str(version).encode() + b', "created": "x", "files": []'
        b', "metrics": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    )


def nul_manifest(version: int) -> bytes:
    body = {
        "format": MANIFEST_FORMAT,
        "model": NAME,
        "version": version,
        "created": "x",
        "files": [{"path": "saved_model.pb\x00evil", "size": 1, "sha256": "0" * 64}],
    }
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    "hostile", [deep_manifest, nul_manifest], ids=["nested-100000-deep", "nul-in-path"]
)
def test_hostile_manifest_is_recorded_and_skipped_in_loop_and_once(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path, hostile
) -> None:
    publish(s3, bucket, NAME, 1, small_model(1))
    put_manifest(s3, bucket, 2, hostile(2))
    dest = tmp_path / "models"
    agent = make_agent(moto_endpoint, bucket, dest)
    assert agent.run_once() == 0  # init mode: v1 is good, v2 recorded, exit 0
    assert versions(dest) == {1}
    status = json.loads((dest / "status.json").read_text())
    assert "2" in status["models"][NAME]["store_problems"]
    assert failures(agent, "manifest") == 1
    with running(make_agent(moto_endpoint, bucket, dest)) as looping:
        wait_for(lambda: looping.metrics.last_success._value.get() > 0, what="a listing")
        time.sleep(0.6)  # a few more polls at --interval 0.2
        assert versions(dest) == {1}
        assert failures(looping, "manifest") == 1  # counted once, not every poll


def test_oversized_manifest_is_refused_without_downloading_it(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path
) -> None:
    publish(s3, bucket, NAME, 1, small_model(1))
    # 52 MB, as in the attack run (a valid shape: one long string).
    put_manifest(s3, bucket, 2, b'{"pad": "' + b"x" * (52 * 1024 * 1024) + b'"}')
    gets: list[str] = []
    agent = make_agent(moto_endpoint, bucket, tmp_path / "models")
    agent.s3.meta.events.register(
        "before-parameter-build.s3.GetObject", lambda params, **_: gets.append(params["Key"])
    )
    assert agent.run_once() == 0
    assert not [k for k in gets if k.endswith("/2/manifest.json")]
    problem = agent.problems[NAME][2]
    assert f"over the {MAX_MANIFEST_BYTES}-byte limit" in problem


def test_manifests_are_fetched_again_only_when_they_change(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path
) -> None:
    for version in (1, 2, 3):
        publish(s3, bucket, NAME, version, small_model(version))
    gets: list[str] = []
    agent = make_agent(moto_endpoint, bucket, tmp_path / "models", policy="all")
    agent.s3.meta.events.register(
        "before-parameter-build.s3.GetObject", lambda params, **_: gets.append(params["Key"])
    )
    agent.prepare()
    for _ in range(5):
        assert agent.list_store()
    assert sum(k.endswith("manifest.json") for k in gets) == 3  # once each, not 15
    publish_content(s3, bucket, NAME, 3, small_model(33), force=True)
    assert agent.list_store()
    assert sum(k.endswith("/3/manifest.json") for k in gets) == 2  # the changed one, once more


def test_versions_above_int64_are_ignored(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path
) -> None:
    publish(s3, bucket, NAME, 1, small_model(1))
    location = StoreLocation(bucket, PREFIX)
    huge = f"{location.model_prefix(NAME)}9223372036854775808/"
    s3.put_object(Bucket=bucket, Key=huge + "saved_model.pb", Body=b"x")
    s3.put_object(Bucket=bucket, Key=huge + "manifest.json", Body=b"{}")
    dest = tmp_path / "models"
    agent = make_agent(moto_endpoint, bucket, dest)
    assert agent.run_once() == 0
    assert versions(dest) == {1}
    assert set(agent.committed[NAME]) == {1}


def test_a_full_disk_for_the_status_file_is_survived(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(s3, bucket, NAME, 1, small_model(1))

    def enospc(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(status_mod, "write_atomic", enospc)
    dest = tmp_path / "models"
    # --once (init container): exit 0, the version is in place.
    argv = ["--source", f"s3://{bucket}/{PREFIX}", "--dest", str(dest), "--model", NAME]
    argv += ["--endpoint-url", moto_endpoint, "--status-file", str(tmp_path / "status.json")]
    assert main([*argv, "--once"]) == 0
    assert versions(dest) == {1}
    # The loop: keeps syncing v2 and counts the failed writes.
    with running(make_agent(moto_endpoint, bucket, dest)) as agent:
        publish(s3, bucket, NAME, 2, small_model(2))
        wait_for(lambda: versions(dest) == {1, 2}, what="v2 in place beside v1")
        assert failures(agent, "status_file") >= 1


def test_once_serves_what_is_on_disk_when_the_store_is_unreachable(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path
) -> None:
    publish(s3, bucket, NAME, 1, small_model(1))
    dest = tmp_path / "models"
    argv = ["--source", f"s3://{bucket}/{PREFIX}", "--dest", str(dest), "--model", NAME]
    assert main([*argv, "--endpoint-url", moto_endpoint, "--once"]) == 0
    # S3 gone (nothing listens on port 9): the good version on disk still starts the pod.
    offline = [*argv, "--endpoint-url", "http://127.0.0.1:9", "--once"]
    assert main([*offline, "--max-attempts", "1"]) == 0
    assert versions(dest) == {1}


def test_an_unexpected_error_in_a_cycle_does_not_end_the_loop(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(s3, bucket, NAME, 1, small_model(1))
    dest = tmp_path / "models"
    agent = make_agent(moto_endpoint, bucket, dest)
    calls = {"n": 0}
    real = agent.converge

    def flaky() -> None:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise RecursionError("maximum recursion depth exceeded")
        real()

    monkeypatch.setattr(agent, "converge", flaky)
    with running(agent):
        wait_for(lambda: versions(dest) == {1}, what="v1 after two failed cycles")
    assert failures(agent, "internal") == 2


@pytest.fixture
def server():
    fake = FakeModelStatus(NAME)
    yield fake
    fake.close()


def test_old_version_retired_only_once_the_server_reports_the_successor_available(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path, server: FakeModelStatus
) -> None:
    publish(s3, bucket, NAME, 1, small_model(1))
    dest = tmp_path / "models"
    server.states = {1: ("AVAILABLE", "OK")}
    with running(make_agent(moto_endpoint, bucket, dest, tfserving_url=server.url)) as agent:
        wait_for(lambda: versions(dest) == {1}, what="v1")
        publish(s3, bucket, NAME, 2, small_model(2))
        wait_for(lambda: versions(dest) == {1, 2}, what="v2 next to v1")
        server.states = {1: ("AVAILABLE", "OK"), 2: ("LOADING", "OK")}
        seen = server.requests
        wait_for(lambda: server.requests > seen + 3, what="polls while v2 loads")
        assert versions(dest) == {1, 2}  # not retired while its successor loads
        assert agent.status.snapshot()["models"][NAME]["waiting_for_server"] == [2]
        server.states = {1: ("AVAILABLE", "OK"), 2: ("AVAILABLE", "OK")}
        wait_for(lambda: versions(dest) == {2}, what="v1 retired after v2 AVAILABLE")
        assert (
            agent.metrics.registry.get_sample_value(
                "tfserving_sync_latest_version_served", {"model": NAME}
            )
            == 2
        )


def test_a_version_the_server_cannot_load_never_replaces_the_last_good_one(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path, server: FakeModelStatus
) -> None:
    publish(s3, bucket, NAME, 1, small_model(1))
    dest = tmp_path / "models"
    server.states = {1: ("AVAILABLE", "OK")}
    agent = make_agent(moto_endpoint, bucket, dest, tfserving_url=server.url, max_backoff=30)
    with running(agent):
        wait_for(lambda: versions(dest) == {1}, what="v1")
        # A truncated variables shard: TF Serving's load fails with DATA_LOSS.
        publish(s3, bucket, NAME, 2, small_model(2))
        wait_for(lambda: 2 in versions(dest), what="v2 fetched")
        server.states = {1: ("AVAILABLE", "OK"), 2: ("END", "DATA_LOSS")}
        wait_for(lambda: versions(dest) == {1}, what="v2 taken off the disk, v1 kept")
        time.sleep(0.5)
        assert versions(dest) == {1}  # the same files are not fetched again
        assert failures(agent, "not_loaded") == 1
        assert agent.status.snapshot()["models"][NAME]["not_loadable"] == {"2": "DATA_LOSS"}
        # Other files for v2 (publish --force) are worth another try.
        publish_content(s3, bucket, NAME, 2, small_model(22), force=True)
        server.states = {1: ("AVAILABLE", "OK"), 2: ("AVAILABLE", "OK")}
        wait_for(lambda: versions(dest) == {2}, what="the republished v2, v1 retired")


def test_a_forced_replacement_reaches_a_running_agent_and_swaps_atomically(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path
) -> None:
    old, new = small_model(1), small_model(11)
    publish_content(s3, bucket, NAME, 1, old)
    dest = tmp_path / "models"
    gaps: list[float] = []
    stop = threading.Event()

    def watch() -> None:  # TF Serving's view: version 1 must never be missing
        while not stop.is_set():
            if wait_started.is_set() and not (dest / NAME / "1" / "saved_model.pb").exists():
                gaps.append(time.monotonic())

    wait_started = threading.Event()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with running(make_agent(moto_endpoint, bucket, dest, interval=0.5)) as agent:
            wait_for(lambda: versions(dest) == {1}, what="v1")
            wait_started.set()
            started = time.monotonic()
            publish_content(s3, bucket, NAME, 1, new, force=True)
            target = dest / NAME / "1" / "saved_model.pb"
            wait_for(lambda: target.read_bytes() == new["saved_model.pb"], what="new content")
            elapsed = time.monotonic() - started
    finally:
        stop.set()
        watcher.join(timeout=5)
    assert elapsed < 0.5 + 5  # one poll interval plus a small download
    assert gaps == []
    assert (dest / NAME / "1" / "variables" / "variables.index").read_bytes() == new[
        "variables/variables.index"
    ]
    assert (
        agent.metrics.registry.get_sample_value(
            "tfserving_sync_versions_installed_total", {"model": NAME}
        )
        == 2
    )


def test_metrics_endpoint_lists_the_documented_names(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path
) -> None:
    publish(s3, bucket, NAME, 1, small_model(1))
    dest = tmp_path / "models"
    agent = make_agent(moto_endpoint, bucket, dest)
    server, port = agent.metrics.serve(0, "127.0.0.1")
    try:
        assert agent.run_once() == 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    exposed = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")}
    doc = (Path(__file__).resolve().parents[2] / "docs" / "model-store-and-sync.md").read_text()
    documented = set(re.findall(r"`(tfserving_sync_[a-z_]+)`", doc))
    assert exposed == documented
    assert f'tfserving_sync_versions_on_disk{{model="{NAME}"}} 1.0' in text
    downloaded = sum(len(v) for v in small_model(1).values())
    assert f'tfserving_sync_downloaded_bytes_total{{model="{NAME}"}} {float(downloaded)}' in text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_agent_process_stays_small_and_serves_metrics_amid_hostile_manifests(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path
) -> None:
    publish(s3, bucket, NAME, 1, small_model(1))
    put_manifest(s3, bucket, 2, b'{"pad": "' + b"x" * (52 * 1024 * 1024) + b'"}')
    put_manifest(s3, bucket, 3, deep_manifest(3))
    dest, port = tmp_path / "models", free_port()
    command = [sys.executable, "-m", "serving.sync", "--source", f"s3://{bucket}/{PREFIX}"]
    command += ["--dest", str(dest), "--model", NAME, "--endpoint-url", moto_endpoint]
    command += ["--interval", "0.2", "--metrics-port", str(port), "--health-host", "127.0.0.1"]
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    agent = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}/metrics"

        def scrape() -> str:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    return response.read().decode()
            except OSError:
                return ""

        wait_for(lambda: 'reason="manifest"} 2.0' in scrape(), what="both manifests refused")
        wait_for(lambda: versions(dest) == {1}, what="v1 in place")
        seen = scrape()
        time.sleep(1.0)  # five more polls
        assert agent.poll() is None, "the agent exited"
        assert 'tfserving_sync_failures_total{reason="manifest"} 2.0' in scrape()
        assert "tfserving_sync_manifest_downloads_total 2.0" in seen  # v1 and v3; never v2
        peak_kib = next(
            int(line.split()[1])
            for line in Path(f"/proc/{agent.pid}/status").read_text().splitlines()
            if line.startswith("VmHWM:")
        )
        assert peak_kib < 256 * 1024, f"peak RSS {peak_kib} KiB over the sidecar's 256 MiB"
    finally:
        agent.send_signal(signal.SIGTERM)
        _out, err = agent.communicate(timeout=20)
    assert agent.returncode == 0, err[-2000:]


def test_a_full_disk_at_start_up_is_survived(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.sync import local

    publish(s3, bucket, NAME, 1, small_model(1))
    dest = tmp_path / "models"
    assert make_agent(moto_endpoint, bucket, dest).run_once() == 0
    (dest / NAME / "1").rename(dest / NAME / ".incoming-1-0123456789abcdef")  # debris

    def enospc(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(local, "write_atomic", enospc)
    agent = make_agent(moto_endpoint, bucket, dest)
    assert agent.run_once() == 1  # nothing in place and no room for it: reported, not raised
    assert failures(agent, "disk_full") >= 1
