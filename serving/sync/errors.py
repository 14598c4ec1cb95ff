"""The model-sync agent's errors: one base class, one subclass per thing that can go wrong.

``SyncError``
  ``SyncConfigError``  bad flags or an unusable destination; fix the command line and restart.
  ``FetchError``       a version could not be brought in place (S3 failure, corrupt or short
                       object, no disk space); retried later with backoff, never exposed.
  ``StopRequested``    SIGTERM (or a test) asked the agent to stop in the middle of a download.

Integrity failures arrive as `contracts.store.IntegrityError` and are wrapped into `FetchError`.
"""

from __future__ import annotations


class SyncError(Exception):
    """Base class of every model-sync agent error."""


class SyncConfigError(SyncError, ValueError):
    """A flag, the destination directory or the models.config file is unusable."""


class FetchError(SyncError):
    """A version could not be downloaded, verified and moved into place; it stays hidden.

    ``reason`` is one of `serving.sync.metrics.REASONS` (download, integrity, disk_full, disk).
    """

    def __init__(self, message: str, reason: str = "download") -> None:
        super().__init__(message)
        self.reason = reason


class StopRequested(SyncError):
    """A stop was requested while work was in progress; partial work has been removed."""
