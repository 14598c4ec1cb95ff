"""Checks every training recipe makes on what it was asked to do, before any work starts."""

from __future__ import annotations

from contracts.store import StoreURIError, validate_model_name, validate_version


def run_problems(
    name: str, version: int | None, seed: int, epochs: int, batch_size: int
) -> list[str]:
    """What is wrong with a run's name, version, seed and loop sizes (empty when nothing)."""
    problems = []
    try:
        validate_model_name(name)
        if version is not None:
            validate_version(version)
    except StoreURIError as exc:
        problems.append(str(exc))
    if epochs < 1:
        problems.append(f"--epochs must be at least 1, got {epochs}")
    if batch_size < 1:
        problems.append(f"--batch-size must be at least 1, got {batch_size}")
    if not 0 <= seed < 2**32:
        problems.append(f"--seed must be within [0, 2**32), got {seed}")
    return problems
