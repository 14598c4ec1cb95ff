"""`serving.sync --once` says when a model's store prefix holds nothing committed, and names it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from serving.sync.cli import main


def once(endpoint: str, bucket: str, dest: Path) -> list[str]:
    return [
        "--source",
        f"s3://{bucket}/models",
        "--dest",
        str(dest),
        "--model",
        "mnist",
        "--endpoint-url",
        endpoint,
        "--once",
        "--max-attempts",
        "1",
    ]


def test_an_empty_prefix_is_named(
    moto_endpoint: str, s3, bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # An upload without its manifest is not committed either.
    s3.put_object(Bucket=bucket, Key="models/mnist/1/saved_model.pb", Body=b"x")
    with caplog.at_level(logging.ERROR, logger="serving.sync"):
        assert main(once(moto_endpoint, bucket, tmp_path)) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        m.startswith(f"nothing is committed under s3://{bucket}/models/mnist/ ")
        and "python -m model publish --export DIR/mnist/<version>" in m
        for m in messages
    ), messages


def test_an_unreachable_store_is_not_called_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="serving.sync"):
        assert main(once("http://127.0.0.1:9", "bucket", tmp_path)) == 1
    assert not any("nothing is committed" in r.getMessage() for r in caplog.records)
