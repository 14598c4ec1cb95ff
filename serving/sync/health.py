"""Health endpoints for Kubernetes probes, and a TF Serving readiness check.

`HealthServer` (``--health-port``) answers, on a daemon thread:

- ``GET /healthz``  liveness: 200 while the sync loop's heartbeat is recent (it beats every few
  seconds while idle and on every download progress), 503 if it is stuck;
- ``GET /startupz`` 200 once every model has a version in place (the native sidecar's
  startupProbe: TF Serving starts only after it passes), else 503;
- ``GET /readyz``   as /startupz, and, with ``--tfserving-url``, TF Serving reports a version of
  every model ``AVAILABLE``;
- ``GET /status``   the status JSON.

TF Serving's ``/v1/models/<name>`` answers 200 whatever the state, and its image has no curl, so
readiness must look inside the body for ``"AVAILABLE"``: `tfserving_available` does that (also
used by ``python -m serving.sync probe``). Only the standard library is used, to keep the image
small.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .status import StatusBoard

STALL_SECONDS = 300.0


def tfserving_available(base_url: str, model: str, timeout: float = 2.0) -> tuple[bool, str]:
    """Whether TF Serving at `base_url` (REST) has a version of `model` AVAILABLE, and why not."""
    url = f"{base_url.rstrip('/')}/v1/models/{urllib.parse.quote(model, safe='')}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return False, f"{url}: HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return False, f"{url}: {exc}"
    states = [
        (str(s.get("version")), s.get("state"))
        for s in body.get("model_version_status", [])
        if isinstance(s, dict)
    ]
    if any(state == "AVAILABLE" for _version, state in states):
        return True, f"{model}: AVAILABLE"
    return False, f"{model}: no version AVAILABLE (states: {states or 'none'})"


def tfserving_states(base_url: str, model: str, timeout: float = 2.0) -> dict[int, tuple[str, str]]:
    """Every version TF Serving reports for `model`: (state, error code), e.g. ("AVAILABLE",
    "OK"), or ("END", "DATA_LOSS") for a version that failed to load.

    A model TF Serving does not know (404) has no versions: {}. Raises OSError or ValueError if
    the server does not answer or answers something unreadable.
    """
    url = f"{base_url.rstrip('/')}/v1/models/{urllib.parse.quote(model, safe='')}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.loads(response.read(1 << 20))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return {}
        raise OSError(f"{url}: HTTP {exc.code}") from exc
    if not isinstance(body, dict):
        raise ValueError(f"{url}: not a model status")
    states = {}
    for entry in body.get("model_version_status", []):
        if isinstance(entry, dict):
            try:
                status = entry.get("status")
                code = status.get("error_code", "OK") if isinstance(status, dict) else "OK"
                states[int(entry.get("version"))] = (str(entry.get("state")), str(code or "OK"))
            except (TypeError, ValueError):
                continue
    return states


def all_available(base_url: str, models: Sequence[str], timeout: float = 2.0) -> tuple[bool, str]:
    reasons = []
    for model in models:
        ok, reason = tfserving_available(base_url, model, timeout)
        if not ok:
            reasons.append(reason)
    return (not reasons), "; ".join(reasons) or "all models AVAILABLE"


class HealthServer:
    """The probe endpoints on a background thread; `close` stops it."""

    def __init__(
        self,
        status: StatusBoard,
        port: int,
        host: str = "0.0.0.0",
        tfserving_url: str | None = None,
        models: Sequence[str] = (),
    ) -> None:
        board, tfs, names = status, tfserving_url, tuple(models)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    age = board.heartbeat_age()
                    ok = age < STALL_SECONDS
                    self._send(200 if ok else 503, {"ok": ok, "heartbeat_age": round(age, 3)})
                elif path in ("/startupz", "/readyz"):
                    ok, reason = board.ready, "every model has a version in place"
                    if not ok:
                        reason = "waiting for a version of every model"
                    elif path == "/readyz" and tfs:
                        ok, reason = all_available(tfs, names)
                    self._send(200 if ok else 503, {"ok": ok, "reason": reason})
                elif path == "/status":
                    self._send(200, board.snapshot())
                else:
                    self._send(404, {"error": f"no such endpoint {path}"})

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = (json.dumps(body) + "\n").encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # probes every few seconds would drown the useful log lines

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sync-health", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
