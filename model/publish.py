"""`python -m model publish`: put one export into the S3 model store so it appears only whole.

Protocol (layout and manifest from `contracts.store`, see docs/contracts.md):

1. check the export is a SavedModel TF Serving can load (`model.validate`: serve tag,
   serving_default, every variable shard readable whole, warmup records that parse), that its
   version is an integer, and that its signatures keep the model's contract (those of its newest
   committed version) unless `allow_signature_change`;
2. refuse if the version is committed, unless `force` (then remember its manifest's ETag);
3. delete what interrupted publishes left (uploads no manifest points at, older than
   STALE_CONTENT_SECONDS, and objects under an uncommitted version prefix);
4. upload every file to the content prefix ``<name>/.content/<version>-<digest>/`` (the digest
   of the file list: `contracts.store.content_prefix`; managed transfer: multipart for large
   files, SHA-256 checksums that S3 validates on receipt);
5. verify the upload: every file present with its size and sha256 (S3's stored checksum for
   single-part objects, a streamed re-read for multipart ones whose checksum is composite);
6. write ``<name>/<version>/manifest.json`` with ONE conditional PUT: the commit.
   ``If-None-Match: *`` for a new version, ``If-Match: <ETag>`` for `force`; S3 lets exactly one
   of concurrent conditional writes succeed (412 Precondition Failed for the others);
7. `force`: delete the replaced content. A publish that lost the race deletes its own upload
   and fails with `ConcurrentPublishError` ("a concurrent publish of this version won").

Any failure before step 6 leaves no manifest, so no reader sees the version, and the version
prefix only ever holds the manifest. Publishes of one version are linearizable; readers
(`contracts.store.list_committed`) see the old manifest or the new one, never a gap.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from contracts.store import (
    CONTENT_DIR,
    MANIFEST_NAME,
    IntegrityError,
    ManifestError,
    StoreLocation,
    StoreURIError,
    VersionExistsError,
    VersionManifest,
    content_prefix,
    list_committed,
    read_manifest,
    read_manifest_etag,
    scan_export,
    validate_model_name,
    validate_version,
)
from model.errors import ExportError, PublishError
from model.publish_contract import Claim, claim, read_marker, references, release
from model.replay import replay_warmup
from model.validate import check_contract, check_readable, generated_names, read_warmup

MULTIPART_THRESHOLD = 16 * 1024 * 1024
PROGRESS_THRESHOLD = MULTIPART_THRESHOLD  # files this large get a progress line
# Uploads no manifest points at are removed by a later publish once this old (a younger one may
# be a concurrent publish still uploading).
STALE_CONTENT_SECONDS = 3600
BUCKET_CHECK = "checking the bucket"
# Metrics copied from metrics.json into the manifest (the full report stays beside the export).
MANIFEST_METRICS = (
    "test",
    "split",
    "seed",
    "hyperparameters",
    "inputs_fingerprint",
    "git_commit",
    "tensorflow_version",
    "created",
)


@dataclass(frozen=True)
class PublishArgs:
    """What `python -m model publish` was asked to do."""

    export: Path
    store: str
    endpoint_url: str | None = None
    force: bool = False
    allow_signature_change: bool = False


class Progress:
    """Byte-count progress for one upload, on `stream`; boto3 calls it from worker threads."""

    def __init__(self, label: str, total: int, stream: TextIO) -> None:
        self._label, self._total, self._stream = label, total, stream
        self._done, self._tenths = 0, 0
        self._lock = threading.Lock()

    def __call__(self, count: int) -> None:
        with self._lock:
            self._done += count
            # One line per 10 % keeps logs readable when stderr is not a terminal (CI).
            tenths = min(10, 10 * self._done // self._total) if self._total else 10
            if tenths <= self._tenths:
                return
            self._tenths = tenths
            mib = 1024 * 1024
            self._stream.write(
                f"  {self._label}: {self._done / mib:.1f}/{self._total / mib:.1f} MiB "
                f"({100 * self._done // max(self._total, 1)}%)\n"
            )
            self._stream.flush()


def make_client(endpoint_url: str | None) -> Any:
    """A boto3 S3 client from the standard credential chain, optionally at another endpoint."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url)


