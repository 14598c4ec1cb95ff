"""Errors of the model stage (training, export, publish), one small hierarchy.

Every error's message names what is wrong and what to do; the CLI prints it and exits with the
error's `exit_code`. Store-layout errors (`contracts.store.StoreError` and its subclasses) are the
shared store module's own and are reported the same way.
"""

from __future__ import annotations


class ModelStageError(Exception):
    """Base class of every model-stage error."""

    exit_code = 1


class DataError(ModelStageError):
    """The bundled dataset is unreadable or cannot be split as asked (e.g. --limit too small)."""


class TrainError(ModelStageError):
    """Training cannot start or finish: bad output directory, version already present, ..."""


class AccuracyGateError(ModelStageError):
    """The trained model misses its recipe's gate (e.g. --min-accuracy); nothing was exported."""

    # Distinct from 1 so a pipeline can tell "model not good enough" from "the run broke".
    exit_code = 3


class ExportError(ModelStageError):
    """An export directory is not a complete, servable SavedModel version."""


class PublishError(ModelStageError):
    """Publishing to S3 failed; no new version became visible."""


class SignatureContractError(ModelStageError):
    """A new version's signatures break the model's contract (its newest committed version's)."""
