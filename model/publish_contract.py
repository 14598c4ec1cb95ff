"""The signature contract at commit time: a version is checked against what is committed when it
commits, so two contradicting versions cannot both land.

Publish checks a version's signatures early (before uploading, to refuse fast) and again right
before its commit, under the model's contract marker ``<name>/.contract.json``
(`contracts.store.StoreLocation.contract_key`): the version claimed last and its signatures.
At commit, publish

1. reads the marker and its ETag, and lists the committed versions;
2. checks the candidate against every `Reference`: the version a ``--force`` replaces, the newest
   committed version other than its own number (the model's contract), and the version the
   marker names while that one is still being committed (no manifest yet, marker younger than
   `STALE_CLAIM_SECONDS`);
3. claims the marker with ONE conditional PUT (``If-Match`` the ETag read, ``If-None-Match: *``
   when there is none). A concurrent publish that claimed it in between makes this PUT fail with
   412: back to 1, so of two publishes the second to claim is checked against the first;
4. writes its manifest (the commit); if that fails, the marker is handed back (`release`).

A marker that names a committed version says nothing the manifest does not; one left by a publish
that died between 3 and 4 stops counting after `STALE_CLAIM_SECONDS`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from contracts.store import (
    CONTRACT_FORMAT,
    ManifestError,
    StoreLocation,
    VersionManifest,
    check_manifest_bounds,
    list_committed,
)
from model.errors import PublishError
from model.validate import Reference, check_contract

# A claim this old whose version has no manifest is an interrupted publish's (publish uploads and
# verifies before claiming, so a live claim is seconds old).
STALE_CLAIM_SECONDS = 3600
CLAIM_ATTEMPTS = 20
_CONFLICT = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


@dataclass(frozen=True)
class Marker:
    """The marker as read: what it names (version None: nothing) and its ETag (None: absent)."""

    version: int | None = None
    signatures: dict[str, Any] = field(default_factory=dict)
    etag: str | None = None
    age_seconds: float = 0.0
    body: bytes | None = None


@dataclass(frozen=True)
class Claim:
    """This publish's marker write: its ETag, and what to put back if the commit fails."""

    etag: str
    previous: bytes | None


def marker_body(model: str, version: int | None, signatures: dict[str, Any]) -> bytes:
    body = {"format": CONTRACT_FORMAT, "model": model, "version": version}
    body["signatures"] = signatures
    return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()


def read_marker(s3: Any, location: StoreLocation, name: str) -> Marker:
    """The marker; an unreadable one names nothing (it is only ever written by publish, and is
    replaced by the next claim)."""
    key = location.contract_key(name)
    try:
        response = s3.get_object(Bucket=location.bucket, Key=key)
    except s3.exceptions.NoSuchKey:
        return Marker()
    body = response["Body"]
    try:
        data = body.read()
    finally:
        body.close()
    etag = str(response.get("ETag", ""))
    modified = response.get("LastModified")
    age = (datetime.now(UTC) - modified).total_seconds() if modified else 0.0
    try:
        check_manifest_bounds(data, key)
        parsed = json.loads(data)
        version = parsed["version"]
        signatures = parsed["signatures"]
        if parsed.get("format") != CONTRACT_FORMAT or parsed.get("model") != name:
            raise ValueError("another format or model")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise ValueError("version")
        if not isinstance(signatures, dict):
            raise ValueError("signatures")
    except (ManifestError, ValueError, KeyError, TypeError):
        return Marker(etag=etag, age_seconds=age, body=data)
    return Marker(version, signatures, etag, age, data)


def references(
    s3: Any,
    location: StoreLocation,
    manifest: VersionManifest,
    replaced: VersionManifest | None,
    marker: Marker,
) -> list[Reference]:
    """Every version `manifest` is held to now (see the module's step 2)."""
    listing = list_committed(s3, location, manifest.model)
    found: list[Reference] = []
    others = [v for v in listing.versions if v != manifest.version]
    if others:
        newest = listing.versions[max(others)].manifest
        found.append(
            Reference(newest.version, newest.contract_signatures(), "its newest committed one")
        )
    if replaced is not None:
        found.append(
            Reference(replaced.version, replaced.contract_signatures(), "the version it replaces")
        )
    in_flight = (
        marker.version is not None
        and marker.version != manifest.version
        and marker.version not in listing.versions
        and marker.age_seconds < STALE_CLAIM_SECONDS
    )
    if in_flight:
        assert marker.version is not None
        found.append(
            Reference(marker.version, marker.signatures, "being committed by a concurrent publish")
        )
    return found


def claim(
    s3: Any,
    location: StoreLocation,
    manifest: VersionManifest,
    replaced: VersionManifest | None,
    allow_change: bool,
    report: Callable[[list[Any], dict[str, Any] | None, int | None], None],
) -> tuple[VersionManifest, Claim]:
    """Steps 1-3: check against what is committed now and claim the marker; returns the manifest
    with its `signature_change` record and the claim. SignatureContractError when refused."""
    from dataclasses import replace

    name, key = manifest.model, location.contract_key(manifest.model)
    for _ in range(CLAIM_ATTEMPTS):
        marker = read_marker(s3, location, name)
        refs = references(s3, location, manifest, replaced, marker)
        differences, change = check_contract(
            name, manifest.signatures, refs, allow_change=allow_change
        )
        condition = {"IfMatch": marker.etag} if marker.etag else {"IfNoneMatch": "*"}
        try:
            response = s3.put_object(
                Bucket=location.bucket,
                Key=key,
                Body=marker_body(name, manifest.version, dict(manifest.signatures)),
                ContentType="application/json",
                **condition,
            )
        except Exception as exc:  # botocore's ClientError
            if _code(exc) in _CONFLICT:
                continue  # another publish claimed in between: check against it
            raise
        report(differences, change, next((r.version for r in refs if r.signatures), None))
        return replace(manifest, signature_change=change), Claim(
            str(response.get("ETag", "")), marker.body
        )
    raise PublishError(
        f"{location.uri}/{name}: {CLAIM_ATTEMPTS} other publishes of {name} claimed its "
        "contract while this one tried; retry"
    )


def release(s3: Any, location: StoreLocation, manifest: VersionManifest, held: Claim) -> None:
    """Step 4 failed: put the marker back as it was, if nobody claimed it since (best effort:
    a marker naming an uncommitted version stops counting after STALE_CLAIM_SECONDS anyway)."""
    body = held.previous or marker_body(manifest.model, None, {})
    try:
        s3.put_object(
            Bucket=location.bucket,
            Key=location.contract_key(manifest.model),
            Body=body,
            ContentType="application/json",
            IfMatch=held.etag,
        )
    except Exception as exc:  # botocore's ClientError
        if _code(exc) not in _CONFLICT:
            raise


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))
