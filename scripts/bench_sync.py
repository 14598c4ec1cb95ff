"""Benchmark: time from a version's commit in S3 to it being in place locally, at --interval 1.

Starts a moto S3 server on loopback and the real agent (`python -m serving.sync --interval 1`) as a
subprocess, then publishes versions one by one the way `model publish` commits them (objects
first, manifest last: the manifest write is the commit) and measures, for each, the time from the
manifest PUT returning to ``DEST/NAME/<version>`` existing. Publishes are spread at random phases
of the polling interval, so the figures include the wait for the next listing (about half the
interval on average) plus download, verification and rename.

    .venv/bin/python scripts/bench_sync.py [--versions 8] [--size-mb 5] [--interval 1]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "mnist"


def publish(s3, bucket: str, version: int, size: int) -> None:
    from contracts.store import FileEntry, StoreLocation, VersionManifest

    location = StoreLocation(bucket, "models")
    files = {
        "saved_model.pb": os.urandom(64 << 10),
        "variables/variables.index": os.urandom(1 << 10),
        "variables/variables.data-00000-of-00001": os.urandom(size),
    }
    for path, data in files.items():
        s3.put_object(Bucket=bucket, Key=location.version_prefix(NAME, version) + path, Body=data)
    manifest = VersionManifest(
        model=NAME,
        version=version,
        created=datetime.now(UTC).isoformat(),
        files=tuple(
            FileEntry(p, len(d), hashlib.sha256(d).hexdigest()) for p, d in sorted(files.items())
        ),
    )
    s3.put_object(Bucket=bucket, Key=location.manifest_key(NAME, version), Body=manifest.to_json())


def wait_for(path: Path, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_dir():
            return time.monotonic()
        time.sleep(0.005)
    raise TimeoutError(f"{path} did not appear within {timeout}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", type=int, default=8)
    parser.add_argument("--size-mb", type=float, default=5.0)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    sys.path.insert(0, str(ROOT))
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket="bench")
    size = int(args.size_mb * (1 << 20))
    rng = random.Random(4)
    with tempfile.TemporaryDirectory() as dest:
        publish(s3, "bench", 1, size)
        command = [sys.executable, "-m", "serving.sync", "--source", "s3://bench/models"]
        command += ["--dest", dest, "--model", NAME, "--interval", str(args.interval)]
        command += ["--endpoint-url", endpoint, "--log-level", "WARNING"]
        agent = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        latencies = []
        try:
            wait_for(Path(dest, NAME, "1"), 60)
            for version in range(2, args.versions + 2):
                time.sleep(rng.uniform(0, args.interval))  # land at a random polling phase
                publish(s3, "bench", version, size)
                committed = time.monotonic()
                latencies.append(wait_for(Path(dest, NAME, str(version)), 60) - committed)
        finally:
            agent.terminate()
            agent.wait(timeout=30)
            server.stop()
    latencies.sort()
    print(
        f"publish -> in place locally, --interval {args.interval:g}s, {args.size_mb:g} MB "
        f"variables, {len(latencies)} versions:"
    )
    print(
        f"  min {latencies[0]:.2f}s  median {statistics.median(latencies):.2f}s  "
        f"max {latencies[-1]:.2f}s  mean {statistics.fmean(latencies):.2f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
