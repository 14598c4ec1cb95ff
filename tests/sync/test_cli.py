"""The command line: exit codes, SIGTERM during a download, health endpoints and the probe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from serving.sync.backoff import Backoff, RetryTracker
from serving.sync.cli import main
from serving.sync.health import HealthServer, tfserving_available
from serving.sync.status import StatusBoard
from tests.sync.helpers import FaultProxy, publish, small_model

ROOT = Path(__file__).resolve().parents[2]
NAME = "mnist"


def args(endpoint: str, bucket: str, dest: Path, *extra: str) -> list[str]:
    return [
        "--source",
        f"s3://{bucket}/models",
        "--dest",
        str(dest),
        "--model",
        NAME,
        "--endpoint-url",
        endpoint,
        *extra,
    ]


def test_once_exit_zero_when_a_version_is_in_place(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path
) -> None:
    publish(s3, bucket, NAME, 1, small_model(1))
    assert main(args(moto_endpoint, bucket, tmp_path, "--once")) == 0
    assert (tmp_path / NAME / "1" / "saved_model.pb").is_file()


def test_once_exit_one_when_nothing_can_be_made_available(
    moto_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    assert main(args(moto_endpoint, bucket, tmp_path, "--once", "--max-attempts", "1")) == 1
    # An unreachable endpoint is the same: no version, exit 1 (after bounded retries).
    code = main(
        args(
            "http://127.0.0.1:9",
            bucket,
            tmp_path,
            "--once",
            "--max-attempts",
            "2",
            "--max-backoff",
            "1",
        )
    )
    assert code == 1


@pytest.mark.parametrize(
    "extra",
    [
        ["--policy", "newest"],
        ["--interval", "0"],
        ["--interval", "soon"],
    ],
)
def test_bad_flags_exit_two(
    moto_endpoint: str, bucket: str, tmp_path: Path, extra: list[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(args(moto_endpoint, bucket, tmp_path, "--once", *extra))
    assert info.value.code == 2


def test_bad_source_or_dest_exit_two(moto_endpoint: str, tmp_path: Path) -> None:
    assert main(["--source", "http://x", "--dest", str(tmp_path), "--model", NAME, "--once"]) == 2
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(args(moto_endpoint, "bucket", blocker, "--once")) == 2
    assert main(args(moto_endpoint, "bucket", tmp_path, "--model", NAME, "--once")) == 2


def test_sigterm_during_download_exits_zero_without_debris(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path
) -> None:
    big = {
        "saved_model.pb": b"graph",
        "variables/variables.data-00000-of-00001": os.urandom(12 << 20),
    }
    publish(s3, bucket, NAME, 1, big)
    proxy = FaultProxy(moto_endpoint, slow_bytes_per_s=2 << 20)  # ~6 s for the whole version
    status_file = tmp_path / "status.json"
    dest = tmp_path / "models"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "serving.sync", *args(proxy.url, bucket, dest)]
    command += ["--interval", "1", "--status-file", str(status_file)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            fetching = _fetching(status_file)
            if fetching and fetching["bytes"] > 0:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the download never started")
        assert [p.name for p in (dest / NAME).iterdir() if p.name.startswith(".incoming-")]
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=15)
        stderr = process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        proxy.close()
    assert code == 0, stderr
    assert "SIGTERM received: stopping" in stderr
    assert list((dest / NAME).iterdir()) == []  # no staging debris, no partial version
    status = json.loads(status_file.read_text())
    assert status["models"][NAME]["available"] == [] and status["ready"] is False


def _fetching(status_file: Path) -> dict | None:
    try:
        return json.loads(status_file.read_text())["models"][NAME]["fetching"]
    except (FileNotFoundError, ValueError, KeyError):
        return None


# --- health endpoints and the TF Serving probe -----------------------------------------------


class FakeTFServing:
    """Answers /v1/models/<name> like TF Serving: always 200, the state is in the body."""

    def __init__(self) -> None:
        self.state = "LOADING"
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != f"/v1/models/{NAME}":
                    self.send_response(404)
                    self.end_headers()
                    return
                body = {
                    "model_version_status": [
                        {"version": "1", "state": fake.state, "status": {"error_code": "OK"}}
                    ]
                }
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tfs():
    fake = FakeTFServing()
    yield fake
    fake.close()


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_tfserving_probe_looks_for_available(tfs: FakeTFServing) -> None:
    ok, reason = tfserving_available(tfs.url, NAME)
    assert not ok and "LOADING" in reason
    tfs.state = "AVAILABLE"
    assert tfserving_available(tfs.url, NAME) == (True, f"{NAME}: AVAILABLE")
    assert tfserving_available(tfs.url, "other")[0] is False
    assert tfserving_available("http://127.0.0.1:9", NAME)[0] is False


def test_probe_subcommand(tfs: FakeTFServing, tmp_path: Path) -> None:
    probe = ["probe", "--tfserving-url", tfs.url, "--model", NAME]
    assert main(probe) == 1
    tfs.state = "AVAILABLE"
    assert main(probe) == 0
    status_file = tmp_path / "status.json"
    assert main(["probe", "--status-file", str(status_file)]) == 1  # missing file
    board = StatusBoard(status_file, "s3://b/m", tmp_path, [NAME])
    board.write()
    assert main(["probe", "--status-file", str(status_file)]) == 1
    board.model(NAME, available=[1])
    board.write()
    assert main([*probe, "--status-file", str(status_file)]) == 0
    with pytest.raises(SystemExit):
        main(["probe"])


def test_health_endpoints(tfs: FakeTFServing, tmp_path: Path) -> None:
    board = StatusBoard(None, "s3://b/m", tmp_path, [NAME])
    server = HealthServer(board, 0, "127.0.0.1", tfs.url, [NAME]).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert get(base + "/healthz")[0] == 200
        assert get(base + "/startupz")[0] == 503
        assert get(base + "/readyz")[0] == 503
        board.model(NAME, available=[1])
        assert get(base + "/startupz")[0] == 200
        code, body = get(base + "/readyz")
        assert code == 503 and "LOADING" in body["reason"]
        tfs.state = "AVAILABLE"
        assert get(base + "/readyz") == (200, {"ok": True, "reason": "all models AVAILABLE"})
        code, status = get(base + "/status")
        assert code == 200 and status["models"][NAME]["available"] == [1]
        assert get(base + "/nope")[0] == 404
    finally:
        server.close()


# --- backoff ----------------------------------------------------------------------------------


def test_backoff_is_exponential_bounded_and_jittered() -> None:
    backoff = Backoff(base=1.0, cap=10.0, jitter=0.5)
    assert [backoff.nominal(n) for n in range(6)] == [0.0, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert backoff.nominal(10_000) == 10.0
    assert backoff.delay(3, rand=lambda: 0.0) == 4.0
    assert backoff.delay(3, rand=lambda: 1.0) == 2.0
    with pytest.raises(ValueError):
        Backoff(base=2, cap=1)


def test_retry_tracker() -> None:
    tracker = RetryTracker(Backoff(1.0, 8.0, jitter=0.0))
    assert tracker.ready("v1", 0.0) and tracker.next_retry() is None
    state = tracker.failed("v1", "boom", now=100.0)
    assert (state.failures, state.retry_at, state.last_error) == (1, 101.0, "boom")
    assert not tracker.ready("v1", 100.5) and tracker.ready("v1", 101.0)
    assert tracker.failed("v1", "boom", now=101.0).retry_at == 103.0
    tracker.succeeded("v1")
    assert tracker.ready("v1", 0.0)
