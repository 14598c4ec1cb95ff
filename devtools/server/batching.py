"""Server-side dynamic batching, as TF Serving's ``--enable_batching`` does it.

Creates a `BatchScheduler`: concurrent requests to the same servable and signature, with the same
input names, dtypes and per-example shapes, queue up and run as one model call; the outputs are
split back along dimension 0. The knobs are TF Serving's ``BatchingParameters``:

- ``max_batch_size``: a batch never holds more examples; a larger request is refused
  (INVALID_ARGUMENT, as without ``enable_large_batch_splitting``);
- ``batch_timeout_micros``: how long the oldest request of an open batch may wait for company
  (0: a batch runs as soon as a thread is free, so batches grow only under load);
- ``num_batch_threads``: batches running at once;
- ``max_enqueued_batches``: queued batches per queue; beyond it a request fails fast with
  UNAVAILABLE "The batch scheduling queue to which this task was submitted is full";
- ``allowed_batch_sizes``: a batch is padded (with copies of its first example) up to the next
  allowed size, so the model only ever sees those sizes.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import numpy as np

from contracts.tfconfig import BatchingParameters
from devtools.server.errors import (
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    ServingError,
    Unavailable,
)

log = logging.getLogger(__name__)

Inputs = dict[str, np.ndarray]
Process = Callable[[Inputs], Inputs]
# Observer of each executed batch: (examples, padded size, seconds the oldest task queued).
BatchObserver = Callable[[int, int, float], None]


def default_parameters(cpus: int) -> BatchingParameters:
    """TF Serving's defaults when --enable_batching has no --batching_parameters_file."""
    return BatchingParameters(
        max_batch_size=1000,
        batch_timeout_micros=0,
        max_enqueued_batches=10,
        num_batch_threads=max(cpus, 1),
    )


@dataclass(eq=False)
class _Task:
    inputs: Inputs
    size: int
    enqueued: float
    done: threading.Event = field(default_factory=threading.Event)
    outputs: Inputs | None = None
    error: ServingError | None = None
    abandoned: bool = False


@dataclass(eq=False)
class _Batch:
    opened: float
    tasks: list[_Task] = field(default_factory=list)
    size: int = 0


@dataclass(eq=False)
class _Queue:
    key: Hashable
    process: Process
    batches: deque[_Batch] = field(default_factory=deque)


