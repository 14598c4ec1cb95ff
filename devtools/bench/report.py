"""Rendering benchmark figures as the Markdown tables docs/benchmark.md shows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from devtools.bench.load import LoadResult
from devtools.bench.raw import RawResult
from devtools.bench.rollout import RolloutResult

__all__ = ["ServerRun", "markdown_report"]


@dataclass(frozen=True)
class ServerRun:
    """One load run against one server over one protocol, with the CPU both sides used."""

    server: str  # "local (batching)" or "naive (model.predict)"
    protocol: str  # "REST" or "gRPC"
    load: LoadResult
    server_cpu: float  # cores busy in the server process, on average
    client_cpu: float  # cores busy in the load generator process, on average


def markdown_report(
    runs: Sequence[ServerRun],
    raw: Sequence[RawResult],
    rollout: RolloutResult | None,
    *,
    machine: str,
    method_note: str,
) -> str:
    raw_by_batch = {r.batch_size: r.images_per_s for r in raw}
    naive = {
        r.load.concurrency: r.load.requests_per_s for r in runs if r.server.startswith("naive")
    }
    lines = [
        f"Machine: {machine}.",
        "",
        "| server | protocol | concurrency | requests/s | p50 ms | p99 ms | failed "
        "| vs naive | of raw in-process | server CPU | client CPU |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        c, rps = run.load.concurrency, run.load.requests_per_s
        model_free = run.server.startswith("null")
        vs_naive = f"{rps / naive[c]:.1f}x" if naive.get(c) and not model_free else "-"
        of_raw = f"{rps / raw_by_batch[c]:.0%}" if raw_by_batch.get(c) and not model_free else "-"
        lines.append(
            f"| {run.server} | {run.protocol} | {c} | {rps:,.0f} | "
            f"{run.load.percentile_ms(50):.1f} | {run.load.percentile_ms(99):.1f} | "
            f"{run.load.failures} | {vs_naive} | {of_raw} | {run.server_cpu:.2f} | "
            f"{run.client_cpu:.2f} |"
        )
    lines += [
        "",
        "| raw in-process (no server) | batch size | images/s | p50 ms / call | p99 ms / call |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in raw:
        lines.append(
            f"| `serving_default` called directly | {r.batch_size} | {r.images_per_s:,.0f} | "
            f"{r.p50_ms:.2f} | {r.p99_ms:.2f} |"
        )
    if rollout is not None:
        load = rollout.load
        versions = ", ".join(
            f"v{tag}: {count:,}" for tag, count in sorted(load.tags.items(), key=lambda kv: str(kv))
        )
        first = (
            f"{rollout.first_new_answer_s:.1f}s" if rollout.first_new_answer_s is not None else "-"
        )
        last = f"{rollout.last_old_answer_s:.1f}s" if rollout.last_old_answer_s is not None else "-"
        lines += [
            "",
            "| rollout | concurrency | requests | failed | wrong answers | answers per version "
            "| delivery | then first answer from new | then last answer from old |",
            "|---|---:|---:|---:|---:|---|---:|---:|---:|",
            f"| v{rollout.old_version} -> v{rollout.new_version} by {rollout.method} | "
            f"{load.concurrency} | {load.succeeded + load.failures:,} | {load.failures} | "
            f"{rollout.wrong_answers} | {versions} | {rollout.deliver_s:.1f}s | {first} | {last} |",
        ]
        for note in rollout.notes:
            lines.append(f"\nNote: {note}")
        for kind, count in load.failure_kinds.items():
            lines.append(f"\nRollout failure {kind} x{count}: {load.failure_examples[kind]}")
    lines += ["", method_note]
    return "\n".join(lines)
