"""The model store: S3 layout and manifest format, shared by the writer and every reader.

`python -m model publish` writes versions with this module; the model-sync agent
(`serving.sync`) reads them with it. Keep it free of TensorFlow: the sync image ships only boto3.

Layout under a store location ``s3://BUCKET/PREFIX``::

    PREFIX/<name>/<version>/manifest.json               commit marker: one conditional PUT
    PREFIX/<name>/.content/<version>-<digest>/<path>    the files it commits (`content_prefix`)
    PREFIX/<name>/<version>/<path>                      files of versions published before
                                                        content prefixes (still read)
    PREFIX/<name>/.staging/<version>-<token>/           old-style uploads (removed when stale)
    PREFIX/<name>/.contract.json                        the version committed last and its
                                                        signatures: publish's compare-and-swap
                                                        point (`contract_key`; `model publish`)

A version exists only when its manifest is within the bounds (`MAX_MANIFEST_BYTES`,
`MAX_MANIFEST_DEPTH`), parses, names this model and version, and every file it lists is present
with the listed size under its content prefix or the version prefix (`list_committed`). Readers
check content (sha256) after download with `verify_local_tree`.
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
CONTRACT_NAME = ".contract.json"
CONTRACT_FORMAT = "tfserving-eks/contract/v1"
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

    def contract_key(self, name: str) -> str:
        """The model's contract marker; readers of versions never look at it."""
        return self._key(validate_model_name(name), CONTRACT_NAME)

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
        if any(ord(char) < 0x20 or char in "\x7f\\" for char in self.path):
            # A NUL cannot be a file name; other control characters and backslashes are a
            # forged manifest's, never a SavedModel's.
            raise ManifestError(f"unsafe file path {self.path!r} in manifest: control character")
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
    # Every serving signature of the version (`contracts.signatures` summary format): the model's
    # contract while this is its newest version. Empty in manifests written before it existed.
    signatures: Mapping[str, Any] = field(default_factory=dict)
    # Set when the publisher was told to publish signatures incompatible with the contract
    # (`--allow-signature-change`): the version compared against and each difference.
    signature_change: Mapping[str, Any] | None = None

    def contract_signatures(self) -> dict[str, Any]:
        """The serving signatures of this version; older manifests only name `serving_default`."""
        if self.signatures:
            return dict(self.signatures)
        if self.signature.get("name") and "inputs" in self.signature:
            body = {k: v for k, v in self.signature.items() if k != "name"}
            return {str(self.signature["name"]): body}
        return {}

    def __post_init__(self) -> None:
        # Files are kept sorted by path so equal contents give equal manifests and equal JSON.
        object.__setattr__(self, "files", tuple(sorted(self.files, key=lambda f: f.path)))
        paths = [f.path for f in self.files]
        if len(set(paths)) != len(paths):
            raise ManifestError(f"manifest of {self.model}/{self.version} lists a file twice")
        if not self.files:
            raise ManifestError(f"manifest of {self.model}/{self.version} lists no files")
        if not isinstance(self.signatures, Mapping) or not all(
            isinstance(v, Mapping) for v in self.signatures.values()
        ):
            raise ManifestError(f"manifest of {self.model}/{self.version}: bad 'signatures'")
        if self.signature_change is not None and not isinstance(self.signature_change, Mapping):
            raise ManifestError(f"manifest of {self.model}/{self.version}: bad 'signature_change'")

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
        if self.signatures:
            body["signatures"] = dict(self.signatures)
        if self.signature_change is not None:
            body["signature_change"] = dict(self.signature_change)
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
                signatures=body.get("signatures") or {},
                signature_change=body.get("signature_change"),
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


# Bounds on what a reader accepts from the store, checked before parsing: a manifest lists files,
# a few hundred bytes each, so 4 MiB is ~20,000 files; parsing one costs ~10x its size in memory,
# which keeps the sync sidecar (256 MiB) safe. Real manifests nest 6 levels at most.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_MANIFEST_DEPTH = 32
CONTENT_DIR = ".content"
# Uncommitted content prefixes older than this are an interrupted publish's and may be removed.
STALE_CONTENT_SECONDS = 3600
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


