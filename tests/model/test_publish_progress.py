"""`model publish` shows its progress: what it is doing at each of its three steps."""

from __future__ import annotations

import io
from pathlib import Path

from model.publish import PublishArgs, publish


def test_publish_says_what_it_does_in_three_steps(export_copy: Path, s3, bucket: str) -> None:
    stream = io.StringIO()
    store = f"s3://{bucket}/models"
    manifest = publish(PublishArgs(export=export_copy, store=store), s3=s3, stream=stream)
    steps = [line for line in stream.getvalue().splitlines() if line.startswith("[")]
    mib = manifest.total_bytes / (1024 * 1024)
    assert steps == [
        f"[1/3] validating {export_copy} (loads TensorFlow and the model: ~10 s)",
        f"[2/3] checking {store} and the signatures of mnist's versions there",
        f"[3/3] uploading {len(manifest.files)} files ({mib:.1f} MiB) to staging, verifying, "
        f"committing {store}/mnist/1",
    ]
