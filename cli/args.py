"""Argument types for ``argparse``: each turns a flag's text into a checked value or raises
``argparse.ArgumentTypeError`` with a message naming the text and what was expected, which
argparse prints with the usage and exit code 2.

One home for these because five commands had their own copies, with five wordings.
Non-finite numbers (``nan``, ``inf``) are refused everywhere: no flag of the project means
"for ever" by infinity, and ``nan`` compares false with every bound.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _number(text: str, kind: type[int] | type[float], expected: str) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def bounded(
    kind: type[int] | type[float],
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
) -> Callable[[str], int | float]:
    """An argument type for an ``int`` or ``float`` within bounds, e.g.
    ``bounded(float, minimum=0, exclusive_minimum=True)`` for a positive number."""
    noun = "an integer" if kind is int else "a number"
    if minimum is not None and maximum is not None:
        expected = f"{noun} in [{minimum:g}, {maximum:g}]"
    elif minimum is not None:
        expected = f"{noun} {'>' if exclusive_minimum else '>='} {minimum:g}"
    elif maximum is not None:
        expected = f"{noun} <= {maximum:g}"
    else:
        expected = noun

    def parse(text: str) -> int | float:
        value = _number(text, kind, expected)
        too_low = minimum is not None and (
            value <= minimum if exclusive_minimum else value < minimum
        )
        if too_low or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = f"{kind.__name__}"  # argparse names the type in "invalid <type> value"
    return parse


positive_int = bounded(int, minimum=1)
non_negative_int = bounded(int, minimum=0)
positive_float = bounded(float, minimum=0, exclusive_minimum=True)
non_negative_float = bounded(float, minimum=0)
fraction = bounded(float, minimum=0, maximum=1)
