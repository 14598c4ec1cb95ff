"""Publishing an export to a real (moto) S3 endpoint: whole versions only, immutable, verified."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError

from contracts.store import (
    IntegrityError,
    StoreLocation,
    VersionExistsError,
    VersionManifest,
    list_committed_versions,
    read_manifest,
    scan_export,
    verify_local_tree,
)
from model import publish as publish_mod
from model.__main__ import main
from model.errors import ExportError, PublishError
from model.export import EXPECTED_SIGNATURE
from model.publish import Progress, PublishArgs, publish, verify_objects

PREFIX = "models"


def _client(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def _keys(s3, bucket: str, prefix: str = "") -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def _publish(export: Path, bucket: str, s3, *, force: bool = False) -> VersionManifest:
    args = PublishArgs(export=export, store=f"s3://{bucket}/{PREFIX}", force=force)
    return publish(args, s3=s3, stream=io.StringIO())


def _download(s3, bucket: str, manifest: VersionManifest, target: Path) -> None:
    prefix = StoreLocation(bucket, PREFIX).version_prefix(manifest.model, manifest.version)
    for entry in manifest.files:
        path = target / entry.path
        path.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, prefix + entry.path, str(path))


def test_publish_commits_a_complete_verified_version(
    export_copy: Path, s3, bucket: str, tmp_path: Path
) -> None:
    manifest = _publish(export_copy, bucket, s3)
    location = StoreLocation(bucket, PREFIX)
    assert list_committed_versions(s3, location, "mnist") == {1: manifest}
    assert read_manifest(s3, location, "mnist", 1) == manifest
    assert manifest.files == scan_export(export_copy)
    assert {"saved_model.pb", "assets.extra/tf_serving_warmup_requests"} <= {
        f.path for f in manifest.files
    }
    assert {k: manifest.signature[k] for k in ("inputs", "outputs")} == {
        k: EXPECTED_SIGNATURE[k] for k in ("inputs", "outputs")
    }
    assert 0 <= manifest.metrics["test"]["accuracy"] <= 1
    assert len(manifest.metrics["inputs_fingerprint"]) == 64
    # Exactly the files plus the manifest; no staging objects left behind.
    assert _keys(s3, bucket) == sorted(
        [f"{PREFIX}/mnist/1/{f.path}" for f in manifest.files] + [f"{PREFIX}/mnist/1/manifest.json"]
    )
    _download(s3, bucket, manifest, tmp_path / "copy")
    verify_local_tree(tmp_path / "copy", manifest)


def test_versions_are_immutable_and_force_withdraws_the_manifest_first(
    export_copy: Path, moto_endpoint: str, bucket: str
) -> None:
    s3 = _client(moto_endpoint)
    first = _publish(export_copy, bucket, s3)
    with pytest.raises(VersionExistsError, match=r"mnist/1 is already published; versions are"):
        _publish(export_copy, bucket, s3)

    calls: list[str] = []

    def record(model, params, **_):
        if "Key" in params:
            calls.append(f"{model.name} {params['Key']}")

    s3.meta.events.register(
        "before-parameter-build.s3", record
    )  # every S3 operation of this client
    (export_copy / "assets.extra" / "notes.txt").write_text("retrained\n")
    second = _publish(export_copy, bucket, s3, force=True)
    manifest_key = f"{PREFIX}/mnist/1/manifest.json"
    writes = [c for c in calls if not c.startswith(("GetObject", "HeadObject"))]
    assert writes[0] == f"DeleteObject {manifest_key}"  # invisible before anything changes
    assert writes[-1] == f"PutObject {manifest_key}"  # the commit is the last write to the version
    assert writes.count(f"PutObject {manifest_key}") == 1
    assert second.files != first.files
    committed = list_committed_versions(s3, StoreLocation(bucket, PREFIX), "mnist")
    assert committed == {1: second}


def test_a_publish_that_fails_midway_leaves_nothing_visible(
    export_copy: Path, moto_endpoint: str, bucket: str
) -> None:
    s3 = _client(moto_endpoint)
    uploads = []

    def fail_third_upload(params, **_):
        uploads.append(params["Key"])
        if len(uploads) == 3:
            raise EndpointConnectionError(endpoint_url=moto_endpoint)

    s3.meta.events.register("before-parameter-build.s3.PutObject", fail_third_upload)
    with pytest.raises(PublishError, match=r"cannot reach the S3 endpoint .* uploading to staging"):
        _publish(export_copy, bucket, s3)
    assert "/.staging/" in uploads[0]
    assert list_committed_versions(s3, StoreLocation(bucket, PREFIX), "mnist") == {}
    assert _keys(s3, bucket) == []  # staging removed on the way out


def test_the_next_publish_cleans_up_after_an_interrupted_one(
    export_copy: Path, s3, bucket: str
) -> None:
    location = StoreLocation(bucket, PREFIX)
    # What a killed publish leaves: half a staging tree and a copied file with no manifest.
    stale = location.staging_prefix("mnist", 1, "deadbeef") + "saved_model.pb"
    s3.put_object(Bucket=bucket, Key=stale, Body=b"half")
    s3.put_object(Bucket=bucket, Key=location.version_prefix("mnist", 1) + "junk", Body=b"x")
    assert list_committed_versions(s3, location, "mnist") == {}  # not visible to readers
    manifest = _publish(export_copy, bucket, s3)
    assert _keys(s3, bucket, location.staging_root("mnist")) == []
    assert f"{PREFIX}/mnist/1/junk" not in _keys(s3, bucket)
    assert list_committed_versions(s3, location, "mnist") == {1: manifest}


def test_corrupted_objects_are_caught_by_the_manifest(
    export_copy: Path, s3, bucket: str, tmp_path: Path
) -> None:
    manifest = _publish(export_copy, bucket, s3)
    location = StoreLocation(bucket, PREFIX)
    prefix = location.version_prefix("mnist", 1)
    key = prefix + "variables/variables.index"
    original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    flipped = bytes([original[0] ^ 0xFF]) + original[1:]  # same size, different content
    s3.put_object(Bucket=bucket, Key=key, Body=flipped)
    with pytest.raises(IntegrityError, match=r"variables/variables\.index: sha256 differs"):
        verify_objects(s3, bucket, prefix, manifest)
    _download(s3, bucket, manifest, tmp_path / "copy")
    with pytest.raises(IntegrityError, match=r"variables/variables\.index: sha256 differs"):
        verify_local_tree(tmp_path / "copy", manifest)
    # A truncated object changes the size: readers no longer list the version at all.
    s3.put_object(Bucket=bucket, Key=key, Body=original[:-1])
    assert list_committed_versions(s3, location, "mnist") == {}


def test_large_files_go_multipart_with_progress_and_are_verified(
    export_copy: Path, s3, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = export_copy / "assets.extra" / "vocabulary.bin"
    big.write_bytes(bytes(range(256)) * (6 * 4096 + 7))  # ~6 MiB, two parts of 5 MiB minimum
    monkeypatch.setattr(publish_mod, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)
    monkeypatch.setattr(publish_mod, "PROGRESS_THRESHOLD", 5 * 1024 * 1024)
    stream = io.StringIO()
    args = PublishArgs(export=export_copy, store=f"s3://{bucket}/{PREFIX}")
    manifest = publish(args, s3=s3, stream=stream)
    lines = [line for line in stream.getvalue().splitlines() if "vocabulary.bin" in line]
    assert lines and lines[-1].endswith("(100%)")
    verify_objects(s3, bucket, StoreLocation(bucket, PREFIX).version_prefix("mnist", 1), manifest)


def test_progress_reports_each_tenth_once() -> None:
    stream = io.StringIO()
    progress = Progress("variables.data", 10 * 1024 * 1024, stream)
    for _ in range(40):
        progress(256 * 1024)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0] == "  variables.data: 1.0/10.0 MiB (10%)"
    assert lines[-1] == "  variables.data: 10.0/10.0 MiB (100%)"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "saved_model.pb").unlink(), "saved_model.pb is missing"),
        (lambda d: (d / "saved_model.pb").write_bytes(b"\x0a\xff\xff"), "corrupt or truncated"),
        (lambda d: shutil.rmtree(d / "variables"), "partial SavedModel"),
        (
            lambda d: (d / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"x" * 64),
            "warmup file .* is corrupt",
        ),
    ],
)
def test_broken_exports_are_refused_before_any_upload(
    export_copy: Path, s3, bucket: str, damage, message: str
) -> None:
    damage(export_copy)
    with pytest.raises(ExportError, match=message):
        _publish(export_copy, bucket, s3)
    assert _keys(s3, bucket) == []


def test_export_path_must_end_in_an_integer_version(export_copy: Path, s3, bucket: str) -> None:
    renamed = export_copy.parent / "latest"
    export_copy.rename(renamed)
    with pytest.raises(ExportError, match=r"must be DIR/<name>/<version> with an integer version"):
        _publish(renamed, bucket, s3)


def test_missing_bucket_and_unreachable_endpoint_are_named(export_copy: Path, s3) -> None:
    with pytest.raises(PublishError, match=r"s3://no-such-bucket-1\).*does not exist"):
        _publish(export_copy, "no-such-bucket-1", s3)
    offline = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2),
    )
    with pytest.raises(PublishError, match=r"cannot reach the S3 endpoint"):
        _publish(export_copy, "models-bucket", offline)


def test_cli_publishes_through_the_standard_credential_chain(
    export_copy: Path, moto_endpoint: str, s3, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = f"s3://{bucket}/{PREFIX}"
    command = [sys.executable, "-m", "model", "publish", "--export", str(export_copy)]
    command += ["--store", store, "--endpoint-url", moto_endpoint]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("published mnist/1: ")
    # Once more in-process (same flags, no second interpreter start-up): refused, exit 1.
    assert main(command[3:]) == 1
    assert "is already published; versions are immutable" in capsys.readouterr().err
    assert list(list_committed_versions(s3, StoreLocation(bucket, PREFIX), "mnist")) == [1]


def test_exports_from_elsewhere_publish_without_warmup_or_report(
    tiny_savedmodel: tuple[Path, str], s3, bucket: str
) -> None:
    base, name = tiny_savedmodel
    stream = io.StringIO()
    args = PublishArgs(export=base / "1", store=f"s3://{bucket}/{PREFIX}")
    manifest = publish(args, s3=s3, stream=stream)
    assert "tf_serving_warmup_requests is missing" in stream.getvalue()
    assert "publishing with empty metrics" in stream.getvalue()
    assert manifest.metrics == {} and manifest.model == name
    assert list(list_committed_versions(s3, StoreLocation(bucket, PREFIX), name)) == [1]


def test_export_given_as_the_current_directory(
    export_copy: Path, s3, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(export_copy)
    manifest = _publish(Path("."), bucket, s3)
    assert (manifest.model, manifest.version) == ("mnist", 1)
