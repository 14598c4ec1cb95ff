"""The benchmark's machinery at tiny scale: load generator, report, naive server, a whole run.

Nothing here asserts on speed; the benchmark prints figures, it does not test them.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from devtools.bench.__main__ import main as bench_main
from devtools.bench.load import LoadResult, run_load
from devtools.bench.objective import crossings
from devtools.bench.processes import start_naive_server
from devtools.bench.raw import RawResult
from devtools.bench.report import ServerRun, markdown_report
from devtools.bench.rollout import ModelStore
from serving.client import RestClient, ServerError


def test_run_load_counts_successes_failures_and_tags() -> None:
    made: list[int] = []

    def make_call(index: int):
        made.append(index)
        count = [0]

        def call() -> object:
            count[0] += 1
            if count[0] % 4 == 0:
                raise TimeoutError("every fourth call fails")
            return index % 2

        return call

    result = run_load(make_call, concurrency=3, duration_s=0.3)
    assert sorted(made) == [0, 1, 2]
    assert result.succeeded > 0
    assert set(result.failure_kinds) == {"TimeoutError"}
    assert result.failure_examples["TimeoutError"] == "every fourth call fails"
    # Each worker fails one call in four; the window can cut a worker's sequence anywhere.
    assert abs(result.failures - result.succeeded / 3) <= 3 * 3
    assert set(result.tags) == {0, 1}
    assert sum(result.tags.values()) == result.succeeded
    assert result.requests_per_s == pytest.approx(result.succeeded / result.elapsed_s)


def test_run_load_is_bounded_by_count_and_by_stop_event() -> None:
    result = run_load(lambda i: lambda: None, concurrency=2, duration_s=30, max_requests=50)
    assert 50 <= result.succeeded <= 52  # both workers may finish one last call
    assert result.elapsed_s < 30

    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    result = run_load(lambda i: lambda: None, concurrency=2, duration_s=30, stop_event=stop)
    assert result.elapsed_s < 5


def test_run_load_reports_a_worker_that_cannot_start() -> None:
    def make_call(index: int):
        if index == 1:
            raise ConnectionError("no server")
        return lambda: None

    result = run_load(make_call, concurrency=2, duration_s=0.1)
    assert result.failure_kinds == {"setup ConnectionError": 1}
    assert result.succeeded > 0


def _load(concurrency: int, rps: float, failures: int = 0) -> LoadResult:
    return LoadResult(
        concurrency=concurrency,
        elapsed_s=10.0,
        latencies_ms=np.full(int(rps * 10), 4.0),
        failures=failures,
    )


def test_markdown_report_relates_servers_to_naive_and_raw() -> None:
    runs = [
        ServerRun("local (batching)", "gRPC", _load(32, 2000.0), 1.5, 0.4),
        ServerRun("naive (model.predict)", "REST", _load(32, 100.0, failures=2), 1.9, 0.1),
    ]
    raw = [RawResult(batch_size=32, calls=1000, elapsed_s=4.0, p50_ms=3.0, p99_ms=5.0)]
    text = markdown_report(runs, raw, None, machine="2 cores", method_note="How.")
    lines = text.splitlines()
    assert lines[0] == "Machine: 2 cores."
    grpc_row = next(line for line in lines if "| gRPC | 32 |" in line)
    assert [c.strip() for c in grpc_row.split("|")[4:12]] == [
        "2,000", "4.0", "4.0", "0", "20.0x", "25%", "1.50", "0.40",
    ]  # fmt: skip
    naive_row = next(line for line in lines if line.startswith("| naive"))
    assert "| 2 | 1.0x |" in naive_row
    assert "| `serving_default` called directly | 32 | 8,000 | 3.00 | 5.00 |" in lines
    assert lines[-1] == "How."


def _timed(concurrency: int, p99_ms: float, failures: int = 0) -> ServerRun:
    """A run of 100 requests, 99 of them at 1 ms and one at `p99_ms` x 2 (so p99 ~ p99_ms)."""
    latencies = np.array([1.0] * 98 + [p99_ms, p99_ms * 2])
    load = LoadResult(concurrency, 10.0, latencies, failures)
    return ServerRun("local (batching)", "gRPC", load, 1.0, 0.5)


def test_the_objective_is_crossed_between_two_measured_concurrencies() -> None:
    runs = [_timed(1, 20.0), _timed(4, 60.0), _timed(8, 140.0), _timed(16, 400.0)]
    (crossing,) = crossings(runs, 100)
    assert (crossing.within.load.concurrency, crossing.crossed.load.concurrency) == (4, 8)
    assert crossing.sentence().startswith(
        "local (batching) gRPC: p99 <= 100 ms held up to concurrency 4 (p99 "
    )
    assert crossing.sentence().endswith(": inFlight target 4 per pod, or requestsPerSecond 10")
    assert crossing.as_json()["crossed"]["concurrency"] == 8
    # Never crossed; crossed at once; a run with failures never meets it.
    (never,) = crossings(runs, 10_000)
    assert never.crossed is None and "the highest measured" in never.sentence()
    (at_once,) = crossings(runs, 5)
    assert at_once.within is None and "crossed already at concurrency 1" in at_once.sentence()
    (failing,) = crossings([_timed(1, 20.0), _timed(4, 20.0, failures=3)], 100)
    assert failing.crossed.load.concurrency == 4
    with pytest.raises(ValueError, match="must be positive"):
        crossings(runs, 0)


@pytest.fixture(scope="module")
def naive_server(tiny_savedmodel):
    """The naive server in a thread of this process (its CLI is the same code in a process)."""
    from devtools.bench.naive_server import NaiveModel, make_server

    base, name = tiny_savedmodel
    server = make_server(NaiveModel(name, base))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", name
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_naive_server_answers_like_the_model(naive_server, tiny_model_outputs) -> None:
    url, name = naive_server
    images = np.random.default_rng(5).integers(0, 256, (3, 28, 28, 1)).astype(np.float32)
    with RestClient(url, timeout=60) as client:
        prediction = client.predict(name, images)
        assert client.status(name)[0].state == "AVAILABLE"
        result = run_load(
            lambda i: lambda: client.predict(name, images[:1]), concurrency=2, duration_s=1
        )
    expected = tiny_model_outputs(images)
    np.testing.assert_array_equal(prediction.classes, expected["classes"])
    np.testing.assert_allclose(prediction.probabilities, expected["probabilities"], rtol=1e-5)
    assert result.failures == 0 and result.succeeded > 0
    assert set(result.tags) == {"Prediction"}


def test_naive_server_errors_are_tf_serving_shaped(naive_server) -> None:
    url, name = naive_server
    with RestClient(url, timeout=60) as client:
        with pytest.raises(ServerError) as unknown:
            client.predict("other", np.zeros((1, 28, 28, 1)))
        assert (unknown.value.status, unknown.value.message) == (
            404,
            "Malformed request: POST /v1/models/other:predict",
        )
        with pytest.raises(ServerError) as bad:
            client.predict_raw(name, {"images": np.zeros((1, 3))})
        assert bad.value.status == 400


def test_null_server_process_answers_and_stops(tmp_path: Path) -> None:
    # The CLI in its own process (--null: no model to load), started and stopped as the
    # benchmark does.
    with start_naive_server(None, "mnist", tmp_path) as null:
        pid = null.pid
        with RestClient(null.rest_url, timeout=30) as client:
            prediction = client.predict("mnist", np.zeros((2, 28, 28, 1)))
    assert prediction.classes.tolist() == [0, 0]
    assert prediction.probabilities.shape == (2, 10)
    assert not Path(f"/proc/{pid}").exists() or " Z " in Path(f"/proc/{pid}/stat").read_text()


def test_a_whole_tiny_benchmark_run(tiny_savedmodel, tmp_path: Path, capsys) -> None:
    base, name = tiny_savedmodel
    export = tmp_path / "export" / name
    shutil.copytree(base, export)
    figures = tmp_path / "figures.json"
    code = bench_main(
        [
            *("--export", str(export), "--concurrency", "2", "--duration", "0.5"),
            *(
                "--warmup",
                "0",
                "--rollout-concurrency",
                "2",
                "--skip-naive",
                "--json",
                str(figures),
                "--latency-objective-ms",
                "60000",
            ),
            *("--delivery", "copy"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "| local (batching) | gRPC | 2 |" in out
    assert "Target zero failed requests during the rollout: 0 failed (met)" in out
    document = json.loads(figures.read_text())
    assert [
        (r["server"], r["protocol"], r["concurrency"], r["failed"]) for r in document["runs"]
    ] == [
        ("local (batching)", "REST", 2, 0),
        ("local (batching)", "gRPC", 2, 0),
        ("null server (load generator ceiling)", "REST", 2, 0),
    ]
    assert all(r["requests_per_s"] > 0 for r in document["runs"])
    assert [r["batch_size"] for r in document["raw"]] == [2]
    rollout = document["rollout"]
    assert (rollout["failed"], rollout["wrong_answers"], rollout["notes"]) == (0, 0, [])
    assert set(rollout["answers_per_version"]) == {"1", "2"}
    # Both protocols of the local server against the objective (a minute: never crossed here).
    assert "Latency objective p99 <= 60000 ms:" in out
    assert [(c["protocol"], c["within"]["concurrency"], c["crossed"]) for c in
            document["latency_objective"]] == [("REST", 2, None), ("gRPC", 2, None)]  # fmt: skip


def test_benchmark_without_an_export_exits_2(tmp_path: Path, capsys) -> None:
    assert bench_main(["--export", str(tmp_path / "mnist")]) == 2
    assert "--export" in (err := capsys.readouterr().err) and "is not a directory" in err
    (tmp_path / "mnist").mkdir()
    assert bench_main(["--export", str(tmp_path / "mnist")]) == 2
    assert "no version directory (1, 2, ...) under" in capsys.readouterr().err


@pytest.mark.slow
def test_model_store_publishes_and_syncs_with_the_real_commands(
    tiny_savedmodel, tiny_model_outputs, tmp_path: Path
) -> None:
    # The rollout's default delivery: `python -m model publish`, then `python -m serving.sync`.
    from model.warmup import build_named_records, write_warmup

    base, name = tiny_savedmodel
    export = tmp_path / "export" / name / "4"
    shutil.copytree(base / "1", export)
    # `model publish` takes only complete exports, which carry TF Serving warmup records.
    digits = np.zeros((3, 28, 28, 1), dtype=np.float32)
    batches = [{"images": digits[:1]}, {"images": digits[1:]}]
    records = build_named_records(name, batches, lambda batch: tiny_model_outputs(batch["images"]))
    write_warmup(export, records)
    store = ModelStore(tmp_path)
    try:
        assert store.publish(export) > 0
        assert store.sync_once(tmp_path / "serve", name) > 0
    finally:
        store.close()
    synced = tmp_path / "serve" / name / "4"
    exported = {p.relative_to(export) for p in export.rglob("*") if p.is_file()}
    # The agent keeps the store's manifest beside the files it verified against it.
    assert {p.relative_to(synced) for p in synced.rglob("*") if p.is_file()} == exported | {
        Path("manifest.json")
    }
    assert (synced / "saved_model.pb").read_bytes() == (export / "saved_model.pb").read_bytes()
