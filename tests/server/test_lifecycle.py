"""Model lifecycle: hot swap, warmup before serving, draining, corrupt versions, labels, policy."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from contracts.tfconfig import ModelConfig, VersionPolicy
from devtools.server.errors import FailedPrecondition, InvalidArgument, NotFound, Unknown
from devtools.server.servable import Servable

X = {"x": np.array([1.0], np.float32)}  # toy v1 answers 2.5, v2 answers 3.5


def publish(source: Path, base: Path, version: int) -> Path:
    """What the sync agent does: copy aside, then rename into place atomically."""
    staging = base / f".incoming-{version}"
    shutil.copytree(source, staging)
    staging.rename(base / str(version))
    return base / str(version)


def states(manager, name: str = "toy") -> dict[int, str]:
    return {row.version: row.state for row in manager.status(name, None)}


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def predict(manager, version: int | None = None, label: str | None = None) -> float:
    with manager.handle("toy", version, label) as servable:
        _, out = servable.predict("", dict(X))
    return float(out["y"][0])


class RecordingLoader:
    """Servable.load, remembering every servable and optionally holding a version back."""

    def __init__(self) -> None:
        self.loaded: dict[int, list[Servable]] = {}
        self.gates: dict[int, threading.Event] = {}
        self.calls: list[int] = []

    def __call__(self, name: str, version: int, path: Path) -> Servable:
        self.calls.append(version)
        servable = Servable.load(name, version, path)
        self.loaded.setdefault(version, []).append(servable)
        if version in self.gates:
            self.gates[version].wait(30)
        return servable


@pytest.fixture
def base(tmp_path: Path, toy_source: Path) -> Path:
    base = tmp_path / "toy"
    base.mkdir()
    publish(toy_source / "v1", base, 1)
    return base


def test_hot_swap_under_concurrent_load_never_fails(manager_factory, base, toy_source):
    manager = manager_factory([ModelConfig(name="toy", base_path=str(base))])
    results: list[float] = []
    errors: list[Exception] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                results.append(predict(manager))
            except Exception as exc:
                errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(results) > 20)
    publish(toy_source / "v2", base, 2)
    manager.poll_now()
    assert predict(manager) == 3.5  # from the moment the poll returns, v2 answers
    wait_for(lambda: states(manager) == {2: "AVAILABLE", 1: "END"})
    served_after = len(results)
    wait_for(lambda: len(results) > served_after + 20)
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert set(results) == {2.5, 3.5}
    assert results[-1] == 3.5


def test_new_version_serves_only_after_load_and_warmup(manager_factory, base, toy_source):
    loader = RecordingLoader()
    loader.gates[2] = threading.Event()
    manager = manager_factory(
        [ModelConfig(name="toy", base_path=str(base))], loader=loader, enable_model_warmup=True
    )
    publish(toy_source / "v2", base, 2)
    poll = threading.Thread(target=manager.poll_now)
    poll.start()
    wait_for(lambda: 2 in loader.loaded)
    assert states(manager) == {2: "LOADING", 1: "AVAILABLE"}
    assert predict(manager) == 2.5  # still v1 while v2 loads
    with pytest.raises(NotFound, match=r"Specific\(toy, 2\)"):
        predict(manager, version=2)
    loader.gates[2].set()
    poll.join()
    (v2,) = loader.loaded[2]
    assert v2.model_calls == 1  # the warmup record ran before any request could reach it
    assert predict(manager) == 3.5


def test_old_version_unloads_only_after_in_flight_requests(manager_factory, base, toy_source):
    manager = manager_factory([ModelConfig(name="toy", base_path=str(base))])
    with manager.handle("toy", None, None) as held:
        publish(toy_source / "v2", base, 2)
        manager.poll_now()
        assert states(manager) == {2: "AVAILABLE", 1: "UNLOADING"}
        assert predict(manager) == 3.5
        with pytest.raises(NotFound):
            predict(manager, version=1)
        time.sleep(0.2)
        assert states(manager)[1] == "UNLOADING"  # still held
        _, out = held.predict("", dict(X))  # the in-flight request completes on v1
        assert float(out["y"][0]) == 2.5
    wait_for(lambda: states(manager)[1] == "END")


def test_corrupt_version_never_replaces_a_good_one(manager_factory, base, toy_source):
    loader = RecordingLoader()
    manager = manager_factory([ModelConfig(name="toy", base_path=str(base))], loader=loader)
    broken = base / "2"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"\x00 this is not a SavedModel \xff" * 10)
    manager.poll_now()
    rows = {row.version: row for row in manager.status("toy", None)}
    assert rows[2].state == "END"
    assert rows[2].error_code == "DATA_LOSS"
    assert "Could not parse SavedModel" in rows[2].error_message
    assert rows[1].state == "AVAILABLE"
    assert predict(manager) == 2.5
    assert loader.calls == [1, 2]
    manager.poll_now()
    assert loader.calls == [1, 2]  # not retried while the directory is unchanged
    shutil.rmtree(broken)
    publish(toy_source / "v2", base, 2)
    manager.poll_now()
    assert predict(manager) == 3.5
    assert loader.calls == [1, 2, 2]


def test_failing_warmup_fails_the_version(
    manager_factory, base, toy_source, tmp_path, warmup_writer
):
    manager = manager_factory([ModelConfig(name="toy", base_path=str(base))])
    staged = tmp_path / "v2-bad-warmup"
    shutil.copytree(toy_source / "v2", staged)
    # A warmup request naming an input the model does not have.
    warmup_writer(staged, "toy", [np.array([1.0], np.float32)], "not_an_input")
    publish(staged, base, 2)
    manager.poll_now()
    rows = {row.version: row for row in manager.status("toy", None)}
    assert (rows[2].state, rows[2].error_code) == ("END", "INVALID_ARGUMENT")
    assert "input size does not match signature" in rows[2].error_message
    assert predict(manager) == 2.5


def test_missing_files_is_not_found(manager_factory, base):
    manager = manager_factory([ModelConfig(name="toy", base_path=str(base))])
    (base / "4").mkdir()
    manager.poll_now()
    row = manager.status("toy", 4)[0]
    assert (row.state, row.error_code) == ("END", "NOT_FOUND")
    assert row.error_message.startswith("Could not find SavedModel .pb or .pbtxt")


def test_only_integer_directories_are_versions(manager_factory, base, toy_source):
    shutil.copytree(toy_source / "v2", base / ".incoming-7")
    shutil.copytree(toy_source / "v2", base / "v8")
    (base / "9").write_text("a file, not a version")
    manager = manager_factory([ModelConfig(name="toy", base_path=str(base))])
    assert states(manager) == {1: "AVAILABLE"}


def test_version_policies(manager_factory, base, toy_source):
    publish(toy_source / "v2", base, 2)
    latest2 = manager_factory(
        [ModelConfig(name="toy", base_path=str(base), policy=VersionPolicy.latest(2))]
    )
    assert states(latest2) == {2: "AVAILABLE", 1: "AVAILABLE"}
    assert predict(latest2) == 3.5 and predict(latest2, version=1) == 2.5
    specific = manager_factory(
        [ModelConfig(name="toy", base_path=str(base), policy=VersionPolicy.specific([1]))]
    )
    assert states(specific) == {1: "AVAILABLE"}
    assert predict(specific) == 2.5


def test_labels(manager_factory, base, toy_source):
    publish(toy_source / "v2", base, 2)
    policy = VersionPolicy.all()
    manager = manager_factory([ModelConfig(name="toy", base_path=str(base), policy=policy)])
    labelled = ModelConfig(
        name="toy", base_path=str(base), policy=policy, labels={"stable": 1, "canary": 2}
    )
    manager.reload([labelled])
    assert predict(manager, label="stable") == 2.5
    assert predict(manager, label="canary") == 3.5
    with pytest.raises(InvalidArgument, match="Unrecognized servable version label: beta"):
        predict(manager, label="beta")
    # Status takes no label: TF Serving lists every version whatever the label (tests/contract).
    assert [r.version for r in manager.status("toy", None)] == [2, 1]


def test_label_on_unavailable_version_fails_without_the_flag(manager_factory, base):
    config = ModelConfig(name="toy", base_path=str(base), labels={"canary": 5})
    manager = manager_factory([ModelConfig(name="toy", base_path=str(base))])
    message = (
        "Request to assign label to version 5 of model toy, which is not currently available "
        "for inference"
    )
    with pytest.raises(FailedPrecondition, match=message):
        manager.reload([config])
    assert predict(manager) == 2.5  # the old config stays in force
    with pytest.raises(FailedPrecondition):  # tensorflow/serving#1608: labels at start-up
        manager_factory([ModelConfig(name="toy", base_path=str(base), labels={"stable": 1})])


def test_label_on_unavailable_version_with_the_flag(manager_factory, base, toy_source):
    config = ModelConfig(name="toy", base_path=str(base), labels={"stable": 1, "canary": 2})
    policy_all = ModelConfig(
        name="toy",
        base_path=str(base),
        labels={"stable": 1, "canary": 2},
        policy=VersionPolicy.all(),
    )
    manager = manager_factory([config], allow_version_labels_for_unavailable_models=True)
    assert predict(manager, label="stable") == 2.5
    with pytest.raises(NotFound, match=r"Servable not found for request: Specific\(toy, 2\)"):
        predict(manager, label="canary")
    publish(toy_source / "v2", base, 2)
    manager.reload([policy_all])
    assert predict(manager, label="canary") == 3.5


def test_removed_model_unloads(manager_factory, base, toy_base):
    manager = manager_factory(
        [
            ModelConfig(name="toy", base_path=str(base)),
            ModelConfig(name="other", base_path=str(toy_base)),
        ]
    )
    manager.reload([ModelConfig(name="other", base_path=str(toy_base))])
    wait_for(lambda: states(manager) == {1: "END"})
    with pytest.raises(NotFound):
        predict(manager)


def test_start_fails_when_the_only_version_is_broken(manager_factory, base):
    (base / "4").mkdir()  # the latest version: TF Serving refuses to start without it
    with pytest.raises(Unknown, match=r"\{name: toy version: 4\} due to error: NOT_FOUND"):
        manager_factory([ModelConfig(name="toy", base_path=str(base))])


def test_new_model_that_fails_to_load_is_reported(manager_factory, base, tmp_path):
    bad = tmp_path / "bad"
    (bad / "1").mkdir(parents=True)
    manager = manager_factory([ModelConfig(name="toy", base_path=str(base))])
    with pytest.raises(
        Unknown, match=r"1 model\(s\) did not become available: \{\{\{name: bad version: 1\}"
    ):
        manager.reload(
            [
                ModelConfig(name="toy", base_path=str(base)),
                ModelConfig(name="bad", base_path=str(bad)),
            ]
        )
    assert predict(manager) == 2.5


def test_unreadable_base_path_keeps_serving(manager_factory, base):
    manager = manager_factory([ModelConfig(name="toy", base_path=str(base))])
    moved = base.with_name("moved")
    base.rename(moved)
    manager.poll_now()
    assert predict(manager) == 2.5
    moved.rename(base)
