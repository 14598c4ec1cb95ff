"""The store layout and manifest: what the writer and every reader agree on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contracts import store
from contracts.store import FileEntry, StoreLocation, VersionManifest

SHA = "0" * 64


def _manifest(
    files: tuple[FileEntry, ...], model: str = "mnist", version: int = 3
) -> VersionManifest:
    return VersionManifest(
        model, version, "2026-01-01T00:00:00Z", files, {"inputs": {}}, {"acc": 0.98}
    )


def _put_version(
    s3, bucket: str, loc: StoreLocation, tmp_path: Path, version: int
) -> VersionManifest:
    root = tmp_path / str(version)
    (root / "variables").mkdir(parents=True)
    (root / "saved_model.pb").write_bytes(b"graph" * version)
    (root / "variables" / "variables.index").write_bytes(b"index")
    manifest = _manifest(store.scan_export(root), version=version)
    for entry in manifest.files:
        key = loc.version_prefix("mnist", version) + entry.path
        s3.put_object(Bucket=bucket, Key=key, Body=(root / entry.path).read_bytes())
    s3.put_object(Bucket=bucket, Key=loc.manifest_key("mnist", version), Body=manifest.to_json())
    return manifest


@pytest.mark.parametrize(
    ("uri", "bucket", "prefix"),
    [
        ("s3://my-bucket", "my-bucket", ""),
        ("s3://my-bucket/", "my-bucket", ""),
        ("s3://my-bucket/models", "my-bucket", "models"),
        ("s3://my-bucket/a/b/", "my-bucket", "a/b"),
    ],
)
def test_location_parses(uri: str, bucket: str, prefix: str) -> None:
    loc = StoreLocation.parse(uri)
    assert (loc.bucket, loc.prefix) == (bucket, prefix)
    assert StoreLocation.parse(loc.uri) == loc


@pytest.mark.parametrize("uri", ["my-bucket/models", "s3://", "s3://UPPER/x", "gs://b/x", "s3://b"])
def test_location_rejects(uri: str) -> None:
    with pytest.raises(store.StoreURIError, match="invalid"):
        StoreLocation.parse(uri)


def test_layout_keys() -> None:
    loc = StoreLocation.parse("s3://bucket-1/models")
    assert loc.model_prefix("mnist") == "models/mnist/"
    assert loc.version_prefix("mnist", 7) == "models/mnist/7/"
    assert loc.manifest_key("mnist", 7) == "models/mnist/7/manifest.json"
    assert loc.staging_prefix("mnist", 7, "abc") == "models/mnist/.staging/7-abc/"
    assert StoreLocation("bucket-1").version_prefix("mnist", 1) == "mnist/1/"


@pytest.mark.parametrize("version", [0, -1, "01", "1.5", "x"])
def test_versions_are_positive_integers(version) -> None:
    with pytest.raises(store.StoreURIError, match="positive integer"):
        store.validate_version(version)
    assert store.parse_version_dir(str(version)) is None


@pytest.mark.parametrize("path", ["", "/abs", "../up", "a/../b", "a//b", "manifest.json"])
def test_unsafe_paths_rejected(path: str) -> None:
    with pytest.raises(store.ManifestError):
        FileEntry(path, 1, SHA)


def test_manifest_round_trip_and_expectations() -> None:
    manifest = _manifest((FileEntry("b", 2, SHA), FileEntry("a/x", 1, SHA)))
    parsed = VersionManifest.from_json(manifest.to_json(), model="mnist", version=3)
    assert parsed.files == manifest.files
    assert [f["path"] for f in json.loads(manifest.to_json())["files"]] == ["a/x", "b"]
    assert parsed.total_bytes == 3
    with pytest.raises(store.ManifestError, match="names version 3"):
        VersionManifest.from_json(manifest.to_json(), model="mnist", version=4)
    with pytest.raises(store.ManifestError, match="unreadable"):
        VersionManifest.from_json(b"{not json", model="mnist", version=3)
    with pytest.raises(store.ManifestError, match="format"):
        VersionManifest.from_json(b'{"format": "other"}')


def test_scan_and_verify_local_tree(tmp_path: Path) -> None:
    (tmp_path / "variables").mkdir()
    (tmp_path / "saved_model.pb").write_bytes(b"abc")
    (tmp_path / "variables" / "variables.data").write_bytes(b"0123456789")
    manifest = _manifest(store.scan_export(tmp_path))
    assert [(f.path, f.size) for f in manifest.files] == [
        ("saved_model.pb", 3),
        ("variables/variables.data", 10),
    ]
    store.verify_local_tree(tmp_path, manifest)

    (tmp_path / "variables" / "variables.data").write_bytes(b"0123456780")
    with pytest.raises(store.IntegrityError, match=r"variables\.data: sha256 differs"):
        store.verify_local_tree(tmp_path, manifest)
    (tmp_path / "variables" / "variables.data").write_bytes(b"short")
    with pytest.raises(store.IntegrityError, match="size 5, manifest says 10"):
        store.verify_local_tree(tmp_path, manifest)
    (tmp_path / "extra").write_bytes(b"")
    (tmp_path / "saved_model.pb").unlink()
    with pytest.raises(store.IntegrityError, match=r"missing saved_model\.pb.*unexpected extra"):
        store.verify_local_tree(tmp_path, manifest)


def test_list_committed_versions(s3, bucket: str, tmp_path: Path) -> None:
    loc = StoreLocation(bucket, "models")
    v1 = _put_version(s3, bucket, loc, tmp_path, 1)
    _put_version(s3, bucket, loc, tmp_path, 2)
    # version 3: files uploaded, no manifest yet (publish in progress)
    s3.put_object(Bucket=bucket, Key=loc.version_prefix("mnist", 3) + "saved_model.pb", Body=b"x")
    # version 2: a listed file went missing, so the manifest no longer matches
    s3.delete_object(Bucket=bucket, Key=loc.version_prefix("mnist", 2) + "saved_model.pb")
    # version 4: unreadable manifest; staging objects and non-version keys are never versions
    s3.put_object(Bucket=bucket, Key=loc.manifest_key("mnist", 4), Body=b"garbage")
    s3.put_object(
        Bucket=bucket, Key=loc.staging_prefix("mnist", 5, "t") + "manifest.json", Body=b""
    )
    s3.put_object(Bucket=bucket, Key="models/mnist/notes.txt", Body=b"")

    committed = store.list_committed_versions(s3, loc, "mnist")
    assert list(committed) == [1]
    assert committed[1] == v1
    assert store.read_manifest(s3, loc, "mnist", 3) is None
    assert store.list_committed_versions(s3, loc, "other") == {}


def test_manifest_bounds_are_checked_before_parsing() -> None:
    good = _manifest((FileEntry("saved_model.pb", 1, SHA),)).to_json()
    assert store.parse_manifest(good, "mnist", 3).version == 3
    deep = b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"  # ~200 KB, RecursionError in json
    with pytest.raises(store.ManifestError, match="nests deeper than 32 levels"):
        store.parse_manifest(deep, "mnist", 3)
    # Brackets inside strings are not nesting.
    store.check_manifest_bounds(b'{"s": "' + b"[" * 1000 + b'"}')
    big = b'{"s": "' + b"x" * store.MAX_MANIFEST_BYTES + b'"}'
    with pytest.raises(store.ManifestError, match=r"over the 4194304-byte limit"):
        store.parse_manifest(big, "mnist", 3)


@pytest.mark.parametrize("path", ["a\x00b", "variables/\x01x", "a\\b", "../x", "/abs", "a//b"])
def test_unsafe_file_paths_are_refused(path: str) -> None:
    with pytest.raises(store.ManifestError, match="unsafe file path"):
        FileEntry(path, 1, SHA)


def test_content_prefix_names_the_file_list_not_the_metadata() -> None:
    loc = StoreLocation("bucket-1", "models")
    files = (FileEntry("saved_model.pb", 1, SHA),)
    a, b = _manifest(files), _manifest(files)
    b = VersionManifest(b.model, b.version, "2027-01-01T00:00:00Z", files, {}, {"acc": 0.5})
    assert store.content_prefix(loc, a) == store.content_prefix(loc, b)
    assert store.content_prefix(loc, a).startswith("models/mnist/.content/3-")
    other = _manifest((FileEntry("saved_model.pb", 2, SHA),))
    assert store.content_prefix(loc, other) != store.content_prefix(loc, a)


def test_list_committed_reads_content_prefixes_caches_by_etag_and_explains(
    s3, bucket: str, tmp_path: Path
) -> None:
    loc = StoreLocation(bucket, "models")
    legacy = _put_version(s3, bucket, loc, tmp_path, 1)  # files under the version prefix
    root = tmp_path / "content"
    root.mkdir()
    (root / "saved_model.pb").write_bytes(b"new")
    v2 = _manifest(store.scan_export(root), version=2)
    prefix = store.content_prefix(loc, v2)
    s3.put_object(Bucket=bucket, Key=prefix + "saved_model.pb", Body=b"new")
    s3.put_object(Bucket=bucket, Key=loc.manifest_key("mnist", 2), Body=v2.to_json())
    s3.put_object(Bucket=bucket, Key=loc.manifest_key("mnist", 3), Body=b"[" * 64 + b"]" * 64)
    cache = store.ManifestCache()
    listing = store.list_committed(s3, loc, "mnist", cache)
    assert {v: c.manifest for v, c in listing.versions.items()} == {1: legacy, 2: v2}
    assert listing.versions[1].prefix == loc.version_prefix("mnist", 1)
    assert listing.versions[2].prefix == prefix
    assert "nests deeper" in listing.problems[3]
    assert cache.downloads == 3
    store.list_committed(s3, loc, "mnist", cache)
    assert cache.downloads == 3  # nothing changed: nothing downloaded, failures included
    s3.put_object(Bucket=bucket, Key=loc.manifest_key("mnist", 3), Body=b"{}")
    again = store.list_committed(s3, loc, "mnist", cache)
    assert cache.downloads == 4 and "unknown manifest format" in again.problems[3]
