"""The agent's status: what each model has, what is being fetched, the last error.

Written as JSON to ``--status-file`` atomically after every change of substance (readers never see
a half-written file), served by the health endpoint, and read by ``probe status``. Shape::

    {"format": "tfserving-eks/sync-status/v1", "pid", "started", "updated", "heartbeat",
     "source", "dest", "ready",
     "last_listing": {"at", "ok"}, "last_error": {"at", "message"} | null,
     "models": {NAME: {"policy", "wanted", "available", "owned", "labels", "served",
                       "store_problems": {VERSION: reason}, "waiting_for_server": [VERSION],
                       "not_loadable": {VERSION: TF Serving's error code or LOAD_TIMEOUT},
                       "kept_without_proof": [VERSION],
                       "fetching": {"version", "bytes", "total", "started"} | null,
                       "failed": {VERSION: {"error", "failures", "retry_at"}},
                       "installed": {VERSION: at}, "removed": {VERSION: at}}}}

Times are UTC ISO 8601; ``heartbeat`` is refreshed by the loop and by download progress, so a
stuck agent can be told from a busy one. A status file that cannot be written (a full or
read-only volume) is logged and counted (`on_write_error`), never fatal: the agent keeps syncing.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .local import write_atomic

STATUS_FORMAT = "tfserving-eks/sync-status/v1"
_log = logging.getLogger(__name__)


def utc(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts, UTC).isoformat(
        timespec="milliseconds"
    )


class StatusBoard:
    """Thread-safe status shared by the sync loop, the health server and the status file."""

    def __init__(self, path: Path | None, source: str, dest: Path, models: Iterable[str]) -> None:
        self._path = path
        self.on_write_error: Callable[[OSError], None] | None = None
        self._write_error: str | None = None
        self._lock = threading.Lock()
        self.heartbeat_monotonic = time.monotonic()
        now = utc()
        self._data: dict[str, Any] = {
            "format": STATUS_FORMAT,
            "pid": os.getpid(),
            "started": now,
            "updated": now,
            "heartbeat": now,
            "source": source,
            "dest": str(dest),
            "ready": False,
            "last_listing": None,
            "last_error": None,
            "models": {
                name: {
                    "policy": None,
                    "wanted": [],
                    "available": [],
                    "owned": [],
                    "labels": {},
                    "served": None,
                    "store_problems": {},
                    "waiting_for_server": [],
                    "not_loadable": {},
                    "kept_without_proof": [],
                    "fetching": None,
                    "failed": {},
                    "installed": {},
                    "removed": {},
                }
                for name in models
            },
        }

    # --- updates (each takes the lock; `write` persists) ---------------------------------------

    def model(self, name: str, **fields: Any) -> None:
        with self._lock:
            self._data["models"][name].update(fields)
            self._refresh_ready()

    def event(self, name: str, kind: str, version: int) -> None:
        with self._lock:
            self._data["models"][name][kind][str(version)] = utc()

    def fetching(self, name: str, version: int | None, total: int = 0) -> None:
        with self._lock:
            self._data["models"][name]["fetching"] = (
                None
                if version is None
                else {"version": version, "bytes": 0, "total": total, "started": utc()}
            )

    def progress(self, name: str, received: int) -> None:
        with self._lock:
            fetching = self._data["models"][name]["fetching"]
            if fetching is not None:
                fetching["bytes"] = received
        self.beat()

    def listing(self, ok: bool) -> None:
        with self._lock:
            self._data["last_listing"] = {"at": utc(), "ok": ok}

    def error(self, message: str | None) -> None:
        with self._lock:
            self._data["last_error"] = (
                None if message is None else {"at": utc(), "message": message}
            )

    def beat(self) -> None:
        self.heartbeat_monotonic = time.monotonic()

    def _refresh_ready(self) -> None:
        self._data["ready"] = all(m["available"] for m in self._data["models"].values())

    # --- reads ---------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            data = copy.deepcopy(self._data)
        data["heartbeat"] = utc(time.time() - (time.monotonic() - self.heartbeat_monotonic))
        return data

    @property
    def ready(self) -> bool:
        with self._lock:
            return bool(self._data["ready"])

    def heartbeat_age(self) -> float:
        return time.monotonic() - self.heartbeat_monotonic

    def write(self) -> None:
        with self._lock:
            self._data["updated"] = utc()
        if self._path is None:
            return
        body = json.dumps(self.snapshot(), indent=2, sort_keys=True) + "\n"
        try:
            write_atomic(self._path, body.encode())
        except OSError as exc:
            if str(exc) != self._write_error:  # log each new cause once, not every cycle
                _log.error("cannot write status file %s: %s (sync continues)", self._path, exc)
            self._write_error = str(exc)
            if self.on_write_error is not None:
                self.on_write_error(exc)
            return
        if self._write_error is not None:
            _log.info("status file %s written again", self._path)
            self._write_error = None
