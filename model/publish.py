"""`python -m model publish`: put one export into the S3 model store so it appears only whole.

Protocol (layout and manifest from `contracts.store`, see docs/contracts.md):

1. check the export is a complete SavedModel with this stage's signature and an integer version
   (and that its warmup file, when present, parses: TF Serving refuses a corrupt one);
2. refuse if the version is committed, unless `force` (then delete its manifest FIRST, so readers
   stop seeing it before anything under it changes);
3. delete stale staging objects of this model (interrupted publishes) and uncommitted leftovers
   under the version prefix;
4. upload every file to `<name>/.staging/<version>-<token>/` (managed transfer: multipart for
   large files, SHA-256 checksums that S3 validates on receipt);
5. verify staging: every file present with its size and sha256 (S3's stored checksum for
   single-part objects, a streamed re-read for multipart ones whose checksum is composite);
6. server-side copy staging -> `<name>/<version>/`, check sizes there;
7. write `manifest.json` LAST: the commit; then delete the staging objects.

Any failure before step 7 leaves no manifest, so no reader sees the version; the next publish
removes what was left. One publisher per model at a time (CI serialises publishes): step 3 would
remove a concurrent publisher's staging objects, which then fails its verification, never commits
anything wrong.
"""

from __future__ import annotations

import base64
import hashlib
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from contracts.store import (
    MANIFEST_NAME,
    IntegrityError,
    ManifestError,
    StoreLocation,
    StoreURIError,
    VersionExistsError,
    VersionManifest,
    read_manifest,
    scan_export,
    validate_model_name,
    validate_version,
)
from model.errors import ExportError, PublishError

MULTIPART_THRESHOLD = 16 * 1024 * 1024
PROGRESS_THRESHOLD = MULTIPART_THRESHOLD  # files this large get a progress line
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
        if code in ("NoSuchBucket", "404", "NotFound"):
            hint = "the bucket does not exist: create it (the stack's model bucket) or fix --store"
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
    if metrics is None:
        stream.write(
            f"warning: no readable {report_dir_for_export(export)}/metrics.json; "
            "publishing with empty metrics\n"
        )
        return {}
    return {key: metrics[key] for key in MANIFEST_METRICS if key in metrics}


def publish(args: PublishArgs, s3: Any = None, stream: TextIO = sys.stderr) -> VersionManifest:
    """Publish `args.export`; returns the committed manifest. `s3` overrides the boto3 client."""
    from boto3.s3.transfer import TransferConfig

    from model.export import WARMUP_RELPATH, check_export
    from model.warmup import read_warmup

    location = StoreLocation.parse(args.store)
    args = replace(args, export=args.export.resolve())  # `--export .` names its version too
    name, version = _export_identity(args.export)
    signature = check_export(args.export)
    warmup = args.export / WARMUP_RELPATH
    if warmup.exists():
        read_warmup(warmup)  # a corrupt warmup file would fail the load in TF Serving
    else:
        stream.write(f"warning: {warmup} is missing; TF Serving will load without warmup\n")
    files = scan_export(args.export)
    manifest = VersionManifest(
        model=name,
        version=version,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        files=files,
        signature=signature,
        metrics=_manifest_metrics(args.export, stream),
    )
    s3 = s3 if s3 is not None else make_client(args.endpoint_url)
    bucket, version_prefix = location.bucket, location.version_prefix(name, version)
    where = f"{location.uri}/{name}/{version}"

    def guarded(action: str) -> Any:
        return s3_errors(location, action, args.endpoint_url)

    with guarded("checking the bucket"):
        s3.head_bucket(Bucket=bucket)
    with guarded("reading the current manifest"):
        try:
            exists, note = read_manifest(s3, location, name, version) is not None, ""
        except ManifestError:
            exists, note = True, " (its manifest is unreadable)"
    if exists and not args.force:
        raise VersionExistsError(
            f"{where} is already published{note}; versions are immutable: train a new "
            "version, or pass --force to replace it"
        )
    with guarded("removing the old manifest"):
        if exists:
            # First, so readers stop seeing the version before anything under it changes.
            s3.delete_object(Bucket=bucket, Key=location.manifest_key(name, version))
            stream.write(f"--force: {where} withdrawn; replacing it\n")
    with guarded("cleaning stale staging and uncommitted objects"):
        stale = sorted(_list_keys(s3, bucket, location.staging_root(name)))
        leftovers = sorted(_list_keys(s3, bucket, version_prefix))
        _delete_keys(s3, bucket, stale + leftovers)
        if stale:
            stream.write(f"removed {len(stale)} stale staging objects of {name}\n")

    staging = location.staging_prefix(name, version, uuid.uuid4().hex[:12])
    config = TransferConfig(
        multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_THRESHOLD
    )
    checksum = {"ChecksumAlgorithm": "SHA256"}
    committed = False
    try:
        with guarded("uploading to staging"):
            for entry in files:
                callback = None
                if entry.size >= PROGRESS_THRESHOLD:
                    callback = Progress(entry.path, entry.size, stream)
                s3.upload_file(
                    str(args.export / entry.path),
                    bucket,
                    staging + entry.path,
                    ExtraArgs=checksum,
                    Config=config,
                    Callback=callback,
                )
        with guarded("verifying staging"):
            verify_objects(s3, bucket, staging, manifest)
        with guarded("copying staging into the version prefix"):
            for entry in files:
                s3.copy(
                    {"Bucket": bucket, "Key": staging + entry.path},
                    bucket,
                    version_prefix + entry.path,
                    ExtraArgs=checksum,
                    Config=config,
                )
            copied = _list_keys(s3, bucket, version_prefix)
            wrong = [f.path for f in files if copied.get(version_prefix + f.path) != f.size]
            if wrong:
                raise IntegrityError(f"copy into {where} is incomplete: {', '.join(wrong)}")
        with guarded("writing the manifest (commit)"):
            s3.put_object(
                Bucket=bucket,
                Key=location.manifest_key(name, version),
                Body=manifest.to_json(),
                ContentType="application/json",
                **checksum,
            )
            committed = True
    finally:
        # Best effort: what is left here is invisible and the next publish removes it.
        try:
            with guarded("removing staging objects"):
                doomed = list(_list_keys(s3, bucket, staging))
                if not committed:
                    doomed += list(_list_keys(s3, bucket, version_prefix))
                _delete_keys(s3, bucket, doomed)
        except PublishError as exc:
            stream.write(f"warning: {exc}; the next publish will clean up\n")
    return manifest
