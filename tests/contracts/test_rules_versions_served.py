"""The version a TF Serving disk directory names: TF Serving's spelling, the one value rule."""

from __future__ import annotations

import pytest

from contracts import rules


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("1", 1),
        ("00000123", 123),  # TF Serving's own test data (safe_strto64 takes leading zeros)
        (str(rules.INT64_MAX), rules.INT64_MAX),
        ("0" + str(rules.INT64_MAX), rules.INT64_MAX),
        ("0", None),
        ("000", None),
        (str(rules.INT64_MAX + 1), None),
        ("-5", None),
        ("+5", None),
        ("1.0", None),
        ("", None),
        ("12\n", None),
        ("١٢", None),  # Arabic-Indic digits: str.isdigit says yes, TF Serving says no
    ],
)
def test_served_version_dirs(name: str, version: int | None) -> None:
    assert rules.parse_served_version_dir(name) == version


def test_the_store_keeps_the_canonical_spelling() -> None:
    assert rules.parse_version_dir("00000123") is None
    assert rules.parse_version_dir("123") == 123
