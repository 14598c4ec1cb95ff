"""Helpers for the model-sync agent tests: publishing versions, a cuttable S3 proxy, a watcher."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from contracts.store import (
    FileEntry,
    StoreLocation,
    VersionManifest,
    content_prefix,
    parse_version_dir,
)

PREFIX = "models"


def publish(
    s3,
    bucket: str,
    name: str,
    version: int,
    files: Mapping[str, bytes],
    *,
    commit: bool = True,
    manifest_files: Mapping[str, bytes] | None = None,
) -> VersionManifest:
    """Write a version's objects, then (if `commit`) its manifest, as `model publish` does.

    `manifest_files` lets a test describe different content in the manifest than what is stored
    (a corrupted object with the right size).
    """
    location = StoreLocation(bucket, PREFIX)
    prefix = location.version_prefix(name, version)
    described = manifest_files or files
    for path, data in files.items():
        s3.put_object(Bucket=bucket, Key=prefix + path, Body=data)
    manifest = VersionManifest(
        model=name,
        version=version,
        created=datetime.now(UTC).isoformat(),
        files=tuple(
            FileEntry(path, len(data), hashlib.sha256(data).hexdigest())
            for path, data in sorted(described.items())
        ),
    )
    if commit:
        s3.put_object(
            Bucket=bucket, Key=location.manifest_key(name, version), Body=manifest.to_json()
        )
    return manifest


def small_model(version: int) -> dict[str, bytes]:
    """A few files laid out like a SavedModel, with content that differs per version."""
    seed = f"v{version}".encode()
    return {
        "saved_model.pb": seed * 100,
        "variables/variables.index": seed * 10,
        "variables/variables.data-00000-of-00001": os.urandom(4096) + seed,
        "assets.extra/tf_serving_warmup_requests": seed * 5,
    }


class FaultProxy:
    """A TCP proxy to the S3 endpoint that a test can cut: an outage mid-download, for real.

    `cut()` resets every open connection and refuses new ones until `restore()`; with
    `slow_bytes_per_s` it throttles downstream bytes so a test can act mid-transfer.
    """

    def __init__(self, upstream: str, slow_bytes_per_s: int | None = None) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.slow = slow_bytes_per_s
        self.down = threading.Event()
        self.closed = threading.Event()
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.down.is_set():
                self._reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                self._reset(client)
                continue
            with self.lock:
                self.conns += [client, server]
            threading.Thread(target=self._pump, args=(client, server, None), daemon=True).start()
            threading.Thread(
                target=self._pump, args=(server, client, self.slow), daemon=True
            ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, rate: int | None) -> None:
        try:
            while data := src.recv(16384 if rate is None else min(16384, max(1024, rate // 20))):
                if self.down.is_set():
                    break
                dst.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        finally:
            self._reset(src)
            self._reset(dst)

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        try:
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            sock.close()
        except OSError:
            pass

    def cut(self) -> None:
        self.down.set()
        with self.lock:
            conns, self.conns = self.conns, []
        for sock in conns:
            self._reset(sock)

    def restore(self) -> None:
        self.down.clear()

    def close(self) -> None:
        self.closed.set()
        self.cut()
        self.listener.close()
        self.thread.join(timeout=2)


class Watcher:
    """Polls DIR/NAME as fast as it can and records any integer-named directory that is not
    exactly a complete version (every file present with its full content)."""

    def __init__(self, model_dir: Path, expected: Mapping[int, Mapping[str, bytes]]) -> None:
        self.model_dir = model_dir
        self.expected = expected
        self.violations: list[str] = []
        self.seen: set[int] = set()
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.scans += 1
            try:
                entries = list(os.scandir(self.model_dir))
            except FileNotFoundError:
                continue
            for entry in entries:
                version = parse_version_dir(entry.name)
                if version is None:
                    continue
                self.seen.add(version)
                self._check(Path(entry.path), version)

    def _check(self, path: Path, version: int) -> None:
        files = self.expected.get(version)
        if files is None:
            self.violations.append(f"unexpected version {version}")
            return
        for rel, data in files.items():
            try:
                content = (path / rel).read_bytes()
            except FileNotFoundError:
                if path.exists():  # not a removal racing the scan: a missing file
                    self.violations.append(f"{version}: {rel} missing")
                return
            if content != data:
                self.violations.append(f"{version}: {rel} has {len(content)} wrong bytes")

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def publish_content(
    s3, bucket: str, name: str, version: int, files: Mapping[str, bytes], *, force: bool = False
) -> VersionManifest:
    """Publish as `model publish` does today: files under the content prefix, then ONE
    conditional manifest PUT (If-None-Match: * for a new version, If-Match for `force`)."""
    location = StoreLocation(bucket, PREFIX)
    manifest = VersionManifest(
        model=name,
        version=version,
        created=datetime.now(UTC).isoformat(),
        files=tuple(
            FileEntry(path, len(data), hashlib.sha256(data).hexdigest())
            for path, data in sorted(files.items())
        ),
    )
    prefix = content_prefix(location, manifest)
    for path, data in files.items():
        s3.put_object(Bucket=bucket, Key=prefix + path, Body=data)
    key = location.manifest_key(name, version)
    condition = {"IfNoneMatch": "*"}
    if force:
        condition = {"IfMatch": s3.head_object(Bucket=bucket, Key=key)["ETag"]}
    s3.put_object(Bucket=bucket, Key=key, Body=manifest.to_json(), **condition)
    return manifest


class FakeModelStatus:
    """TF Serving's REST model status (GET /v1/models/<name>) with per-version states a test
    sets: ``states[version] = ("AVAILABLE", "OK")`` or ``("END", "DATA_LOSS")``. Like TF
    Serving it answers 200 whatever the state, and 404 for a model it does not know."""

    def __init__(self, name: str) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.states: dict[int, tuple[str, str]] = {}
        self.requests = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.requests += 1
                if self.path != f"/v1/models/{name}" or not fake.states:
                    body, code = {"error": f"Servable not found for request: {self.path}"}, 404
                else:
                    body, code = (
                        {
                            "model_version_status": [
                                {
                                    "version": str(v),
                                    "state": state,
                                    "status": {"error_code": err, "error_message": ""},
                                }
                                for v, (state, err) in sorted(fake.states.items())
                            ]
                        },
                        200,
                    )
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
