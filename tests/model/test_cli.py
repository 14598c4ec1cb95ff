"""`python -m model`: flags, exit codes and messages (run in-process; training is tiny)."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.__main__ import main

from .conftest import TINY_LIMIT


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: {train,publish,samples}"),
        (["train"], "the following arguments are required: --out"),
        (["train", "--out", "x", "--epochs", "0"], "expected an integer >= 1, got '0'"),
        (["train", "--out", "x", "--version", "01"], "without sign or leading zeros"),
        (["train", "--out", "x", "--version", str(2**63)], "1 ... 9223372036854775807"),
        (["train", "--out", "x", "--min-accuracy", "1.5"], "expected a number in [0, 1]"),
        (["train", "--out", "x", "--seed", "-1"], "expected an integer >= 0"),
        (["train", "--out", "x", "--limit", "many"], "expected an integer >= 1, got 'many'"),
        (["train", "--out", "x", "--max-mae", "0"], "expected a number > 0, got '0'"),
        (["train", "--out", "x", "--min-accuracy", "nan"], "expected a number in [0, 1]"),
        (["publish", "--export", "x"], "the following arguments are required: --store"),
    ],
)
def test_bad_flags_exit_2_with_the_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in _usage_error(argv, capsys)


def test_bad_values_exit_1_with_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--out", str(tmp_path), "--name", "Not Valid"]) == 1
    assert "invalid model name 'Not Valid'" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path), "--limit", "5", "--epochs", "1"]) == 1
    assert "--limit 5 is out of range" in capsys.readouterr().err
    store = "gs://bucket/models"
    assert main(["publish", "--export", str(tmp_path / "mnist" / "1"), "--store", store]) == 1
    assert "invalid store 'gs://bucket/models'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_train_prints_accuracy_and_wall_time_then_the_gate_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["train", "--out", str(tmp_path), "--limit", str(TINY_LIMIT), "--epochs", "1"]
    assert main([*common, "--min-accuracy", "0"]) == 0
    out = capsys.readouterr().out  # Keras progress bars first, then the summary
    assert "\ntest accuracy 0." in out and "(gate 0.0), wall time" in out
    assert f"exported {tmp_path / 'mnist' / '1'}" in out
    # The next run takes the next version; this one is refused: no export, only its report.
    assert main([*common, "--min-accuracy", "1"]) == 3
    err = capsys.readouterr().err
    refused = tmp_path / "mnist" / "reports" / "2-refused"
    assert "is below --min-accuracy 1.0; nothing was exported" in err
    assert f"the refused run's report is in {refused}" in err
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == ["1", "reports"]
    assert sorted(p.name for p in (tmp_path / "mnist" / "reports").iterdir()) == ["1", "2-refused"]


def test_unwritable_output_is_an_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory\n")
    argv = ["train", "--out", str(blocker), "--limit", str(TINY_LIMIT), "--epochs", "1"]
    assert main([*argv, "--min-accuracy", "0"]) == 1
    assert f"({blocker / 'mnist'})" in capsys.readouterr().err