class BatchScheduler:
    """Shared by every servable of the server; threads start on first use."""

    def __init__(self, params: BatchingParameters, observer: BatchObserver | None = None) -> None:
        self.params = params
        self._timeout = params.batch_timeout_micros / 1e6
        self._observer = observer
        self._queues: dict[Hashable, _Queue] = {}
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def run(self, key: Hashable, inputs: Inputs, process: Process, timeout: float | None) -> Inputs:
        """Queue `inputs` under `key`, wait for the batch to run, return this request's slice.

        `process` runs a merged batch; requests under one key must be concatenable.
        """
        size = _batch_size(inputs)
        if size > self.params.max_batch_size:
            raise InvalidArgument(
                f"Task size {size} is larger than maximum input batch size "
                f"{self.params.max_batch_size}"
            )
        task = _Task(inputs, size, time.monotonic())
        with self._cond:
            if self._closed:
                raise Unavailable("The server is shutting down")
            self._start_threads()
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = _Queue(key, process)
            last = queue.batches[-1] if queue.batches else None
            if last is None or last.size + size > self.params.max_batch_size:
                if len(queue.batches) >= self.params.max_enqueued_batches:
                    raise Unavailable(
                        "The batch scheduling queue to which this task was submitted is full"
                    )
                last = _Batch(opened=task.enqueued)
                queue.batches.append(last)
            last.tasks.append(task)
            last.size += size
            self._cond.notify()
        if not task.done.wait(timeout):
            with self._cond:
                task.abandoned = True  # a batch not yet started skips it
            if not task.done.is_set():
                raise DeadlineExceeded("Deadline exceeded while waiting in the batch queue")
        if task.error is not None:
            raise task.error
        assert task.outputs is not None
        return task.outputs

    def close(self) -> None:
        """Finish queued batches, then stop the threads."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()

    # --- scheduling ------------------------------------------------------------------------------

    def _start_threads(self) -> None:
        while len(self._threads) < self.params.num_batch_threads:
            thread = threading.Thread(
                target=self._worker, name=f"batch-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _ready(self, batch: _Batch, queue: _Queue, now: float) -> bool:
        return (
            batch is not queue.batches[-1]
            or batch.size >= self.params.max_batch_size
            or now - batch.opened >= self._timeout
            or self._closed
        )

    def _take(self) -> tuple[_Queue, _Batch] | None:
        """Under the lock: the oldest ready batch, or None after waiting for one to be ready."""
        now = time.monotonic()
        best: tuple[_Queue, _Batch] | None = None
        deadline = None
        for queue in self._queues.values():
            batch = queue.batches[0]
            if self._ready(batch, queue, now):
                if best is None or batch.opened < best[1].opened:
                    best = (queue, batch)
            else:
                due = batch.opened + self._timeout
                deadline = due if deadline is None else min(deadline, due)
        if best is None:
            self._cond.wait(None if deadline is None else max(deadline - now, 0.0))
            return None
        queue, batch = best
        queue.batches.popleft()
        if not queue.batches:
            del self._queues[queue.key]
        return best

    def _worker(self) -> None:
        while True:
            with self._cond:
                taken = None
                while taken is None:
                    if self._closed and not self._queues:
                        return
                    taken = self._take()
                queue, batch = taken
                tasks = [t for t in batch.tasks if not t.abandoned]
            if tasks:
                self._execute(queue.process, tasks)

    def _execute(self, process: Process, tasks: list[_Task]) -> None:
        size = sum(t.size for t in tasks)
        padded = self._padded_size(size)
        try:
            outputs = process(_merge(tasks, padded))
            slices = _split(outputs, [t.size for t in tasks], padded)
        except ServingError as exc:
            for task in tasks:
                task.error = exc
                task.done.set()
            return
        except Exception as exc:  # never leave a caller waiting on a crashed batch
            log.exception("batch of %d examples failed", size)
            error = Internal(f"Batch execution failed: {exc}")
            for task in tasks:
                task.error = error
                task.done.set()
            return
        if self._observer is not None:
            self._observer(size, padded, time.monotonic() - tasks[0].enqueued)
        for task, result in zip(tasks, slices, strict=True):
            task.outputs = result
            task.done.set()

    def _padded_size(self, size: int) -> int:
        allowed = self.params.allowed_batch_sizes
        if not allowed:
            return size
        return allowed[bisect.bisect_left(allowed, size)]


def _batch_size(inputs: Inputs) -> int:
    sizes = {a.shape[0] if a.ndim else -1 for a in inputs.values()}
    if len(sizes) != 1 or -1 in sizes:
        raise InvalidArgument(
            "Batching requires every input to have the same 0th (batch) dimension; got shapes "
            + ", ".join(f"{k}: {list(v.shape)}" for k, v in sorted(inputs.items()))
        )
    return sizes.pop()


def batch_key(inputs: Inputs) -> tuple:
    """What must agree for requests to share a batch: names, dtypes, per-example shapes."""
    return tuple(sorted((name, a.dtype.str, a.shape[1:]) for name, a in inputs.items()))


def _merge(tasks: list[_Task], padded: int) -> Inputs:
    size = sum(t.size for t in tasks)
    if len(tasks) == 1 and padded == size:
        return tasks[0].inputs
    merged = {}
    for name in tasks[0].inputs:
        parts = [t.inputs[name] for t in tasks]
        if padded > size:
            parts.append(np.repeat(parts[0][:1], padded - size, axis=0))
        merged[name] = np.concatenate(parts)
    return merged


def _split(outputs: Inputs, sizes: list[int], padded: int) -> list[Inputs]:
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != padded:
            raise Internal(
                f"Batched output tensor {name} has shape {list(array.shape)}: its 0th dimension "
                f"does not equal the sum of the 0th dimension sizes of the input tensors ({padded})"
            )
    results = []
    offset = 0
    for n in sizes:
        results.append({name: array[offset : offset + n] for name, array in outputs.items()})
        offset += n
    return results