def check_manifest_bounds(data: bytes, where: str = "manifest") -> None:
    """Raise ManifestError if `data` is larger or nested deeper than a reader accepts.

    Runs before `json.loads`, whose recursion a deeply nested document would exhaust
    (RecursionError), and whose objects would take ~10x the document's size in memory.
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(
            f"{where}: manifest is {len(data)} bytes, over the {MAX_MANIFEST_BYTES}-byte limit"
        )
    depth = deepest = 0
    for match in _JSON_BRACKET.finditer(_JSON_STRING.sub(b'""', data)):
        depth += 1 if match.group() in (b"[", b"{") else -1
        deepest = max(deepest, depth)
        if deepest > MAX_MANIFEST_DEPTH:
            raise ManifestError(f"{where}: manifest nests deeper than {MAX_MANIFEST_DEPTH} levels")


def parse_manifest(data: bytes, name: str, version: int) -> VersionManifest:
    """`VersionManifest.from_json` behind the size and depth bounds; every failure ManifestError."""
    where = f"{name}/{version}"
    check_manifest_bounds(data, where)
    try:
        return VersionManifest.from_json(data, model=name, version=version)
    except RecursionError as exc:  # belt and braces: the depth check should have caught it
        raise ManifestError(f"{where}: manifest nests too deep") from exc


def content_digest(manifest: VersionManifest) -> str:
    """16 hex digits naming a manifest's file list (paths, sizes, sha256s), not its metadata."""
    listing = "\n".join(f"{f.path}\t{f.size}\t{f.sha256}" for f in manifest.files)
    return hashlib.sha256(listing.encode()).hexdigest()[:16]


def content_prefix(location: StoreLocation, manifest: VersionManifest) -> str:
    """Where `model publish` uploads the files a manifest commits (outside the version prefix).

    Content-addressed, so two concurrent publishes of one version never write the same keys
    unless they upload the same bytes, and the loser's files are never under the version prefix.
    """
    name, version = manifest.model, manifest.version
    return (
        location._key(validate_model_name(name), CONTENT_DIR, f"{validate_version(version)}-")
        + content_digest(manifest)
        + "/"
    )


def _read_bounded(s3: Any, bucket: str, key: str, **extra: Any) -> tuple[bytes, str]:
    """An object's bytes (at most MAX_MANIFEST_BYTES + 1 are read) and its ETag."""
    response = s3.get_object(Bucket=bucket, Key=key, **extra)
    body = response["Body"]
    try:
        data = body.read(MAX_MANIFEST_BYTES + 1)
    finally:
        body.close()
    return data, str(response.get("ETag", ""))


def read_manifest(
    s3: Any, location: StoreLocation, name: str, version: int
) -> VersionManifest | None:
    """The manifest of a version, or None when it has none (not committed)."""
    found = read_manifest_etag(s3, location, name, version)
    return None if found is None else found[0]


def read_manifest_etag(
    s3: Any, location: StoreLocation, name: str, version: int
) -> tuple[VersionManifest, str] | None:
    """The manifest of a version and its ETag (for a conditional replace), or None."""
    key = location.manifest_key(name, version)
    try:
        data, etag = _read_bounded(s3, location.bucket, key)
    except s3.exceptions.NoSuchKey:
        return None
    return parse_manifest(data, name, version), etag


@dataclass(frozen=True)
class CommittedVersion:
    """A committed version as a reader found it: its manifest, the manifest's ETag (changes
    when `publish --force` replaces the version) and the key prefix holding its files."""

    manifest: VersionManifest
    etag: str
    prefix: str


