"""Publishing an export to a real (moto) S3 endpoint: whole versions only, immutable, verified."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import threading
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
    content_prefix,
    list_committed,
    list_committed_versions,
    read_manifest,
    scan_export,
    verify_local_tree,
)
from model import publish as publish_mod
from model.__main__ import main
from model.errors import ExportError, PublishError
from model.publish import ConcurrentPublishError, Progress, PublishArgs, publish, verify_objects
from model.recipes.mnist import Mnist

PREFIX = "models"
# The model's contract marker (model/publish_contract.py), beside its versions.
CONTRACT = f"{PREFIX}/mnist/.contract.json"


def _client(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def _keys(s3, bucket: str, prefix: str = "") -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def _publish(export: Path, bucket: str, s3, *, force: bool = False) -> VersionManifest:
    args = PublishArgs(export=export, store=f"s3://{bucket}/{PREFIX}", force=force)
    return publish(args, s3=s3, stream=io.StringIO())


def _download(s3, bucket: str, manifest: VersionManifest, target: Path) -> None:
    prefix = _prefix(s3, bucket, manifest)
    for entry in manifest.files:
        path = target / entry.path
        path.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, prefix + entry.path, str(path))


def _prefix(s3, bucket: str, manifest: VersionManifest) -> str:
    """Where the store keeps a committed version's files (its content prefix)."""
    listing = list_committed(s3, StoreLocation(bucket, PREFIX), manifest.model)
    return listing.versions[manifest.version].prefix


def _second_export(export_copy: Path, tmp_path: Path, note: str) -> Path:
    """Another export of mnist/1 whose files differ (one more asset)."""
    other = tmp_path / f"other-{note}" / "mnist" / "1"
    shutil.copytree(export_copy, other)
    (other / "assets.extra" / "notes.txt").write_text(f"{note}\n")
    return other


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
    assert {k: manifest.signature[k] for k in ("inputs", "outputs")} == Mnist.signature
    assert 0 <= manifest.metrics["test"]["accuracy"] <= 1
    assert len(manifest.metrics["inputs_fingerprint"]) == 64
    # Exactly the files (under the content prefix) plus the manifest; nothing else.
    content = content_prefix(location, manifest)
    assert content.startswith(f"{PREFIX}/mnist/.content/1-")
    assert _keys(s3, bucket) == sorted(
        [content + f.path for f in manifest.files] + [f"{PREFIX}/mnist/1/manifest.json", CONTRACT]
    )
    _download(s3, bucket, manifest, tmp_path / "copy")
    verify_local_tree(tmp_path / "copy", manifest)


