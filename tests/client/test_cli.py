"""The ``python -m serving.client`` command: argument errors, output and exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from serving.client import ConnectionFailed, RestClient, ServerError, VersionStatus
from serving.client.__main__ import main

REPO = Path(__file__).resolve().parents[2]


def run(argv: list[str], server: Any = None) -> tuple[int, str, str]:
    """Run the CLI in-process; REST calls go to the fake `server` (no sockets)."""

    def factory(*, rest: str | None, grpc: str | None, timeout: float) -> RestClient:
        assert grpc is None, "these tests fake REST only"
        return RestClient(rest, timeout=timeout, transport=server.transport)

    out, err = io.StringIO(), io.StringIO()
    code = main(argv, client_factory=factory, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", "x.png"], "one of the arguments --rest --grpc is required"),
        (["predict", "--rest", "u", "--grpc", "h:1", "x.png"], "not allowed with argument"),
        (["predict", "--rest", "u", "--version", "1", "--label", "s", "x"], "not allowed with"),
        (
            ["predict", "--rest", "u", "--version", "0", "x.png"],
            "expected an integer >= 1, got '0'",
        ),
        (
            ["predict", "--rest", "u", "--version", "v1", "x.png"],
            "expected an integer >= 1, got 'v1'",
        ),
        (["predict", "--rest", "u"], "the following arguments are required: FILE"),
        (["status", "--rest", "u", "--timeout", "0"], "expected a number > 0, got '0'"),
        (["explain", "--rest", "u"], "invalid choice: 'explain'"),
    ],
)
def test_argument_errors_exit_2(capsys, argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_input_file_exits_2_naming_the_file(tmp_path: Path, fake_server) -> None:
    bad = tmp_path / "notes.png"
    bad.write_text("hello")
    code, _, err = run(["predict", "--rest", "http://h:1", str(bad)], fake_server)
    assert code == 2
    assert err == f"error: {bad}: not a PNG or JPEG image (or an .npy array)\n"
    assert fake_server.requests == []  # nothing sent


def test_predict_prints_a_table(tmp_path: Path, fake_server, mnist_predictions) -> None:
    np.save(tmp_path / "two.npy", np.zeros((2, 28, 28), dtype=np.uint8))
    fake_server.routes["POST /v1/models/mnist/labels/stable:predict"] = (
        200,
        mnist_predictions([4, 9]),
    )
    code, out, err = run(
        ["predict", "--rest", "http://h:1", "--label", "stable", str(tmp_path / "two.npy")],
        fake_server,
    )
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "model mnist (version not reported) via REST http://h:1"
    assert lines[1].split()[:3] == ["input", "class", "confidence"]
    first = lines[2].split()
    assert first[0] == f"{tmp_path / 'two.npy'}[0]"
    assert first[1:3] == ["4", "0.9100"]
    assert first[3:] == ["0.010"] * 4 + ["0.910"] + ["0.010"] * 5
    assert lines[3].split()[1] == "9"


def test_predict_json_and_batching(tmp_path: Path, fake_server) -> None:
    np.save(tmp_path / "five.npy", np.zeros((5, 28, 28), dtype=np.uint8))

    def answer(request: httpx.Request) -> httpx.Response:
        count = len(json.loads(request.content)["instances"])
        rows = [{"probabilities": [0.1] * 10, "classes": 3} for _ in range(count)]
        return httpx.Response(200, json={"predictions": rows})

    fake_server.routes["POST /v1/models/digits:predict"] = answer
    argv = ["predict", "--rest", "http://h:1", "--model", "digits", "--json", "--batch-size", "2"]
    code, out, _ = run([*argv, str(tmp_path / "five.npy")], fake_server)
    assert code == 0
    assert [len(fake_server.body(i)["instances"]) for i in range(3)] == [2, 2, 1]
    document = json.loads(out)
    assert document["model"] == "digits"
    assert [p["class"] for p in document["predictions"]] == [3] * 5
    assert document["predictions"][4]["input"].endswith("five.npy[4]")
    assert document["predictions"][0]["probabilities"] == pytest.approx([0.1] * 10)


def test_status_table_and_server_error_exit_code(fake_server) -> None:
    fake_server.routes["GET /v1/models/mnist"] = (
        200,
        {
            "model_version_status": [
                {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK"}}
            ]
        },
    )
    code, out, _ = run(["status", "--rest", "http://h:1"], fake_server)
    assert code == 0
    assert out.splitlines()[1].split() == ["1", "AVAILABLE", "OK"]

    code, _, err = run(["status", "--rest", "http://h:1", "--model", "nope"], fake_server)
    assert code == 1
    assert err == "error: REST http://h:1 answered 404: Malformed request: /v1/models/nope\n"


def test_status_wait_available_gives_up_with_exit_4(fake_server) -> None:
    loading = {"model_version_status": [{"version": "2", "state": "LOADING", "status": {}}]}
    fake_server.routes["GET /v1/models/mnist"] = (200, loading)
    code, out, err = run(
        ["status", "--rest", "http://h:1", "--wait-available", "0.5", "--json"], fake_server
    )
    assert code == 4
    assert json.loads(out)["model_version_status"][0]["state"] == "LOADING"
    assert "no AVAILABLE version of 'mnist'" in err
    assert len(fake_server.requests) >= 2  # it polled


def test_status_wait_available_waits_through_refusals_and_not_found(fake_server) -> None:
    # A server that is still starting: first unreachable, then NOT_FOUND, then AVAILABLE.
    answers = [
        ConnectionFailed("connection refused"),
        ServerError(404, "Could not find any versions of model mnist"),
        [VersionStatus(1, "AVAILABLE", "OK", "")],
    ]
    calls = []

    class Starting:
        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            return None

        def status(self, model, *, version=None, label=None):
            calls.append(model)
            answer = answers[min(len(calls), len(answers)) - 1]
            if isinstance(answer, Exception):
                raise answer
            return answer

    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["status", "--rest", "http://h:1", "--wait-available", "5"],
        client_factory=lambda **_: Starting(),
        stdout=out,
        stderr=err,
    )
    assert code == 0, err.getvalue()
    assert len(calls) == 3
    assert out.getvalue().splitlines()[1].split() == ["1", "AVAILABLE", "OK"]


def test_metadata_prints_the_servers_json(fake_server) -> None:
    document = {"model_spec": {"name": "mnist", "version": "3"}, "metadata": {"x": 1}}
    fake_server.routes["GET /v1/models/mnist/versions/3/metadata"] = (200, document)
    code, out, _ = run(["metadata", "--rest", "http://h:1", "--version", "3"], fake_server)
    assert code == 0
    assert json.loads(out) == document


def test_unreachable_server_exits_3_as_a_subprocess(tmp_path: Path) -> None:
    # The real entry point, end to end: no server listens on port 9 (discard) of loopback.
    result = subprocess.run(
        [sys.executable, "-m", "serving.client", "status", "--rest", "http://127.0.0.1:9"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert "cannot reach http://127.0.0.1:9/v1/models/mnist" in result.stderr
