"""The model store: S3 layout and manifest format, shared by the writer and every reader.

`python -m model publish` writes versions with this module; the model-sync agent
(`serving.sync`) reads them with it. Keep it free of TensorFlow: the sync image ships only boto3.

Layout under a store location ``s3://BUCKET/PREFIX``::

    PREFIX/<name>/<version>/<path>               committed files of one version
    PREFIX/<name>/<version>/manifest.json        commit marker, written last
    PREFIX/<name>/.staging/<version>-<token>/    a publish in progress (never read by readers)

A version exists only when its manifest parses, names this model and version, and every file it
lists is present under the version prefix with the listed size. Readers check content (sha256)
after download with `verify_local_tree`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from contracts import rules
from contracts.rules import parse_version_dir

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "tfserving-eks/manifest/v1"
STAGING_DIR = ".staging"
_CHUNK = 1 << 20
_log = logging.getLogger(__name__)


class StoreError(Exception):
    """Base class of every model-store error."""


class StoreURIError(StoreError, ValueError):
    """A store location, model name or version is malformed."""


class ManifestError(StoreError):
    """A manifest is missing, unparsable, or disagrees with what is stored."""


class IntegrityError(StoreError):
    """A file's size or sha256 differs from its manifest entry, or files are missing or extra."""


class VersionExistsError(StoreError):
    """A committed version already exists and versions are immutable."""


def validate_model_name(name: str) -> str:
    """`rules.validate_model_name`, raising the store's own error type."""
    try:
        return rules.validate_model_name(name)
    except rules.RuleError as exc:
        raise StoreURIError(str(exc)) from None


def validate_version(version: int | str) -> int:
    """`rules.validate_version`, raising the store's own error type."""
    try:
        return rules.validate_version(version)
    except rules.RuleError as exc:
        raise StoreURIError(str(exc)) from None


