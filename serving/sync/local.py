"""The agent's view of one model's local directory ``DEST/NAME/`` (TF Serving's base path).

Creates, inside ``DEST/NAME/``:

- ``<version>/``                     a complete, verified version (moved in with one rename);
- ``.incoming-<version>-<token>/``   a download in progress (hidden: TF Serving only loads
                                     directories whose names are integers);
- ``.sync-owned.json``               the ledger of versions this agent put there.

Why a ledger next to the versions rather than a marker file inside each one: a marker inside a
version would be a file TF Serving's SavedModel directory never had, and anyone copying a version
by hand could copy the marker with it and make the agent believe it owns (and may delete) it. The
ledger is written before the rename (an intent record) and pruned of versions that are not on disk
at start-up, so after a crash between the two steps the agent claims at most a version it was
about to write. Versions not in the ledger are served and counted but never removed.
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from contracts.store import (
    MANIFEST_NAME,
    ManifestError,
    VersionManifest,
    parse_manifest,
    parse_version_dir,
)

from .errors import SyncConfigError

LEDGER_NAME = ".sync-owned.json"
LEDGER_FORMAT = "tfserving-eks/sync-owned/v1"
STAGING_PREFIX = ".incoming-"
_STAGING = re.compile(r"^\.incoming-[1-9][0-9]*-[0-9a-f]{16}$")
_TMP = re.compile(r"^\.sync-owned\.json\.[0-9a-f]{16}\.tmp$")
_log = logging.getLogger(__name__)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` in one step (temp file in the same directory, fsync, rename)."""
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False if the
    kernel or file system cannot, so the caller falls back to two renames."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(a))


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class ModelDir:
    """One model's base directory and the agent's ownership ledger in it."""

    root: Path

    @classmethod
    def open(cls, dest: Path, name: str) -> ModelDir:
        root = dest / name
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SyncConfigError(f"cannot create model directory {root}: {exc}") from exc
        if not os.access(root, os.W_OK | os.X_OK):
            raise SyncConfigError(f"model directory {root} is not writable by this user")
        return cls(root)

    # --- what is on disk -----------------------------------------------------------------------

    def versions(self) -> set[int]:
        """Every version directory TF Serving would see here, whoever wrote it."""
        found = set()
        for entry in os.scandir(self.root):
            version = parse_version_dir(entry.name)
            if version is not None and entry.is_dir(follow_symlinks=False):
                found.add(version)
        return found

    def version_path(self, version: int) -> Path:
        return self.root / str(version)

    def new_staging(self, version: int) -> Path:
        path = self.root / f"{STAGING_PREFIX}{version}-{secrets.token_hex(8)}"
        path.mkdir()
        return path

    # --- ownership ledger ----------------------------------------------------------------------

    @property
    def ledger_path(self) -> Path:
        return self.root / LEDGER_NAME

    def owned(self) -> set[int]:
        try:
            body = json.loads(self.ledger_path.read_bytes())
        except FileNotFoundError:
            return set()
        except (OSError, ValueError) as exc:
            # An unreadable ledger means "owns nothing": the safe failure is to delete nothing.
            _log.error(
                "ignoring unreadable ledger %s (%s): no version will be removed",
                self.ledger_path,
                exc,
            )
            return set()
        if not isinstance(body, dict) or body.get("format") != LEDGER_FORMAT:
            _log.error("ignoring ledger %s of unknown format", self.ledger_path)
            return set()
        return {v for v in body.get("versions", []) if isinstance(v, int) and v > 0}

    def _write_ledger(self, versions: set[int]) -> None:
        body = {"format": LEDGER_FORMAT, "versions": sorted(versions)}
        write_atomic(self.ledger_path, (json.dumps(body, indent=2) + "\n").encode())

    def claim(self, version: int) -> None:
        self._write_ledger(self.owned() | {version})

    def release(self, version: int) -> None:
        owned = self.owned()
        if version in owned:
            self._write_ledger(owned - {version})

    # --- housekeeping --------------------------------------------------------------------------

    def clean_debris(self) -> list[str]:
        """Remove staging directories and ledger temp files a previous run left behind.

        Only names this module creates are touched. Ledger entries whose directory is gone are
        dropped, so a crash between claim and rename cannot make the agent own a foreign version.
        """
        removed = []
        for entry in os.scandir(self.root):
            if _STAGING.match(entry.name) and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(entry.name)
            elif _TMP.match(entry.name) and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(entry.name)
        owned = self.owned()
        present = owned & self.versions()
        if present != owned:
            self._write_ledger(present)
        return removed

    def install(self, staging: Path, version: int) -> Path:
        """Move a verified staging directory to ``<version>`` in one rename, claiming it first."""
        target = self.version_path(version)
        if target.exists():
            raise FileExistsError(f"{target} already exists; not replacing a version in place")
        self.claim(version)
        try:
            # rename(2) onto a missing name is atomic: TF Serving sees nothing or everything.
            os.rename(staging, target)
        except OSError:
            self.release(version)
            raise
        fsync_dir(self.root)
        return target

    def swap(self, staging: Path, version: int) -> Path:
        """Replace an existing ``<version>`` with a verified staging directory.

        One atomic exchange where the kernel allows it (TF Serving sees the old or the new
        directory, never none); otherwise the old one is hidden first, then the new renamed in.
        """
        target = self.version_path(version)
        if not target.exists():
            return self.install(staging, version)
        self.claim(version)
        if not exchange(staging, target):
            hidden = self.root / f"{STAGING_PREFIX}{version}-{secrets.token_hex(8)}"
            os.rename(target, hidden)
            os.rename(staging, target)
            staging = hidden
        fsync_dir(self.root)
        shutil.rmtree(staging, ignore_errors=True)  # now the old content
        return target

    def local_manifest(self, version: int) -> VersionManifest | None:
        """The manifest copy the agent wrote into ``<version>/``, or None if absent or bad."""
        path = self.version_path(version) / MANIFEST_NAME
        try:
            with open(path, "rb") as handle:
                data = handle.read(4 * 1024 * 1024 + 1)
            return parse_manifest(data, self.root.name, version)
        except (OSError, ManifestError):
            return None

    def remove(self, version: int) -> None:
        """Remove an owned version: hide it first (rename), then delete, then release it."""
        if version not in self.owned():
            raise PermissionError(f"version {version} in {self.root} was not written by this agent")
        # Renaming to a hidden name first means TF Serving never sees a half-deleted version.
        doomed = self.root / f"{STAGING_PREFIX}{version}-{secrets.token_hex(8)}"
        os.rename(self.version_path(version), doomed)
        self.release(version)
        shutil.rmtree(doomed, ignore_errors=True)
        fsync_dir(self.root)
