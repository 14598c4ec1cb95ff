"""Benchmark: time from a version's commit in S3 to it being in place locally, at --interval 1.

Starts a moto S3 server on loopback and the real agent (`python -m serving.sync --interval 1`) as a
subprocess, then publishes versions one by one the way `model publish` commits them (objects
first, manifest last: the manifest write is the commit) and measures, for each, the time from the
manifest PUT returning to ``DEST/NAME/<version>`` existing. Publishes are spread at random phases
of the polling interval, so the figures include the wait for the next listing (about half the
interval on average) plus download, verification and rename.

    .venv/bin/python scripts/bench_sync.py [--versions 8] [--size-mb 5] [--interval 1] [--verbose]
        [--hostile]

It also reports the agent's peak resident memory (VmHWM) and, from its /metrics, how many
manifests it downloaded over about ten steady-state polls. With ``--hostile`` the store also
holds a 52 MB manifest and a 200 KB one nested 100,000 arrays deep (issue 14's findings) under
the highest version numbers: the agent must refuse both, keep syncing and stay under the
sidecar's 256 MiB.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from cli.args import positive_float, positive_int

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


def plant_hostile_manifests(s3, bucket: str) -> None:
    from contracts.store import MANIFEST_FORMAT, StoreLocation

    location = StoreLocation(bucket, "models")
    big = b'{"pad": "' + b"x" * (52 * 1024 * 1024) + b'"}'
    deep = f'{{"format": "{MANIFEST_FORMAT}", "metrics": '.encode()
    deep += b"[" * 100_000 + b"]" * 100_000 + b"}"
    for version, body in ((10**6, big), (10**6 + 1, deep)):
        s3.put_object(Bucket=bucket, Key=location.manifest_key(NAME, version), Body=body)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in lines
        if line and not line.startswith("#")
    }


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(path: Path, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_dir():
            return time.monotonic()
        time.sleep(0.005)
    raise TimeoutError(f"{path} did not appear within {timeout}s")


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench_sync.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--versions", type=positive_int, default=8, help="(%(default)s)")
    parser.add_argument("--size-mb", type=positive_float, default=5.0, help="(%(default)s)")
    parser.add_argument(
        "--interval", type=positive_float, default=1.0, help="agent's S3 poll, s (%(default)s)"
    )
    parser.add_argument(
        "--verbose", action="store_true", help="also show the S3 server's access log"
    )
    parser.add_argument(
        "--hostile", action="store_true", help="also plant a 52 MB and a 100,000-deep manifest"
    )
    args = parser.parse_args()
    # moto's server is werkzeug, which logs every request (one line per S3 call) to stderr
    # unless its logger is told otherwise: thousands of lines that bury the figures.
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.verbose else logging.WARNING)
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
        if args.hostile:
            plant_hostile_manifests(s3, "bench")
        metrics_port = free_port()
        command = [sys.executable, "-m", "serving.sync", "--source", "s3://bench/models"]
        command += ["--dest", dest, "--model", NAME, "--interval", str(args.interval)]
        command += ["--endpoint-url", endpoint, "--log-level", "ERROR"]
        command += ["--metrics-port", str(metrics_port), "--health-host", "127.0.0.1"]
        agent = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        latencies = []
        try:
            wait_for(Path(dest, NAME, "1"), 60)
            for version in range(2, args.versions + 2):
                time.sleep(rng.uniform(0, args.interval))  # land at a random polling phase
                publish(s3, "bench", version, size)
                committed = time.monotonic()
                latencies.append(wait_for(Path(dest, NAME, str(version)), 60) - committed)
            started = time.monotonic()
            before = scrape(metrics_port)["tfserving_sync_manifest_downloads_total"]
            time.sleep(10 * args.interval)  # steady state: about ten polls, nothing new
            after = scrape(metrics_port)
            steady = after["tfserving_sync_manifest_downloads_total"] - before
            peak = peak_rss_mib(agent.pid)
            refused = after['tfserving_sync_failures_total{reason="manifest"}']
            alive = agent.poll() is None
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
    print(
        f"  steady state: {steady:g} manifests downloaded in {time.monotonic() - started:.0f}s "
        f"of polling; agent peak RSS {peak:.0f} MiB; manifests refused {refused:g}; "
        f"agent {'running' if alive else 'EXITED'}"
    )
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main())