def test_versions_are_immutable_and_force_replaces_in_one_conditional_write(
    export_copy: Path, moto_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    s3 = _client(moto_endpoint)
    location = StoreLocation(bucket, PREFIX)
    first = _publish(export_copy, bucket, s3)
    with pytest.raises(VersionExistsError, match=r"mnist/1 is already published; versions are"):
        _publish(export_copy, bucket, s3)

    calls: list[str] = []
    seen_before_commit: list[dict] = []
    etag = s3.head_object(Bucket=bucket, Key=f"{PREFIX}/mnist/1/manifest.json")["ETag"]

    def record(model, params, **_):
        if "Key" in params:
            calls.append(f"{model.name} {params['Key']}")
        if model.name == "PutObject" and params["Key"].endswith("/1/manifest.json"):
            assert params.get("IfMatch") == etag  # replaces exactly the version it read
            reader = _client(moto_endpoint)  # what an agent sees just before the commit
            seen_before_commit.append(list_committed_versions(reader, location, "mnist"))

    s3.meta.events.register("before-parameter-build.s3", record)
    second = _publish(_second_export(export_copy, tmp_path, "retrained"), bucket, s3, force=True)
    manifest_key = f"{PREFIX}/mnist/1/manifest.json"
    writes = [c for c in calls if not c.startswith(("GetObject", "HeadObject"))]
    assert f"DeleteObject {manifest_key}" not in writes  # never withdrawn: no gap for readers
    assert writes.count(f"PutObject {manifest_key}") == 1
    assert seen_before_commit == [{1: first}]
    assert second.files != first.files
    assert list_committed_versions(s3, location, "mnist") == {1: second}
    # The replaced content is gone: the store holds exactly the new version.
    assert _keys(s3, bucket) == sorted(
        [content_prefix(location, second) + f.path for f in second.files] + [manifest_key, CONTRACT]
    )


def _race(publishes: list, timeout: float = 60) -> list:
    """Run publishes in threads that all reach their commit PUT before any makes it."""
    barrier = threading.Barrier(len(publishes), timeout=timeout)
    results: list = [None] * len(publishes)

    def run(index: int, client, call) -> None:
        def hold(model, params, **_):
            if params.get("Key", "").endswith("/manifest.json"):
                barrier.wait()

        client.meta.events.register("before-parameter-build.s3.PutObject", hold)
        try:
            results[index] = call(client)
        except Exception as exc:  # the outcome under test
            results[index] = exc

    threads = [
        threading.Thread(target=run, args=(i, client, call))
        for i, (client, call) in enumerate(publishes)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return results


@pytest.mark.parametrize("force", [False, True], ids=["new-version", "force"])
def test_concurrent_publishes_of_one_version_exactly_one_wins(
    export_copy: Path, moto_endpoint: str, bucket: str, tmp_path: Path, force: bool
) -> None:
    location = StoreLocation(bucket, PREFIX)
    if force:
        old = _publish(export_copy, bucket, _client(moto_endpoint))
    exports = [_second_export(export_copy, tmp_path, note) for note in ("a", "b")]
    results = _race(
        [
            (_client(moto_endpoint), lambda c, e=export: _publish(e, bucket, c, force=force))
            for export in exports
        ]
    )
    winners = [r for r in results if isinstance(r, VersionManifest)]
    losers = [r for r in results if not isinstance(r, VersionManifest)]
    assert len(winners) == 1 and len(losers) == 1, results
    assert isinstance(losers[0], ConcurrentPublishError)
    assert "a concurrent publish of this version won" in str(losers[0])
    (winner,) = winners
    s3 = _client(moto_endpoint)
    assert list_committed_versions(s3, location, "mnist") == {1: winner}
    # Exactly the winner's files: no stray object of the loser, none of the replaced version.
    assert _keys(s3, bucket) == sorted(
        [content_prefix(location, winner) + f.path for f in winner.files]
        + [f"{PREFIX}/mnist/1/manifest.json", CONTRACT]
    )
    if force:
        assert content_prefix(location, old) != content_prefix(location, winner)


def test_a_loser_with_identical_files_keeps_the_winners_content(
    export_copy: Path, moto_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    twin = tmp_path / "twin" / "mnist" / "1"
    shutil.copytree(export_copy, twin)
    results = _race(
        [
            (_client(moto_endpoint), lambda c, e=export: _publish(e, bucket, c))
            for export in (export_copy, twin)
        ]
    )
    assert sorted(type(r).__name__ for r in results) == [
        "ConcurrentPublishError",
        "VersionManifest",
    ]
    (winner,) = [r for r in results if isinstance(r, VersionManifest)]
    s3 = _client(moto_endpoint)
    _download(s3, bucket, winner, tmp_path / "copy")  # every file still there
    verify_local_tree(tmp_path / "copy", winner)


def test_the_cli_loser_exits_non_zero_naming_the_race(
    export_copy: Path, moto_endpoint: str, bucket: str, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    def lose(args, **_):
        raise ConcurrentPublishError("s3://x/mnist/1: a concurrent publish of this version won")

    monkeypatch.setattr(publish_mod, "publish", lose)
    command = ["publish", "--export", str(export_copy), "--store", f"s3://{bucket}/{PREFIX}"]
    assert main([*command, "--endpoint-url", moto_endpoint]) == 1
    assert "a concurrent publish of this version won" in capsys.readouterr().err


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
    with pytest.raises(PublishError, match=r"cannot reach the S3 endpoint .* uploading"):
        _publish(export_copy, bucket, s3)
    assert "/.content/1-" in uploads[0]
    assert list_committed_versions(s3, StoreLocation(bucket, PREFIX), "mnist") == {}
    assert _keys(s3, bucket) == []  # the upload removed on the way out


def test_the_next_publish_cleans_up_after_an_interrupted_one(
    export_copy: Path, s3, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    location = StoreLocation(bucket, PREFIX)
    # What killed publishes leave: an old-style staging tree, an upload no manifest points at,
    # and a file under the uncommitted version prefix.
    stale = location.staging_prefix("mnist", 1, "deadbeef") + "saved_model.pb"
    orphan = f"{PREFIX}/mnist/.content/1-0123456789abcdef/saved_model.pb"
    for key in (stale, orphan, location.version_prefix("mnist", 1) + "junk"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"half")
    assert list_committed_versions(s3, location, "mnist") == {}  # not visible to readers
    # Younger than STALE_CONTENT_SECONDS, an upload may be a concurrent publish's: kept.
    manifest = _publish(export_copy, bucket, s3, force=False)
    assert stale in _keys(s3, bucket) and orphan in _keys(s3, bucket)
    assert f"{PREFIX}/mnist/1/junk" not in _keys(s3, bucket)
    monkeypatch.setattr(publish_mod, "STALE_CONTENT_SECONDS", 0)
    _publish(export_copy, bucket, s3, force=True)
    assert stale not in _keys(s3, bucket) and orphan not in _keys(s3, bucket)
    assert list_committed_versions(s3, location, "mnist")[1].files == manifest.files


def test_corrupted_objects_are_caught_by_the_manifest(
    export_copy: Path, s3, bucket: str, tmp_path: Path
) -> None:
    manifest = _publish(export_copy, bucket, s3)
    location = StoreLocation(bucket, PREFIX)
    prefix = _prefix(s3, bucket, manifest)
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
    verify_objects(s3, bucket, _prefix(s3, bucket, manifest), manifest)


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


def test_an_upload_removed_before_the_commit_is_not_reported_published(
    export_copy: Path, moto_endpoint: str, bucket: str
) -> None:
    s3 = _client(moto_endpoint)

    def remove_upload(model, params, **_):  # what a cleanup taking it for stale would do
        if model.name == "PutObject" and params["Key"].endswith("/manifest.json"):
            other = _client(moto_endpoint)
            for key in _keys(other, bucket, f"{PREFIX}/mnist/.content/"):
                other.delete_object(Bucket=bucket, Key=key)

    s3.meta.events.register("before-parameter-build.s3", remove_upload)
    with pytest.raises(PublishError, match="written but mnist/1: files listed in its manifest are"):
        _publish(export_copy, bucket, s3)
