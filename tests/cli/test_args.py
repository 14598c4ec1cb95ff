"""The shared argument types: what each accepts, and the message of what it refuses."""

from __future__ import annotations

import argparse

import pytest

from cli import args


@pytest.mark.parametrize(
    ("parse", "text", "value"),
    [
        (args.positive_int, "3", 3),
        (args.non_negative_int, "0", 0),
        (args.positive_float, "0.25", 0.25),
        (args.non_negative_float, "0", 0.0),
        (args.fraction, "1", 1.0),
        (args.bounded(int, minimum=2, maximum=5), "5", 5),
    ],
)
def test_accepts_values_within_bounds(parse, text, value) -> None:
    assert parse(text) == value


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (args.positive_int, "0", "expected an integer >= 1, got '0'"),
        (args.positive_int, "1.5", "expected an integer >= 1, got '1.5'"),
        (args.non_negative_int, "-1", "expected an integer >= 0, got '-1'"),
        (args.positive_float, "0", "expected a number > 0, got '0'"),
        (args.positive_float, "inf", "expected a number > 0, got 'inf'"),
        (args.positive_float, "nan", "expected a number > 0, got 'nan'"),
        (args.fraction, "1.01", "expected a number in [0, 1], got '1.01'"),
        (args.bounded(int, maximum=9), "10", "expected an integer <= 9, got '10'"),
    ],
)
def test_refuses_with_the_text_and_what_was_expected(parse, text, message) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as raised:
        parse(text)
    assert str(raised.value) == message


def test_argparse_exits_2_with_the_message(capsys) -> None:
    parser = argparse.ArgumentParser(prog="tool")
    parser.add_argument("--count", type=args.positive_int)
    with pytest.raises(SystemExit) as raised:
        parser.parse_args(["--count", "-2"])
    assert raised.value.code == 2
    assert "argument --count: expected an integer >= 1, got '-2'" in capsys.readouterr().err