@contextmanager
def s3_errors(location: StoreLocation, action: str, endpoint_url: str | None) -> Iterator[None]:
    """Turn boto3/botocore failures into a PublishError that names the bucket and what to do."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    where = f"s3://{location.bucket}"
    try:
        yield
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise PublishError(
            f"no usable AWS credentials while {action} ({where}): set AWS_PROFILE, or "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run where a role is available"
        ) from exc
    except EndpointConnectionError as exc:
        raise PublishError(
            f"cannot reach the S3 endpoint {endpoint_url or 'of AWS'} while {action} ({where}): "
            "check --endpoint-url, the region (AWS_REGION) and the network"
        ) from exc
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        # HeadBucket has no body, so a missing bucket is a bare 404 there.
        if code == "NoSuchBucket" or (code in ("404", "NotFound") and action == BUCKET_CHECK):
            hint = "the bucket does not exist: create it (the stack's model bucket) or fix --store"
        elif code in ("NoSuchKey", "404", "NotFound"):
            hint = (
                "an object disappeared meanwhile: another publish of this model may be running; "
                "check the version and retry"
            )
        elif code in ("PreconditionFailed", "ConditionalRequestConflict"):
            hint = "another write to this key won (a concurrent publish)"
        elif code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled"):
            hint = (
                "access denied: the credentials need s3:ListBucket, GetObject, PutObject and "
                f"DeleteObject on {location.uri}/*, and kms:GenerateDataKey and kms:Decrypt on "
                "the bucket's KMS key"
            )
        elif code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
            hint = "the credentials were rejected: refresh them (expired session or wrong keys)"
        else:
            hint = error.get("Message") or "see the S3 error code"
        raise PublishError(f"S3 error {code} while {action} ({where}): {hint}") from exc
    except (BotoCoreError, Boto3Error) as exc:  # Boto3Error: S3UploadFailedError of transfers
        raise PublishError(f"S3 failure while {action} ({where}): {exc}") from exc


def _list_keys(s3: Any, bucket: str, prefix: str) -> dict[str, int]:
    keys: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.update({obj["Key"]: obj["Size"] for obj in page.get("Contents", [])})
    return keys


def _delete_keys(s3: Any, bucket: str, keys: list[str]) -> None:
    for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
        batch = [{"Key": key} for key in keys[start : start + 1000]]
        result = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        if result.get("Errors"):
            first = result["Errors"][0]
            raise PublishError(
                f"could not delete {len(result['Errors'])} objects in s3://{bucket} (first: "
                f"{first.get('Key')}: {first.get('Code')}); check s3:DeleteObject permission"
            )


def _stream_sha256(s3: Any, bucket: str, key: str) -> str:
    digest = hashlib.sha256()
    for chunk in s3.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def verify_objects(s3: Any, bucket: str, prefix: str, manifest: VersionManifest) -> None:
    """Raise IntegrityError unless `prefix` holds exactly the manifest's files, byte for byte.

    Works on a staging prefix and on a committed version (whose manifest.json is ignored).

    Uses S3's stored SHA-256 when it is the whole-object digest; otherwise (multipart uploads
    have composite checksums) streams the object and hashes it.
    """
    stored = _list_keys(s3, bucket, prefix)
    stored.pop(prefix + MANIFEST_NAME, None)  # a committed version's own manifest
    wanted = {prefix + f.path: f for f in manifest.files}
    problems = [f"missing {k}" for k in sorted(wanted.keys() - stored.keys())]
    problems += [f"unexpected {k}" for k in sorted(stored.keys() - wanted.keys())]
    for key in sorted(wanted.keys() & stored.keys()):
        entry = wanted[key]
        if stored[key] != entry.size:
            problems.append(f"{key}: size {stored[key]}, expected {entry.size}")
            continue
        head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        expected_b64 = base64.b64encode(bytes.fromhex(entry.sha256)).decode()
        if head.get("ChecksumSHA256") == expected_b64:
            continue
        if _stream_sha256(s3, bucket, key) != entry.sha256:
            problems.append(f"{key}: sha256 differs from the local file")
    if problems:
        raise IntegrityError(
            f"s3://{bucket}/{prefix} does not match {manifest.model}/{manifest.version}: "
            + "; ".join(problems)
        )


def _export_identity(export: Path) -> tuple[str, int]:
    try:
        version = validate_version(export.name)
        name = validate_model_name(export.parent.name)
    except StoreURIError as exc:
        raise ExportError(
            f"--export {export} must be DIR/<name>/<version> with an integer version (as "
            f"written by `python -m model train`): {exc}"
        ) from exc
    return name, version


def _manifest_metrics(export: Path, stream: TextIO) -> dict[str, Any]:
    from model.report import read_metrics, report_dir_for_export

    metrics = read_metrics(export)
    if not isinstance(metrics, dict):
        stream.write(
            f"warning: no readable {report_dir_for_export(export)}/metrics.json; "
            "publishing with empty metrics\n"
        )
        return {}
    return {key: metrics[key] for key in MANIFEST_METRICS if key in metrics}


def _print_contract(stream: TextIO) -> Any:
    """What the commit-time contract check reports: breaking changes let through, or compatible
    differences, against the first version the new one is held to."""

    def report(differences: list[Any], change: dict[str, Any] | None, against: int | None) -> None:
        if change is not None:
            stream.write(
                f"--allow-signature-change: publishing despite breaking changes against version "
                f"{change['against_version']}:\n" + "".join(f"  - {d}\n" for d in differences)
            )
        elif differences:
            stream.write(
                f"compatible signature changes against version {against}:\n"
                + "".join(f"  - {d}\n" for d in differences)
            )

    return report


def publish(args: PublishArgs, s3: Any = None, stream: TextIO = sys.stderr) -> VersionManifest:
    """Publish `args.export`; returns the committed manifest. `s3` overrides the boto3 client."""
    location = StoreLocation.parse(args.store)
    args = replace(args, export=args.export.resolve())  # `--export .` names its version too
    name, version = _export_identity(args.export)
    # Progress on `stream`: loading TensorFlow and the SavedModel is silent for seconds.
    stream.write(f"[1/3] validating {args.export} (loads TensorFlow and the model: ~10 s)\n")
    stream.flush()
    from model.tf_runtime import tensorflow

    # Imported once, without the CPU-only GPU-probe noise, and with kernels that refuse a bad
    # warmup record instead of aborting the process (model/tf_runtime.py).
    tensorflow(untrusted_inputs=True)
    from model.validate import WARMUP_RELPATH, validate_export

    signatures = validate_export(args.export)  # before any S3 call: refuse what cannot load
    warmup = args.export / WARMUP_RELPATH
    if not warmup.exists():
        stream.write(f"warning: {warmup} is missing; TF Serving will load without warmup\n")
    else:
        replay_warmup(args.export, read_warmup(warmup))  # as TF Serving will when it loads
    generated = generated_names(signatures)
    if generated:
        stream.write(
            "warning: Keras generated these names, and a rebuilt model may get others (a "
            "breaking change for clients): " + "; ".join(generated) + ". Name them: "
            "docs/bring-your-own-model.md, 'Export a SavedModel version'\n"
        )
    files = scan_export(args.export)
    manifest = VersionManifest(
        model=name,
        version=version,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        files=files,
        signature={"name": "serving_default", **signatures["serving_default"]},
        signatures=signatures,
        metrics=_manifest_metrics(args.export, stream),
    )
    check_readable(manifest, MANIFEST_METRICS)
    s3 = s3 if s3 is not None else make_client(args.endpoint_url)
    bucket = location.bucket

    def guarded(action: str) -> Any:
        return s3_errors(location, action, args.endpoint_url)

    stream.write(f"[2/3] checking {location.uri} and the signatures of {name}'s versions there\n")
    with guarded(BUCKET_CHECK):
        s3.head_bucket(Bucket=bucket)
    with guarded("reading the model's signature contract"):
        # Early, to refuse before uploading; checked again when it commits (commit_version).
        replaced = read_manifest(s3, location, name, version) if args.force else None
        marker = read_marker(s3, location, name)
        refs = references(s3, location, manifest, replaced, marker)
        check_contract(name, manifest.signatures, refs, allow_change=args.allow_signature_change)
    mib = manifest.total_bytes / (1024 * 1024)
    stream.write(
        f"[3/3] uploading {len(manifest.files)} files ({mib:.1f} MiB) to staging, verifying, "
        f"committing {location.uri}/{name}/{version}\n"
    )
    stream.flush()
    return commit_version(
        s3,
        location,
        manifest,
        args.export,
        args.force,
        stream,
        guarded,
        args.allow_signature_change,
    )


class ConcurrentPublishError(PublishError):
    """Another publish of the same version committed first; this one left nothing behind."""


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _stale(s3: Any, location: StoreLocation, name: str, keep: set[str]) -> list[str]:
    """Keys an interrupted publish left: old-style staging objects and content prefixes no
    manifest points at, both older than STALE_CONTENT_SECONDS (younger ones may be a
    concurrent publish's upload in progress)."""
    cutoff = datetime.now(UTC).timestamp() - STALE_CONTENT_SECONDS
    doomed = []
    for root in (location.staging_root(name), location.model_prefix(name) + CONTENT_DIR + "/"):
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=root)
        for obj in (obj for page in pages for obj in page.get("Contents", [])):
            if obj["LastModified"].timestamp() <= cutoff and not any(
                obj["Key"].startswith(prefix) for prefix in keep
            ):
                doomed.append(obj["Key"])
    return doomed


