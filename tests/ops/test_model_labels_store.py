"""model_labels checks the label's version against the stack's store (a real loopback S3)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from contracts.store import FileEntry, StoreLocation, VersionManifest
from ops import model_labels

ROOT = Path(__file__).resolve().parents[2]


def commit(s3, bucket: str, version: int) -> None:
    """Commit `mnist/<version>` the way `model publish` does: files first, manifest last."""
    location = StoreLocation(bucket, "models")
    data = f"weights of {version}".encode()
    s3.put_object(Bucket=bucket, Key=location.version_prefix("mnist", version) + "w.bin", Body=data)
    entry = FileEntry("w.bin", len(data), hashlib.sha256(data).hexdigest())
    manifest = VersionManifest("mnist", version, "2026-01-01T00:00:00+00:00", (entry,))
    s3.put_object(
        Bucket=bucket, Key=location.manifest_key("mnist", version), Body=manifest.to_json()
    )


def run(argv: list[str], capsys) -> tuple[int, str]:
    code = model_labels.main(["--stack", "dev", "--model", "mnist", "--label", "canary", *argv])
    return code, capsys.readouterr().err


def test_a_committed_version_moves_and_says_it_was_checked(
    stack_root: Path, s3, bucket: str, moto_endpoint: str, capsys
) -> None:
    commit(s3, bucket, 3)
    store = f"s3://{bucket}/models"
    where = ["--version", "3", "--store", store, "--endpoint-url", moto_endpoint]
    before = (stack_root / "Pulumi.dev.yaml").read_text()
    # --dry-run (the model pipeline's check): checked and validated, nothing written.
    code = model_labels.main(
        ["--stack", "dev", "--model", "mnist", "--label", "canary", *where, "--dry-run"]
    )
    assert code == 0
    assert capsys.readouterr().out.endswith("-> 3 (--dry-run: not written)\n")
    assert (stack_root / "Pulumi.dev.yaml").read_text() == before
    code, err = run(where, capsys)
    assert code == 0, err
    assert f"checked: {store}/mnist/3 is committed" in err
    assert "canary: 3" in (stack_root / "Pulumi.dev.yaml").read_text()


def test_a_version_never_published_is_refused_naming_the_committed_ones(
    stack_root: Path, s3, bucket: str, moto_endpoint: str, capsys, monkeypatch
) -> None:
    commit(s3, bucket, 1)
    commit(s3, bucket, 2)
    # An upload without its manifest (a publish in progress) is not committed either.
    location = StoreLocation(bucket, "models")
    s3.put_object(Bucket=bucket, Key=location.version_prefix("mnist", 9) + "w.bin", Body=b"x")
    before = (stack_root / "Pulumi.dev.yaml").read_text()
    monkeypatch.setenv(model_labels.STORE_ENV, f"s3://{bucket}/models")  # the env var works too
    code, err = run(["--version", "9", "--endpoint-url", moto_endpoint], capsys)
    assert code == 2
    assert f"version 9 of 'mnist' is not committed in s3://{bucket}/models" in err
    assert "committed versions: 1, 2. Publish it first (python -m model publish" in err
    assert (stack_root / "Pulumi.dev.yaml").read_text() == before


def test_offline_it_says_it_could_not_check(stack_root: Path, capsys) -> None:
    dead = ["--store", "s3://nowhere/models", "--endpoint-url", "http://127.0.0.1:9"]
    before = (stack_root / "Pulumi.dev.yaml").read_text()
    # Required (the model pipeline): refused, nothing changed.
    code, err = run(["--version", "4", *dead, "--require-store-check"], capsys)
    assert code == 1
    assert "could not check s3://nowhere/models: EndpointConnectionError" in err
    assert "nothing was changed (--require-store-check)" in err
    assert (stack_root / "Pulumi.dev.yaml").read_text() == before
    # Not required (a person at a laptop): moves, and says plainly it was not verified.
    code, err = run(["--version", "4", *dead], capsys)
    assert code == 0
    assert "warning: could not check s3://nowhere/models" in err
    assert "the label moves to version 4 UNVERIFIED" in err
    # No store at all: says it was not looked up.
    code, err = run(["--version", "5"], capsys)
    assert code == 0
    assert "not checked: version 5 was not looked up in a store" in err


def test_require_store_check_without_a_store_is_a_usage_error(stack_root: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(["--version", "4", "--require-store-check"], capsys)
    assert exit_info.value.code == 2
    assert "--require-store-check needs --store" in capsys.readouterr().err