@dataclass
class ManifestCache:
    """Parsed manifests by (model, version) and ETag, so a poll re-reads only changed ones.

    Failures are cached too: a bad manifest is not downloaded again until it changes.
    """

    entries: dict[tuple[str, int], tuple[str, VersionManifest | ManifestError]] = field(
        default_factory=dict
    )
    downloads: int = 0

    def get(
        self, s3: Any, location: StoreLocation, name: str, version: int, etag: str, size: int
    ) -> VersionManifest:
        cached = self.entries.get((name, version))
        if cached is not None and cached[0] == etag:
            result = cached[1]
        else:
            result = self._fetch(s3, location, name, version, etag, size)
            self.entries[(name, version)] = (etag, result)
        if isinstance(result, ManifestError):
            raise result
        return result

    def _fetch(
        self, s3: Any, location: StoreLocation, name: str, version: int, etag: str, size: int
    ) -> VersionManifest | ManifestError:
        where = f"{name}/{version}"
        if size > MAX_MANIFEST_BYTES:  # refused from the listing, without downloading it
            return ManifestError(
                f"{where}: manifest is {size} bytes, over the {MAX_MANIFEST_BYTES}-byte limit"
            )
        self.downloads += 1
        # IfMatch: the manifest read is the one listed (a --force replace in between fails
        # here with 412 and is picked up, consistently, by the next poll).
        extra = {"IfMatch": etag} if etag else {}
        data, _etag = _read_bounded(
            s3, location.bucket, location.manifest_key(name, version), **extra
        )
        try:
            return parse_manifest(data, name, version)
        except ManifestError as exc:
            _log.warning("ignoring %s/%s: %s", name, version, exc)  # once per ETag
            return exc

    def forget_except(self, keep: set[tuple[str, int]]) -> None:
        for key in list(self.entries):
            if key not in keep:
                del self.entries[key]


@dataclass
class StoreListing:
    """One listing of a model: committed versions, and why others with a manifest are not."""

    versions: dict[int, CommittedVersion]
    problems: dict[int, str]


def list_committed(
    s3: Any, location: StoreLocation, name: str, cache: ManifestCache | None = None
) -> StoreListing:
    """Every committed version of a model, with its ETag and where its files are.

    A version is committed when ``<name>/<version>/manifest.json`` parses within the bounds and
    every file it lists is present with the listed size under its content prefix (written by
    `model publish`) or, for versions published before content prefixes, under the version
    prefix. Manifests are fetched only when their ETag differs from `cache`'s. Versions whose
    manifest is bad or whose files are incomplete are left out and explained in ``problems``;
    versions without a manifest (a publish in progress) are left out silently. S3 errors
    propagate (botocore's ClientError / EndpointConnectionError) so the caller can back off.
    """
    cache = cache if cache is not None else ManifestCache()
    model_prefix = location.model_prefix(name)
    objects: dict[str, int] = {}
    manifests: dict[int, tuple[str, int]] = {}
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=location.bucket, Prefix=model_prefix):
        for obj in page.get("Contents", []):
            key, size = obj["Key"], obj["Size"]
            objects[key] = size
            head, _, path = key[len(model_prefix) :].partition("/")
            version = parse_version_dir(head)
            if version is not None and path == MANIFEST_NAME:
                manifests[version] = (str(obj.get("ETag", "")), size)
    listing = StoreListing({}, {})
    for version, (etag, size) in sorted(manifests.items()):
        try:
            manifest = cache.get(s3, location, name, version, etag, size)
        except ManifestError as exc:
            listing.problems[version] = str(exc)
            continue
        except s3.exceptions.NoSuchKey:
            continue  # withdrawn since the listing
        except Exception as exc:  # botocore's ClientError; contracts does not import botocore
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "412"):
                continue  # replaced since the listing: the next listing sees the new one
            raise
        prefixes = (content_prefix(location, manifest), location.version_prefix(name, version))
        for prefix in prefixes:
            if all(objects.get(prefix + f.path) == f.size for f in manifest.files):
                listing.versions[version] = CommittedVersion(manifest, etag, prefix)
                break
        else:
            listing.problems[version] = (
                f"{name}/{version}: files listed in its manifest are missing"
            )
    cache.forget_except({(name, v) for v in manifests} | {k for k in cache.entries if k[0] != name})
    return listing


def list_committed_versions(
    s3: Any, location: StoreLocation, name: str
) -> dict[int, VersionManifest]:
    """`list_committed`'s manifests only: every committed version of a model by number."""
    listing = list_committed(s3, location, name)
    return {version: found.manifest for version, found in listing.versions.items()}
