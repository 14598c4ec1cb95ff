"""Publishing a new model version while the server is under load, and counting what failed.

Creates `ModelStore` (the real path: ``python -m model publish`` to an S3 endpoint, then
``python -m serving.sync --once`` into the server's model directory, both as subprocesses, the
same commands the cluster runs) and `run_rollout`, which keeps a steady closed-loop load on the
server while a new version goes through that path, and reports every failed or wrong answer and
when the new version started answering.

`copy_in_atomically` is the other delivery (``--delivery copy``): the version directory is copied
beside the target under a hidden name and renamed into place, which is what the sync agent does
after verifying a download. The result says which was used.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from devtools.bench.load import LoadResult, run_load
from devtools.processes import LOCAL_AWS_ENV, REPO, local_aws_env

__all__ = ["ModelStore", "RolloutResult", "copy_in_atomically", "run_rollout"]


class ModelStore:
    """A moto S3 server on loopback with one bucket, and the publish/sync commands against it."""

    def __init__(self, workdir: Path, prefix: str = "models") -> None:
        from moto.server import ThreadedMotoServer

        # moto's werkzeug server logs every request; the benchmark's output is its figures.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.bucket = f"bench-{uuid.uuid4().hex[:10]}"
        self.uri = f"s3://{self.bucket}/{prefix}"
        self._workdir = workdir
        self._env = local_aws_env()
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=LOCAL_AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        )
        s3.create_bucket(Bucket=self.bucket)

    def close(self) -> None:
        self._server.stop()

    def publish(self, export_version_dir: Path) -> float:
        """``python -m model publish``; returns seconds taken."""
        return self._run(
            "publish",
            [
                "-m",
                "model",
                "publish",
                "--export",
                str(export_version_dir),
                "--store",
                self.uri,
                "--endpoint-url",
                self.endpoint,
            ],
        )

    def sync_once(self, dest: Path, model: str) -> float:
        """``python -m serving.sync --once`` into `dest`; returns seconds taken."""
        return self._run(
            "sync",
            [
                "-m",
                "serving.sync",
                "--source",
                self.uri,
                "--dest",
                str(dest),
                "--model",
                model,
                "--once",
                "--endpoint-url",
                self.endpoint,
            ],
        )

    def _run(self, what: str, args: list[str]) -> float:
        began = time.perf_counter()
        log = self._workdir / f"{what}.log"
        with log.open("ab") as handle:
            result = subprocess.run(
                [sys.executable, *args],
                cwd=REPO,
                env=self._env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=600,
                check=False,
            )
        if result.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"{what} exited with {result.returncode}:\n{tail}")
        return time.perf_counter() - began


def copy_in_atomically(source_version_dir: Path, base_path: Path, version: int) -> float:
    """Copy a version under a hidden name beside the target, then rename it into place."""
    began = time.perf_counter()
    staging = base_path / f".incoming-{version}-{uuid.uuid4().hex[:8]}"
    shutil.copytree(source_version_dir, staging)
    os.rename(staging, base_path / str(version))
    return time.perf_counter() - began


@dataclass(frozen=True)
class RolloutResult:
    method: str
    old_version: int
    new_version: int
    load: LoadResult
    wrong_answers: int
    deliver_s: float  # publish + sync (or copy) time
    # Both measured from the moment the delivery finished (the version is whole on disk):
    first_new_answer_s: float | None  # until the first answer by the new version
    last_old_answer_s: float | None  # until the last answer by the old version
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> int:
        return self.load.failures + self.wrong_answers


def run_rollout(
    make_client: Callable[[], object],
    model: str,
    images: np.ndarray,
    expected_classes: np.ndarray,
    deliver: Callable[[], float],
    *,
    method: str,
    old_version: int,
    new_version: int,
    concurrency: int,
    before_s: float,
    after_s: float,
    settle_timeout_s: float = 120.0,
) -> RolloutResult:
    """Load the server; after `before_s` deliver the new version; stop `after_s` after it serves.

    Every answer is checked against `expected_classes` (both versions hold the same weights), so
    a version that answered before it was whole would show up as a wrong answer, not only as an
    error. The run ends `after_s` seconds after the first answer from `new_version`, or
    `settle_timeout_s` after the delivery if that never comes.
    """
    first_seen: dict[int | None, float] = {}
    last_seen: dict[int | None, float] = {}
    wrong = [0]
    lock = threading.Lock()
    delivery: dict[str, float] = {}
    done = threading.Event()
    errors: list[str] = []

    def make_call(index: int) -> Callable[[], object]:
        client = make_client()
        counter = [index]

        def call() -> object:
            i = counter[0] % len(images)
            counter[0] += 1
            prediction = client.predict(model, images[i : i + 1])  # type: ignore[attr-defined]
            now = time.perf_counter()
            version = prediction.model_version
            first_seen.setdefault(version, now)
            last_seen[version] = now
            if int(prediction.classes[0]) != int(expected_classes[i]):
                with lock:
                    wrong[0] += 1
            return version

        return call

    def orchestrate() -> None:
        time.sleep(before_s)
        delivery["start"] = time.perf_counter()
        try:
            delivery["took"] = deliver()
        except Exception as exc:  # reported in the result; the load still stops cleanly
            errors.append(f"delivery failed: {exc}")
        finally:
            deadline = time.perf_counter() + settle_timeout_s
            while new_version not in first_seen and time.perf_counter() < deadline:
                time.sleep(0.05)
            time.sleep(after_s)
            done.set()

    conductor = threading.Thread(target=orchestrate, name="rollout", daemon=True)
    total = before_s + settle_timeout_s + after_s + 600
    result_box: list[LoadResult] = []

    def load() -> None:
        result_box.append(
            run_load(make_call, concurrency=concurrency, duration_s=total, stop_event=done)
        )

    loader = threading.Thread(target=load, name="rollout-load", daemon=True)
    loader.start()
    conductor.start()
    conductor.join()
    loader.join()
    start = delivery.get("start")
    if start is not None:
        start += delivery.get("took", 0.0)
    notes = list(errors)
    if new_version not in first_seen:
        notes.append(f"version {new_version} never answered within {settle_timeout_s:g}s")
    return RolloutResult(
        method=method,
        old_version=old_version,
        new_version=new_version,
        load=result_box[0],
        wrong_answers=wrong[0],
        deliver_s=delivery.get("took", float("nan")),
        first_new_answer_s=(first_seen[new_version] - start)
        if start is not None and new_version in first_seen
        else None,
        last_old_answer_s=(last_seen[old_version] - start)
        if start is not None and old_version in last_seen
        else None,
        notes=tuple(notes),
    )