@dataclass(frozen=True)
class StoreLocation:
    """Where a store lives: a bucket and a key prefix (no leading or trailing slash)."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, uri: str) -> StoreLocation:
        match = re.fullmatch(r"s3://([^/]+)(?:/(.*))?", uri.strip())
        if not match:
            raise StoreURIError(f"invalid store {uri!r}: expected s3://BUCKET[/PREFIX]")
        bucket, prefix = match.group(1), (match.group(2) or "").strip("/")
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
            raise StoreURIError(
                f"invalid bucket name {bucket!r} in {uri!r}: S3 bucket names are 3-63 "
                "lowercase letters, digits, '.' or '-'"
            )
        if "//" in prefix:
            raise StoreURIError(f"invalid prefix {prefix!r} in {uri!r}: empty path segment")
        return cls(bucket, prefix)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def model_prefix(self, name: str) -> str:
        return self._key(validate_model_name(name)) + "/"

    def version_prefix(self, name: str, version: int) -> str:
        return self._key(validate_model_name(name), str(validate_version(version))) + "/"

    def manifest_key(self, name: str, version: int) -> str:
        return self.version_prefix(name, version) + MANIFEST_NAME

    def staging_root(self, name: str) -> str:
        return self._key(validate_model_name(name), STAGING_DIR) + "/"

    def staging_prefix(self, name: str, version: int, token: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", token):
            raise StoreURIError(f"invalid staging token {token!r}")
        return self.staging_root(name) + f"{validate_version(version)}-{token}/"


@dataclass(frozen=True)
class FileEntry:
    """One file of a version: its path relative to the version directory, size and sha256."""

    path: str
    size: int
    sha256: str

    def __post_init__(self) -> None:
        pure = PurePosixPath(self.path)
        if (
            not self.path
            or pure.is_absolute()
            or any(part in ("", ".", "..") for part in self.path.split("/"))
        ):
            raise ManifestError(f"unsafe file path {self.path!r} in manifest")
        if self.path == MANIFEST_NAME:
            raise ManifestError(f"{MANIFEST_NAME} cannot list itself")
        if not isinstance(self.size, int) or self.size < 0:
            raise ManifestError(f"bad size {self.size!r} for {self.path!r} in manifest")
        if not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ManifestError(f"bad sha256 {self.sha256!r} for {self.path!r} in manifest")


@dataclass(frozen=True)
class VersionManifest:
    """The commit marker of a version: what it contains and what it is."""

    model: str
    version: int
    created: str
    files: tuple[FileEntry, ...]
    signature: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Files are kept sorted by path so equal contents give equal manifests and equal JSON.
        object.__setattr__(self, "files", tuple(sorted(self.files, key=lambda f: f.path)))
        paths = [f.path for f in self.files]
        if len(set(paths)) != len(paths):
            raise ManifestError(f"manifest of {self.model}/{self.version} lists a file twice")
        if not self.files:
            raise ManifestError(f"manifest of {self.model}/{self.version} lists no files")

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> bytes:
        body = {
            "format": MANIFEST_FORMAT,
            "model": self.model,
            "version": self.version,
            "created": self.created,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
            "signature": dict(self.signature),
            "metrics": dict(self.metrics),
        }
        return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(
        cls, data: bytes | str, *, model: str | None = None, version: int | None = None
    ) -> VersionManifest:
        """Parse and check a manifest; `model`/`version` are what the reader expects it to name."""
        where = f"{model}/{version}" if model is not None else "manifest"
        try:
            body = json.loads(data)
            if body.get("format") != MANIFEST_FORMAT:
                raise ManifestError(
                    f"{where}: unknown manifest format {body.get('format')!r}, "
                    f"expected {MANIFEST_FORMAT!r}"
                )
            manifest = cls(
                model=validate_model_name(body["model"]),
                version=validate_version(body["version"]),
                created=str(body["created"]),
                files=tuple(
                    FileEntry(str(f["path"]), f["size"], str(f["sha256"])) for f in body["files"]
                ),
                signature=body.get("signature") or {},
                metrics=body.get("metrics") or {},
            )
        except ManifestError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, StoreURIError) as exc:
            raise ManifestError(f"{where}: unreadable manifest ({exc})") from exc
        if model is not None and manifest.model != model:
            raise ManifestError(f"{where}: manifest names model {manifest.model!r}")
        if version is not None and manifest.version != version:
            raise ManifestError(f"{where}: manifest names version {manifest.version}")
        return manifest


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Streamed sha256 of a file (memory stays flat for large files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _walk_files(directory: Path) -> Iterable[Path]:
    for path in sorted(directory.rglob("*")):
        if path.is_symlink():
            raise IntegrityError(f"{path}: symbolic links are not allowed in a model version")
        if path.is_file():
            yield path


def scan_export(directory: str | os.PathLike[str]) -> tuple[FileEntry, ...]:
    """A FileEntry for every file under a version directory (the manifest itself excluded)."""
    root = Path(directory)
    if not root.is_dir():
        raise IntegrityError(f"{root} is not a directory")
    entries = tuple(
        FileEntry(path.relative_to(root).as_posix(), path.stat().st_size, sha256_file(path))
        for path in _walk_files(root)
        if path.relative_to(root).as_posix() != MANIFEST_NAME
    )
    if not entries:
        raise IntegrityError(f"{root} contains no files")
    return entries


def verify_local_tree(directory: str | os.PathLike[str], manifest: VersionManifest) -> None:
    """Raise IntegrityError unless `directory` holds exactly the manifest's files, byte for byte.

    A `manifest.json` copy in the directory is allowed and ignored.
    """
    root = Path(directory)
    wanted = {f.path: f for f in manifest.files}
    present = {
        p.relative_to(root).as_posix()
        for p in _walk_files(root)
        if p.relative_to(root).as_posix() != MANIFEST_NAME
    }
    problems = [f"missing {p}" for p in sorted(wanted.keys() - present)]
    problems += [f"unexpected {p}" for p in sorted(present - wanted.keys())]
    for rel in sorted(wanted.keys() & present):
        entry, path = wanted[rel], root / rel
        size = path.stat().st_size
        if size != entry.size:
            problems.append(f"{rel}: size {size}, manifest says {entry.size}")
        elif sha256_file(path) != entry.sha256:
            problems.append(f"{rel}: sha256 differs from manifest")
    if problems:
        raise IntegrityError(
            f"{manifest.model}/{manifest.version} in {root} does not match its manifest: "
            + "; ".join(problems)
        )


def read_manifest(
    s3: Any, location: StoreLocation, name: str, version: int
) -> VersionManifest | None:
    """The manifest of a version, or None when it has none (not committed)."""
    key = location.manifest_key(name, version)
    try:
        body = s3.get_object(Bucket=location.bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return VersionManifest.from_json(body, model=name, version=version)


def list_committed_versions(
    s3: Any, location: StoreLocation, name: str
) -> dict[int, VersionManifest]:
    """Every committed version of a model: manifest present and matching the object listing.

    Versions with no manifest (publish in progress or interrupted), an unreadable manifest, or a
    listed file missing or of another size are left out. S3 errors propagate (botocore's
    ClientError / EndpointConnectionError) so the caller can back off and retry.
    """
    sizes: dict[int, dict[str, int]] = {}
    model_prefix = location.model_prefix(name)
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=location.bucket, Prefix=model_prefix):
        for obj in page.get("Contents", []):
            rest = obj["Key"][len(model_prefix) :]
            head, _, path = rest.partition("/")
            version = parse_version_dir(head)
            if version is not None and path:
                sizes.setdefault(version, {})[path] = obj["Size"]
    committed: dict[int, VersionManifest] = {}
    for version, objects in sorted(sizes.items()):
        if MANIFEST_NAME not in objects:
            continue
        try:
            manifest = read_manifest(s3, location, name, version)
        except ManifestError as exc:
            _log.warning("ignoring %s/%s: %s", name, version, exc)
            continue
        if manifest is not None and all(objects.get(f.path) == f.size for f in manifest.files):
            committed[version] = manifest
    return committed
