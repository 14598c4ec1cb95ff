"""A reader that closes the pipe early (`... | head`) gets no traceback from the commands that print
a JSON document: the command stops quietly and exits 0. Run as the user runs them: a fresh process
whose stdout is a pipe nobody reads (its read end closed before the command writes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STATUS = {
    "model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
}


class _StatusHandler(BaseHTTPRequestHandler):
    """TF Serving's REST model status route, enough for `serving.client status`."""

    def do_GET(self) -> None:
        body = json.dumps(STATUS).encode()
        self.send_response(200 if self.path == "/v1/models/mnist" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def rest_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StatusHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _run_into_closed_pipe(argv: list[str]) -> subprocess.CompletedProcess[str]:
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `head` that has already exited
    try:
        return subprocess.run(
            [sys.executable, "-m", *argv],
            cwd=ROOT,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)


def test_client_status_into_a_closed_pipe_exits_0_without_a_traceback(rest_url: str) -> None:
    answer = _run_into_closed_pipe(
        ["serving.client", "status", "--model", "mnist", "--rest", rest_url, "--json"]
    )
    assert "Traceback" not in answer.stderr and "BrokenPipeError" not in answer.stderr, (
        answer.stderr
    )
    assert answer.returncode == 0, answer.stderr


def test_canary_decision_into_a_closed_pipe_exits_0_without_a_traceback() -> None:
    # Nothing listens on port 9: the gate decides `hold` and prints its JSON document.
    argv = ["ops.canary", "decide", "--prometheus-url", "http://127.0.0.1:9", "--model", "mnist"]
    answer = _run_into_closed_pipe(argv)
    assert "Traceback" not in answer.stderr and "BrokenPipeError" not in answer.stderr, (
        answer.stderr
    )
    assert answer.returncode == 0, answer.stderr
