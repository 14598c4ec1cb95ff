"""`status --wait-available`: says what it waits for, each change it sees, and why it gave up."""

from __future__ import annotations

import io

import pytest

from serving.client.__main__ import main
from serving.client.base import VersionStatus
from serving.client.errors import ConnectionFailed, ServerError


class Scripted:
    """A client whose status() answers from a script, the last answer repeating."""

    def __init__(self, answers: list) -> None:
        self.answers, self.calls = answers, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None

    def status(self, model, *, version=None, label=None):
        self.calls += 1
        answer = self.answers[min(self.calls, len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


def run(answers: list, wait: str = "0.5", *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    argv = ["status", "--rest", "http://h:1", "--wait-available", wait, *extra]
    code = main(argv, client_factory=lambda **_: Scripted(answers), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_each_state_change_is_reported_once_then_available() -> None:
    code, out, err = run(
        [
            ConnectionFailed("cannot reach http://h:1/v1/models/mnist: [Errno 111] refused"),
            ConnectionFailed("cannot reach http://h:1/v1/models/mnist: [Errno 111] refused"),
            ServerError(404, "Could not find any versions of model mnist"),
            [VersionStatus(1, "LOADING", "OK", "")],
            [VersionStatus(1, "AVAILABLE", "OK", "")],
        ],
        "5",
        "--version",
        "1",
    )
    assert code == 0, err
    lines = err.splitlines()
    assert (
        lines[0]
        == "waiting up to 5s for model 'mnist' version 1 to be AVAILABLE at REST http://h:1"
    )
    seen = [line.split("] ", 1)[1] for line in lines[1:]]
    assert seen == [
        "connection refused (cannot reach http://h:1/v1/models/mnist: [Errno 111] refused)",
        "the server is up but has not loaded model 'mnist' "
        "(Could not find any versions of model mnist)",
        "version 1 LOADING",
        "version 1 AVAILABLE",
    ]
    assert out.splitlines()[1].split() == ["1", "AVAILABLE", "OK"]


@pytest.mark.parametrize(
    ("answer", "cause", "next_step"),
    [
        (
            ConnectionFailed("cannot reach http://h:1/v1/models/mnist: [Errno 111] refused"),
            "connection refused (cannot reach http://h:1/v1/models/mnist",
            "next: start the server or check the address (REST http://h:1)",
        ),
        (
            ServerError(404, "Could not find any versions of model mnist"),
            "the server is up but has not loaded model 'mnist'",
            "next: check the server's --model_config_file",
        ),
        (
            [VersionStatus(2, "END", "INVALID_ARGUMENT", "Op type not registered 'Foo'")],
            "version 2 END; failed version 2: INVALID_ARGUMENT: Op type not registered 'Foo'",
            "next: fix what the server's error names",
        ),
        (
            [VersionStatus(2, "LOADING", "OK", "")],
            "version 2 LOADING",
            "next: wait longer",
        ),
    ],
)
def test_giving_up_names_the_cause_and_the_next_step(answer, cause: str, next_step: str) -> None:
    code, _, err = run([answer])
    assert code == 4
    last = err.splitlines()[-2:]
    assert last[0].startswith(
        "error: no AVAILABLE version of 'mnist' at REST http://h:1 after 0.5s: "
    )
    assert cause in last[0]
    assert last[1].startswith(next_step)
    assert err.count(cause) == 2  # once when first seen, once in the verdict: not every poll


def test_a_wait_that_never_reached_the_model_prints_no_empty_table() -> None:
    refused = ConnectionFailed("cannot reach http://h:1/v1/models/mnist: [Errno 111] refused")
    code, out, _ = run([refused])
    assert code == 4
    assert out == ""
    # A version that was seen is still shown, with its state, when the wait gives up.
    code, out, _ = run([[VersionStatus(2, "LOADING", "OK", "")]])
    assert code == 4
    assert out.splitlines()[1].split()[:2] == ["2", "LOADING"]
