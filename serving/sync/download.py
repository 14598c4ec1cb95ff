"""Bring one committed version from S3 into place: stage, stream, verify, rename.

Creates ``DEST/NAME/.incoming-<v>-<token>/`` with every file of the manifest (streamed through
s3transfer's TransferManager: ranged parallel GETs for large objects, bounded buffers, so memory
stays flat whatever the model size), plus a copy of ``manifest.json``; checks each file's size and
sha256 against the manifest; then renames the directory to ``DEST/NAME/<v>``. On any failure or
stop request the staging directory is removed and nothing is exposed.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.subscribers import BaseSubscriber

from contracts.store import (
    MANIFEST_NAME,
    IntegrityError,
    StoreLocation,
    VersionManifest,
    verify_local_tree,
)

from .errors import FetchError, StopRequested
from .local import ModelDir, fsync_dir

_log = logging.getLogger(__name__)
# Objects above 8 MiB are fetched as parallel 8 MiB ranges; a handful of threads saturates a
# pod's share of S3 bandwidth without buffering much (s3transfer bounds its in-memory queue).
TRANSFER = TransferConfig(
    multipart_threshold=8 * 1024 * 1024,
    multipart_chunksize=8 * 1024 * 1024,
    max_concurrency=4,
    max_io_queue=64,
    use_threads=True,
    preferred_transfer_client="classic",
)
_POLL = 0.05


def _wait(futures: list[Any], stop: threading.Event) -> None:
    """Wait for every transfer, cancelling all of them as soon as a stop is requested."""
    while not all(f.done() for f in futures):
        if stop.wait(_POLL):
            for future in futures:
                future.cancel()
            raise StopRequested("stop requested during download")
    for future in futures:
        future.result()  # re-raises the first transfer error


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def fetch_version(
    s3: Any,
    location: StoreLocation,
    manifest: VersionManifest,
    model_dir: ModelDir,
    stop: threading.Event,
    on_progress: Callable[[int], None] | None = None,
    prefix: str | None = None,
    replace: bool = False,
) -> Path:
    """Download, verify and install `manifest`'s version; return its final directory.

    `prefix` is where its files are (`contracts.store.CommittedVersion.prefix`; default the
    version prefix). With `replace`, an existing directory of that version is swapped for the new
    one in one step (a `publish --force` replacement). Raises `FetchError` (nothing exposed,
    staging removed) or `StopRequested`.
    """
    name, version = manifest.model, manifest.version
    try:
        free = shutil.disk_usage(model_dir.root).free
    except OSError as exc:
        raise FetchError(f"{name}/{version}: {model_dir.root}: {exc}", "disk") from exc
    if free < manifest.total_bytes:
        raise FetchError(
            f"{name}/{version}: needs {manifest.total_bytes} bytes, only {free} free in "
            f"{model_dir.root}; enlarge the volume (sizeLimit) or serve fewer versions",
            "disk_full",
        )
    prefix = prefix if prefix is not None else location.version_prefix(name, version)
    try:
        staging = model_dir.new_staging(version)
    except OSError as exc:
        raise FetchError(f"{name}/{version}: cannot stage: {exc}", _os_reason(exc)) from exc
    started = time.monotonic()
    try:
        lock = threading.Lock()
        received = 0

        def progress(amount: int) -> None:
            nonlocal received
            with lock:
                received += amount
                total = received
            if on_progress is not None:
                on_progress(total)

        with create_transfer_manager(s3, TRANSFER) as manager:
            futures = []
            for entry in manifest.files:
                target = staging / entry.path
                target.parent.mkdir(parents=True, exist_ok=True)
                futures.append(
                    manager.download(
                        location.bucket,
                        prefix + entry.path,
                        str(target),
                        subscribers=[_Progress(progress)],
                    )
                )
            _wait(futures, stop)
        (staging / MANIFEST_NAME).write_bytes(manifest.to_json())
        verify_local_tree(staging, manifest)
        _fsync_tree(staging)
        if stop.is_set():
            raise StopRequested("stop requested before install")
        final = model_dir.swap(staging, version) if replace else model_dir.install(staging, version)
    except StopRequested:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except IntegrityError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise FetchError(f"{name}/{version} failed verification: {exc}", "integrity") from exc
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise FetchError(
            f"{name}/{version}: writing failed: {describe_error(exc)}", _os_reason(exc)
        ) from exc
    except (BotoCoreError, ClientError, CancelledError, ValueError) as exc:
        # ValueError: what the file system layer raises for a name it cannot represent.
        shutil.rmtree(staging, ignore_errors=True)
        raise FetchError(f"{name}/{version}: download failed: {describe_error(exc)}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _log.info(
        "installed %s/%s (%d files, %d bytes) in %.2fs",
        name,
        version,
        len(manifest.files),
        manifest.total_bytes,
        time.monotonic() - started,
    )
    return final


def _os_reason(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk_full"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO, errno.ENAMETOOLONG):
        return "disk"
    return "download"  # a socket error surfacing as OSError


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', exc)}"
    return f"{type(exc).__name__}: {exc}"


class _Progress(BaseSubscriber):
    """Forwards s3transfer's byte counts to the agent's status."""

    def __init__(self, callback: Callable[[int], None]) -> None:
        self._callback = callback

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        self._callback(bytes_transferred)
