"""The ceiling: the same SavedModel called in-process, with no server, at fixed batch sizes.

Creates `measure_raw`, which loads a version directory with ``tf.saved_model.load`` and calls
its ``serving_default`` concrete function back to back, one thread, for each batch size. The
result (images per second at batch 1, 8 and 32) is what a server's requests per second are
compared with: a server doing single-image requests at concurrency N can at best approach the
raw figure for batch N, when its batching merges the N in-flight requests into one call.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["RawResult", "measure_raw"]


@dataclass(frozen=True)
class RawResult:
    batch_size: int
    calls: int
    elapsed_s: float
    p50_ms: float
    p99_ms: float

    @property
    def images_per_s(self) -> float:
        return self.calls * self.batch_size / self.elapsed_s


def measure_raw(
    version_dir: Path, images: np.ndarray, batch_sizes: Sequence[int], duration_s: float
) -> list[RawResult]:
    """Call the signature for `duration_s` seconds per batch size (after 5 warm-up calls)."""
    from model.tf_runtime import tensorflow

    tf = tensorflow()  # without the CPU-only GPU-probe noise

    loaded = tf.saved_model.load(str(version_dir))
    serve = loaded.signatures["serving_default"]
    results = []
    for batch_size in batch_sizes:
        reps = -(-batch_size // len(images))
        batch = tf.constant(np.concatenate([images] * reps)[:batch_size], dtype=tf.float32)
        for _ in range(5):
            serve(images=batch)
        latencies = []
        began = time.perf_counter()
        deadline = began + duration_s
        while True:
            start = time.perf_counter()
            outputs = serve(images=batch)
            outputs["classes"].numpy()  # make sure the result is materialised
            end = time.perf_counter()
            latencies.append((end - start) * 1000.0)
            if end >= deadline:
                break
        results.append(
            RawResult(
                batch_size=batch_size,
                calls=len(latencies),
                elapsed_s=time.perf_counter() - began,
                p50_ms=float(np.percentile(latencies, 50)),
                p99_ms=float(np.percentile(latencies, 99)),
            )
        )
    return results
