"""Where p99 latency crosses a latency objective, from the benchmark's runs: the figure a team
picks a model's scaling target from (docs/autoscaling.md).

The load is closed-loop: at concurrency N the server has about N requests in flight, so the
highest measured concurrency whose p99 stays within the objective is the most in-flight requests
one server holds within it, and its requests/s the most it serves within it. Those are the
``inFlight`` and ``requestsPerSecond`` targets (``models.<name>.scaling.target``) that keep each
pod within the objective; the true crossing lies between two measured concurrencies, so measure
more of them (``--concurrency 1,2,4,8,16,32``) for a closer figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from devtools.bench.report import ServerRun


@dataclass(frozen=True)
class Crossing:
    """One server and protocol against the objective. ``within`` is the highest concurrency whose
    p99 is within it (None: even the lowest crosses it); ``crossed`` the lowest concurrency above
    ``within`` that crosses it (None: none measured does)."""

    server: str
    protocol: str
    objective_ms: float
    within: ServerRun | None
    crossed: ServerRun | None

    def sentence(self) -> str:
        name = f"{self.server} {self.protocol}"
        goal = f"p99 <= {self.objective_ms:g} ms"
        if self.within is None:
            assert self.crossed is not None
            return (
                f"{name}: {goal} is crossed already at concurrency {self.crossed.load.concurrency} "
                f"(p99 {_p99(self.crossed)}): no in-flight target meets it on this server"
            )
        target = (
            f"inFlight target {self.within.load.concurrency} per pod, or requestsPerSecond "
            f"{self.within.load.requests_per_s:,.0f}"
        )
        held = (
            f"held up to concurrency {self.within.load.concurrency} (p99 {_p99(self.within)}, "
            f"{self.within.load.requests_per_s:,.0f} req/s)"
        )
        if self.crossed is None:
            return f"{name}: {goal} {held}, the highest measured; at most a {target}"
        return (
            f"{name}: {goal} {held}, crossed at {self.crossed.load.concurrency} "
            f"(p99 {_p99(self.crossed)}): {target}"
        )

    def as_json(self) -> dict[str, object]:
        def point(run: ServerRun | None) -> dict[str, float] | None:
            if run is None:
                return None
            return {
                "concurrency": run.load.concurrency,
                "p99_ms": run.load.percentile_ms(99),
                "requests_per_s": run.load.requests_per_s,
            }

        return {
            "server": self.server,
            "protocol": self.protocol,
            "objective_ms": self.objective_ms,
            "within": point(self.within),
            "crossed": point(self.crossed),
        }


def _p99(run: ServerRun) -> str:
    return f"{run.load.percentile_ms(99):.1f} ms"


def crossings(runs: Sequence[ServerRun], objective_ms: float) -> list[Crossing]:
    """Per server and protocol (in the order first run), where p99 crosses `objective_ms`. Runs
    with failed requests never count as within the objective."""
    if not objective_ms > 0:
        raise ValueError(f"latency objective {objective_ms!r} ms: must be positive")
    groups: dict[tuple[str, str], list[ServerRun]] = {}
    for run in runs:
        groups.setdefault((run.server, run.protocol), []).append(run)
    found = []
    for (server, protocol), group in groups.items():
        ordered = sorted(group, key=lambda r: r.load.concurrency)
        within = crossed = None
        for run in ordered:
            ok = run.load.succeeded > 0 and run.load.failures == 0
            if ok and run.load.percentile_ms(99) <= objective_ms:
                within, crossed = run, None
            elif crossed is None:
                crossed = run
        found.append(Crossing(server, protocol, objective_ms, within, crossed))
    return found