def commit_version(
    s3: Any,
    location: StoreLocation,
    manifest: VersionManifest,
    export: Path,
    force: bool,
    stream: TextIO,
    guarded: Any,
    allow_signature_change: bool = False,
) -> VersionManifest:
    """Upload `export`'s files and commit `manifest`: linearizable per version, and checked
    against the model's contract at commit time (`model.publish_contract`).

    The files go to the manifest's content prefix (`contracts.store.content_prefix`, outside
    the version prefix, named by the digest of the file list); the commit is ONE conditional
    PUT of ``<version>/manifest.json``: ``If-None-Match: *`` for a new version, ``If-Match:
    <ETag read>`` for ``--force``. Of concurrent publishes of a version exactly one PUT succeeds;
    the others get 412, remove their own upload (unless it is byte-identical to the winner's)
    and raise `ConcurrentPublishError`. ``--force`` swaps the manifest in one step (readers see
    the old version or the new one, never none) and then deletes the old content.
    """
    from boto3.s3.transfer import TransferConfig

    name, version = manifest.model, manifest.version
    bucket = location.bucket
    where = f"{location.uri}/{name}/{version}"
    manifest_key = location.manifest_key(name, version)
    with guarded("reading the current manifest"):
        # (manifest or None if unreadable, ETag) of the committed version; None if there is none
        current: tuple[VersionManifest | None, str] | None
        note = ""
        try:
            current = read_manifest_etag(s3, location, name, version)
        except ManifestError:
            etag = s3.head_object(Bucket=bucket, Key=manifest_key)["ETag"]
            current, note = (None, etag), " (its manifest is unreadable)"
    if current is not None and not force:
        raise VersionExistsError(
            f"{where} is already published{note}; versions are immutable: train a new "
            "version, or pass --force to replace it"
        )
    with guarded("cleaning up after interrupted publishes"):
        listing = list_committed(s3, location, name)
        keep = {found.prefix for found in listing.versions.values()}
        stale = _stale(s3, location, name, keep)
        if current is None:
            # Objects under an uncommitted version prefix (publishes before content prefixes);
            # never the manifest, which a concurrent publish may be writing right now.
            stale += [
                key
                for key in _list_keys(s3, bucket, location.version_prefix(name, version))
                if key != manifest_key
            ]
        _delete_keys(s3, bucket, sorted(stale))
        if stale:
            stream.write(f"removed {len(stale)} objects of interrupted publishes of {name}\n")

    prefix = content_prefix(location, manifest)
    config = TransferConfig(
        multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_THRESHOLD
    )
    checksum = {"ChecksumAlgorithm": "SHA256"}
    condition = {"IfNoneMatch": "*"} if current is None else {"IfMatch": current[1]}
    committed = False
    held: Claim | None = None
    try:
        with guarded("uploading"):
            for entry in manifest.files:
                callback = None
                if entry.size >= PROGRESS_THRESHOLD:
                    callback = Progress(entry.path, entry.size, stream)
                s3.upload_file(
                    str(export / entry.path),
                    bucket,
                    prefix + entry.path,
                    ExtraArgs=checksum,
                    Config=config,
                    Callback=callback,
                )
        with guarded("verifying the upload"):
            verify_objects(s3, bucket, prefix, manifest)
        with guarded("claiming the model's signature contract"):
            replaced = current[0] if current is not None else None
            manifest, held = claim(
                s3, location, manifest, replaced, allow_signature_change, _print_contract(stream)
            )
        check_readable(manifest, MANIFEST_METRICS)  # with its signature_change record
        try:
            with guarded("writing the manifest (commit)"):
                s3.put_object(
                    Bucket=bucket,
                    Key=manifest_key,
                    Body=manifest.to_json(),
                    ContentType="application/json",
                    **condition,
                    **checksum,
                )
                committed = True
        except PublishError as exc:
            code = _error_code(exc.__cause__) if exc.__cause__ else ""
            if code not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
            raise ConcurrentPublishError(
                f"{where}: a concurrent publish of this version won (it committed first); "
                "nothing of this publish remains. Check what was committed, then publish a new "
                "version, or pass --force to replace it"
            ) from exc
    finally:
        if not committed:
            if held is not None:
                with contextlib.suppress(PublishError), guarded("handing the contract back"):
                    release(s3, location, manifest, held)
            _remove_own_upload(s3, location, manifest, prefix, stream, guarded)
    if current is not None:
        old = current[0]
        stream.write(f"--force: {where} replaced in one step\n")
        with guarded("removing the replaced content"):
            doomed = [
                key
                for key in _list_keys(s3, bucket, location.version_prefix(name, version))
                if key != manifest_key
            ]
            if old is not None and content_prefix(location, old) != prefix:
                doomed += list(_list_keys(s3, bucket, content_prefix(location, old)))
            _delete_keys(s3, bucket, doomed)
    with guarded("checking the commit"):
        # Readers' view: the version is committed with these files. Fails only if something
        # removed the upload between verification and commit (a cleanup by a publish that took
        # it for stale: uploads longer than STALE_CONTENT_SECONDS).
        listing = list_committed(s3, location, name)
        seen = listing.versions.get(version)
    if seen is None or seen.prefix != prefix:
        why = listing.problems.get(version) or (
            f"readers do not see this version's files under {prefix}"
        )
        raise PublishError(
            f"{where}: the manifest was written but {why}; publish it again with --force"
        )
    return manifest


def _remove_own_upload(
    s3: Any,
    location: StoreLocation,
    manifest: VersionManifest,
    prefix: str,
    stream: TextIO,
    guarded: Any,
) -> None:
    """Best effort: delete this attempt's content, unless a committed manifest now points at
    the same content (a concurrent publish of identical files won)."""
    try:
        with guarded("removing this publish's upload"):
            for found in list_committed(s3, location, manifest.model).versions.values():
                if found.prefix == prefix:
                    return
            _delete_keys(s3, location.bucket, list(_list_keys(s3, location.bucket, prefix)))
    except PublishError as exc:
        stream.write(f"warning: {exc}; a later publish removes it\n")
