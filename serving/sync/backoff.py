"""Bounded exponential backoff with jitter, and per-key retry bookkeeping.

Jitter spreads the retries of many pods hitting the same bucket (the "thundering herd" after an
S3 outage); the bound keeps a long outage from pushing the next attempt out for hours.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backoff:
    """Delay before attempt ``n + 1`` after ``n`` consecutive failures.

    ``min(cap, base * 2 ** (n - 1))`` scaled by a random factor in ``[1 - jitter, 1]`` ("equal
    jitter" when ``jitter`` is 0.5: never less than half the nominal delay, so a failing endpoint
    is not hammered).
    """

    base: float = 1.0
    cap: float = 300.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            raise ValueError(f"backoff needs 0 < base <= cap, got base={self.base} cap={self.cap}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"backoff jitter must be within [0, 1], got {self.jitter}")

    def nominal(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        # Cap the exponent too, so a very long outage cannot overflow the float.
        return min(self.cap, self.base * 2 ** min(failures - 1, 62))

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        nominal = self.nominal(failures)
        return nominal * (1 - self.jitter * rand())


@dataclass
class RetryState:
    """Failures of one key so far, when it may be tried again, and why it last failed."""

    failures: int = 0
    retry_at: float = 0.0
    last_error: str = ""
    last_failed_at: float = 0.0


@dataclass
class RetryTracker:
    """Remembers failing keys (e.g. model versions) and when each may be retried."""

    backoff: Backoff
    rand: Callable[[], float] = random.random
    states: dict[Hashable, RetryState] = field(default_factory=dict)

    def ready(self, key: Hashable, now: float) -> bool:
        state = self.states.get(key)
        return state is None or now >= state.retry_at

    def failed(self, key: Hashable, error: str, now: float) -> RetryState:
        state = self.states.setdefault(key, RetryState())
        state.failures += 1
        state.last_error = error
        state.last_failed_at = now
        state.retry_at = now + self.backoff.delay(state.failures, self.rand)
        return state

    def succeeded(self, key: Hashable) -> None:
        self.states.pop(key, None)

    def forget_except(self, keep: set) -> None:
        for key in list(self.states):
            if key not in keep:
                del self.states[key]

    def next_retry(self) -> float | None:
        return min((s.retry_at for s in self.states.values()), default=None)
