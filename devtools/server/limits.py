"""Memory limits of one request and of all requests in flight, checked before allocating.

Creates nothing at import. `RequestLimits` carries the per-request bounds the gRPC decoder checks
on a tensor's *declared* shape and dtype (so one 49-byte ``float_val`` declaring
``[1100000,28,28,1]`` is refused before numpy expands it); `ByteBudget` bounds what all requests
in flight hold, each through its `Account` (the body bytes that arrived, and 1/MEMORY_FACTOR of
the memory it is estimated to cause: `devtools.server.costs`), so many large requests at once
are refused with RESOURCE_EXHAUSTED (HTTP 429) instead of growing the process until the kernel
kills it. TF Serving has neither; both limits are this stand-in's additions
(``--max_request_tensor_bytes``, ``--max_inflight_request_bytes``).
"""

from __future__ import annotations

import contextvars
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from devtools.server.errors import ResourceExhausted

DEFAULT_MAX_TENSOR_BYTES = 64 * 1024 * 1024
# What every request in flight together may use in memory, at most, as a multiple of the
# budget (docs/hostile-input.md, "Memory"): a request holds at least 1/MEMORY_FACTOR of what it
# is estimated to cost (`Account.estimate`), and never less than the bytes it brought.
MEMORY_FACTOR = 16


@dataclass(frozen=True)
class RequestLimits:
    """Bounds on one request's decoded input tensors."""

    max_tensor_bytes: int
    max_batch_size: int | None = None  # with --enable_batching: dim 0 of every input


class ByteBudget:
    """A thread-safe pool of bytes; `reserve` holds some for the duration of a request."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    def take(self, size: int, what: str) -> None:
        """Hold `size` bytes, or raise ResourceExhausted at once when they are not free.

        Failing fast (instead of queueing) keeps a flood of large requests from holding threads
        and sockets; the client sees 429 / RESOURCE_EXHAUSTED and may retry.
        """
        with self._lock:
            if self._used + size > self.capacity:
                raise ResourceExhausted(
                    f"{what} of {size} bytes would exceed the {self.capacity} bytes this server "
                    f"accepts in flight at once ({self._used} in use; "
                    "--max_inflight_request_bytes); retry later"
                )
            self._used += size

    def give(self, size: int) -> None:
        """Return bytes held by `take`."""
        with self._lock:
            self._used -= size


class Account:
    """One request's hold on a `ByteBudget`, grown as what it may cost becomes known.

    `hold_at_least` holds bytes the request has (a body as it arrives, declared tensor bytes);
    `estimate` adds to what it may allocate (parsing, decoding, the model, the answer) and holds
    1/MEMORY_FACTOR of the running total. Either raises ResourceExhausted (429) when the budget
    cannot give what is needed; `release` gives everything back.
    """

    def __init__(self, budget: ByteBudget, what: str) -> None:
        self.budget, self.what = budget, what
        self.held = 0
        self.estimated = 0

    def hold_at_least(self, size: int) -> None:
        more = size - self.held
        if more > 0:
            self.budget.take(more, self.what)
            self.held += more

    def estimate(self, size: int) -> None:
        self.estimated += max(size, 0)
        self.hold_at_least(math.ceil(self.estimated / MEMORY_FACTOR))

    def release(self) -> None:
        held, self.held = self.held, 0
        if held:
            self.budget.give(held)


_ACCOUNT: contextvars.ContextVar[Account | None] = contextvars.ContextVar("account", default=None)


@contextmanager
def account(budget: ByteBudget, what: str) -> Iterator[Account]:
    """The request's `Account` for the duration of a with-block, found by `estimate` below."""
    acct = Account(budget, what)
    token = _ACCOUNT.set(acct)
    try:
        yield acct
    finally:
        _ACCOUNT.reset(token)
        acct.release()


def estimate(size: int) -> None:
    """Add `size` bytes to the current request's estimate (nothing outside a request: warmup)."""
    acct = _ACCOUNT.get()
    if acct is not None:
        acct.estimate(size)
