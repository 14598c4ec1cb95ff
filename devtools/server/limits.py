"""Memory limits of one request and of all requests in flight, checked before allocating.

Creates nothing at import. `RequestLimits` carries the per-request bounds the gRPC decoder checks
on a tensor's *declared* shape and dtype (so one 49-byte ``float_val`` declaring
``[1100000,28,28,1]`` is refused before numpy expands it); `ByteBudget` bounds the bytes of all
requests being read or decoded at once (REST bodies by ``Content-Length``, gRPC inputs by their
declared size), so many large requests at once are refused with RESOURCE_EXHAUSTED (HTTP 429)
instead of growing the process until the kernel kills it. TF Serving has neither; both limits are
this stand-in's additions (``--max_request_tensor_bytes``, ``--max_inflight_request_bytes``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from devtools.server.errors import ResourceExhausted

DEFAULT_MAX_TENSOR_BYTES = 64 * 1024 * 1024


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

    @contextmanager
    def reserve(self, size: int, what: str) -> Iterator[None]:
        """`take` for the duration of a with-block."""
        self.take(size, what)
        try:
            yield
        finally:
            self.give(size)
