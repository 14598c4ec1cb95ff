"""Server-side batching: merging, splitting, padding, queue limits; and with a real model."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from contracts.tfconfig import BatchingParameters, ModelConfig
from devtools.server.batching import BatchScheduler, batch_key
from devtools.server.errors import Internal, InvalidArgument, Unavailable


def params(**overrides) -> BatchingParameters:
    values = {
        "max_batch_size": 8,
        "batch_timeout_micros": 200_000,
        "max_enqueued_batches": 10,
        "num_batch_threads": 1,
    }
    values.update(overrides)
    return BatchingParameters(**values)


class Model:
    """Doubles its input and records the batch sizes it saw."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.sizes: list[int] = []
        self.gate = gate
        self.entered = threading.Event()

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        self.sizes.append(len(inputs["x"]))
        return {"y": inputs["x"] * 2}


def run_many(scheduler: BatchScheduler, model: Model, rows: list[np.ndarray]) -> list[np.ndarray]:
    def one(row: np.ndarray) -> np.ndarray:
        inputs = {"x": row}
        return scheduler.run(batch_key(inputs), inputs, model, timeout=10)["y"]

    with ThreadPoolExecutor(len(rows)) as pool:
        return list(pool.map(one, rows))


def test_concurrent_requests_merge_into_one_call_and_split_back():
    scheduler = BatchScheduler(params())
    model = Model()
    rows = [np.full((1, 3), i, np.float32) for i in range(8)]
    results = run_many(scheduler, model, rows)
    scheduler.close()
    assert model.sizes == [8]  # a full batch runs at once, without waiting for the timeout
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result, np.full((1, 3), 2 * i))


def test_requests_with_several_rows_keep_their_slices():
    scheduler = BatchScheduler(params(max_batch_size=6))
    model = Model()
    rows = [np.arange(n, dtype=np.float32).reshape(n, 1) + 10 * n for n in (1, 2, 3)]
    results = run_many(scheduler, model, rows)
    scheduler.close()
    assert sum(model.sizes) == 6
    for row, result in zip(rows, results, strict=True):
        np.testing.assert_array_equal(result, row * 2)


def test_padding_to_allowed_batch_sizes():
    scheduler = BatchScheduler(params(max_batch_size=8, allowed_batch_sizes=(4, 8)))
    model = Model()
    results = run_many(scheduler, model, [np.ones((1, 2), np.float32) * i for i in range(3)])
    scheduler.close()
    assert model.sizes == [4]
    assert [r.shape for r in results] == [(1, 2)] * 3


def test_different_shapes_never_share_a_batch():
    scheduler = BatchScheduler(params(batch_timeout_micros=50_000))
    model = Model()
    rows = [np.ones((1, 2), np.float32), np.ones((1, 3), np.float32)] * 2
    results = run_many(scheduler, model, rows)
    scheduler.close()
    assert sorted(model.sizes) == [2, 2]
    assert [r.shape for r in results] == [(1, 2), (1, 3)] * 2


def test_oversized_request_is_refused():
    scheduler = BatchScheduler(params(max_batch_size=2))
    with pytest.raises(
        InvalidArgument, match="Task size 3 is larger than maximum input batch size 2"
    ):
        scheduler.run("k", {"x": np.ones((3, 1))}, Model(), timeout=1)
    scheduler.close()


def test_full_queue_fails_fast_with_unavailable():
    gate = threading.Event()
    model = Model(gate)
    scheduler = BatchScheduler(
        params(max_batch_size=1, max_enqueued_batches=1, batch_timeout_micros=0)
    )
    inputs = {"x": np.ones((1, 1), np.float32)}
    key = batch_key(inputs)
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(scheduler.run, key, inputs, model, 10)
        assert model.entered.wait(10)  # the first batch is running (and blocked)
        queued = pool.submit(scheduler.run, key, inputs, model, 10)
        while key not in scheduler._queues:
            threading.Event().wait(0.01)
        with pytest.raises(
            Unavailable, match="The batch scheduling queue to which this task was submitted is full"
        ):
            scheduler.run(key, inputs, model, timeout=10)
        gate.set()
        assert running.result()["y"].tolist() == [[2.0]]
        assert queued.result()["y"].tolist() == [[2.0]]
    scheduler.close()


def test_a_failing_batch_fails_each_request_and_the_scheduler_survives():
    scheduler = BatchScheduler(params(batch_timeout_micros=0))

    def broken(inputs):
        return {"y": np.ones(())}  # no batch dimension

    with pytest.raises(Internal, match="0th dimension"):
        scheduler.run("k", {"x": np.ones((1, 1))}, broken, timeout=5)
    assert scheduler.run("k", {"x": np.ones((1, 1))}, Model(), timeout=5)["y"].tolist() == [[2.0]]
    scheduler.close()


def test_real_model_calls_are_merged(manager_factory, toy_base):
    scheduler = BatchScheduler(params(max_batch_size=16, batch_timeout_micros=100_000))
    manager = manager_factory([ModelConfig(name="toy", base_path=str(toy_base))], batcher=scheduler)

    def predict(i: int) -> float:
        with manager.handle("toy", None, None) as servable:
            _, out = servable.predict("", {"x": np.array([float(i)], np.float32)})
        return float(out["y"][0])

    with manager.handle("toy", None, None) as servable:
        before = servable.model_calls
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(predict, range(16)))
    assert results == [0.5 * i + 2 for i in range(16)]
    with manager.handle("toy", None, None) as servable:
        calls = servable.model_calls - before
    assert 1 <= calls <= 4  # 16 requests, a handful of model calls
    scheduler.close()
