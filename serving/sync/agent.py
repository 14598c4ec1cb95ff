"""The sync loop: keep ``DEST/NAME/`` holding exactly the versions the policy wants.

Each listing cycle, per model: list committed versions in the store (manifest present and
matching, `contracts.store.list_committed_versions`), decide the wanted set (the policy applied to
what is committed, plus any committed version a label in ``models.config`` points at), fetch the
missing ones newest first, then remove versions this agent wrote that are no longer wanted, but
only once every wanted version is in place (so the last good version always stays). If nothing
wanted can be fetched and the model has no version at all, older committed versions are tried, so
a pod still starts while the newest version is broken.

S3 is listed every ``interval`` seconds (listing costs money, tensorflow/serving#1291); failed
listings back off exponentially from ``interval`` up to ``max_backoff``; a failed version is
retried on its own backoff from the cached manifests, without re-listing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from contracts.store import StoreError, StoreLocation, VersionManifest, list_committed_versions
from contracts.tfconfig import ConfigError, VersionPolicy, parse_models_config

from .backoff import Backoff, RetryTracker
from .download import describe_error, fetch_version
from .errors import FetchError, StopRequested, SyncConfigError
from .local import ModelDir
from .status import StatusBoard

_log = logging.getLogger(__name__)
DEFAULT_POLICY = VersionPolicy.latest(1)


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent needs, from the command line."""

    source: StoreLocation
    dest: Path
    models: tuple[str, ...]
    policy: VersionPolicy | None = None  # None: from --model-config-file, else latest:1
    interval: float = 30.0
    model_config_file: Path | None = None
    max_backoff: float = 300.0
    retry_base: float = 1.0
    max_attempts: int = 5  # --once only: listing or fetch rounds before giving up

    def __post_init__(self) -> None:
        if not self.models:
            raise SyncConfigError("name at least one --model")
        if len(set(self.models)) != len(self.models):
            raise SyncConfigError(f"a --model is given twice: {list(self.models)}")
        if self.interval <= 0:
            raise SyncConfigError(f"--interval must be positive, got {self.interval}")
        if self.max_backoff < self.retry_base:
            raise SyncConfigError(f"--max-backoff must be at least {self.retry_base}s")
        if self.max_attempts < 1:
            raise SyncConfigError("--max-attempts must be at least 1")


class Agent:
    """Syncs the configured models; `run` loops until stopped, `run_once` is init mode."""

    def __init__(
        self,
        config: AgentConfig,
        s3: Any,
        status: StatusBoard,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.s3 = s3
        self.status = status
        self.stop = stop or threading.Event()
        self.clock = clock
        self.dirs: dict[str, ModelDir] = {}
        self.committed: dict[str, dict[int, VersionManifest]] = {}
        self.wanted: dict[str, set[int]] = {}
        self.retries = RetryTracker(Backoff(config.retry_base, config.max_backoff))
        self.list_backoff = Backoff(config.interval, max(config.interval, config.max_backoff))
        self.list_failures = 0
        self._policies: dict[str, tuple[VersionPolicy, dict[str, int]]] = {}
        self._last_write = 0.0

    # --- set-up --------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Open every model directory and clear what an interrupted run left behind."""
        if self.dirs:
            return
        for name in self.config.models:
            model_dir = ModelDir.open(self.config.dest, name)
            removed = model_dir.clean_debris()
            if removed:
                _log.info("%s: removed stale staging debris %s", name, removed)
            self.dirs[name] = model_dir
            self._show(name)
        self.status.write()

    def _policy(self, name: str) -> tuple[VersionPolicy, dict[str, int]]:
        """Policy and labels for `name`, re-read from models.config every listing cycle.

        models.config is usually a mounted ConfigMap that Kubernetes updates in place, so label
        moves (canary -> stable) are picked up without a restart. A broken file keeps the last
        good reading and is reported.
        """
        policy, labels = self.config.policy or DEFAULT_POLICY, {}
        if self.config.model_config_file is not None:
            try:
                text = self.config.model_config_file.read_text()
                entries = {m.name: m for m in parse_models_config(text)}
            except (OSError, ConfigError) as exc:
                self._error(f"models.config {self.config.model_config_file}: {exc}")
                return self._policies.get(name, (policy, labels))
            entry = entries.get(name)
            if entry is not None:
                labels = dict(entry.labels)
                if self.config.policy is None:
                    policy = entry.policy
                elif entry.policy != self.config.policy:
                    _log.warning(
                        "%s: --policy %s overrides models.config's %s (TF Serving follows "
                        "models.config)",
                        name,
                        self.config.policy,
                        entry.policy,
                    )
        self._policies[name] = (policy, labels)
        return policy, labels

    # --- one cycle -----------------------------------------------------------------------------

    def list_store(self) -> bool:
        """List every model's committed versions; False (and backoff) if S3 failed."""
        try:
            for name in self.config.models:
                self.committed[name] = list_committed_versions(self.s3, self.config.source, name)
        except (BotoCoreError, ClientError, StoreError) as exc:
            self.list_failures += 1
            self._error(f"listing {self.config.source.uri} failed: {describe_error(exc)}")
            self.status.listing(ok=False)
            return False
        self.list_failures = 0
        self.status.listing(ok=True)
        for name in self.config.models:
            policy, labels = self._policy(name)
            committed = self.committed[name]
            wanted = policy.wants(committed) | (set(labels.values()) & committed.keys())
            missing_labels = sorted(set(labels.values()) - committed.keys())
            if missing_labels:
                _log.warning("%s: labelled versions %s are not committed", name, missing_labels)
            self.wanted[name] = wanted
            # Forget failures of versions that are no longer committed (deleted or rolled back).
            self.retries.forget_except(
                {k for k in self.retries.states if k[0] != name or k[1] in committed}
            )
            self.status.model(name, policy=str(policy), labels=labels, wanted=sorted(wanted))
        return True

    def converge(self) -> None:
        """Fetch what is wanted and missing, fall back if nothing is there, prune the rest."""
        for name in self.config.models:
            if self.stop.is_set():
                return
            if name not in self.committed:
                continue  # never listed successfully yet
            model_dir, committed = self.dirs[name], self.committed[name]
            wanted = self.wanted[name]
            for version in sorted(wanted - model_dir.versions(), reverse=True):
                self._try_fetch(name, committed[version])
            if not model_dir.versions():
                for version in sorted(committed.keys() - wanted, reverse=True):
                    _log.warning(
                        "%s: no wanted version in place; falling back to %s", name, version
                    )
                    if self._try_fetch(name, committed[version]):
                        break
            self._prune(name)
            self._show(name)

    def _try_fetch(self, name: str, manifest: VersionManifest) -> bool:
        key = (name, manifest.version)
        if self.stop.is_set() or not self.retries.ready(key, self.clock()):
            return False
        _log.info(
            "%s: fetching version %s (%d bytes)", name, manifest.version, manifest.total_bytes
        )
        self.status.fetching(name, manifest.version, manifest.total_bytes)
        self.status.write()
        try:
            fetch_version(
                self.s3,
                self.config.source,
                manifest,
                self.dirs[name],
                self.stop,
                on_progress=lambda received: self._progress(name, received),
            )
        except FetchError as exc:
            state = self.retries.failed(key, str(exc), self.clock())
            wait = state.retry_at - self.clock()
            self._error(f"{exc} (attempt {state.failures}; retrying in {wait:.1f}s)")
            return False
        finally:
            self.status.fetching(name, None)
        self.retries.succeeded(key)
        self.status.event(name, "installed", manifest.version)
        self.status.error(None)
        self._show(name)
        self.status.write()
        return True

    def _prune(self, name: str) -> None:
        model_dir, wanted = self.dirs[name], self.wanted[name]
        local = model_dir.versions()
        if not wanted or not wanted <= local:
            return  # keep everything until the wanted set is complete: the last good stays
        for version in sorted((local - wanted) & model_dir.owned()):
            _log.info("%s: removing version %s (no longer wanted)", name, version)
            model_dir.remove(version)
            self.status.event(name, "removed", version)

    # --- status --------------------------------------------------------------------------------

    def _show(self, name: str) -> None:
        model_dir = self.dirs[name]
        failed = {
            str(v): {
                "error": s.last_error,
                "failures": s.failures,
                "retry_in": round(max(0.0, s.retry_at - self.clock()), 3),
            }
            for (n, v), s in self.retries.states.items()
            if n == name
        }
        self.status.model(
            name,
            available=sorted(model_dir.versions()),
            owned=sorted(model_dir.owned()),
            failed=failed,
        )

    def _progress(self, name: str, received: int) -> None:
        self.status.progress(name, received)
        now = self.clock()
        if now - self._last_write >= 1.0:  # progress is frequent; the file need not be
            self._last_write = now
            self.status.write()

    def _error(self, message: str) -> None:
        _log.error("%s", message)
        self.status.error(message)

    def complete(self) -> bool:
        """Every model has every wanted version in place."""
        return all(
            name in self.wanted and self.wanted[name] <= self.dirs[name].versions()
            for name in self.config.models
        )

    def all_available(self) -> bool:
        return all(self.dirs[name].versions() for name in self.config.models)

    # --- modes ---------------------------------------------------------------------------------

    def run(self) -> None:
        """Poll and converge until `stop` is set."""
        self.prepare()
        next_listing = self.clock()
        while not self.stop.is_set():
            now = self.clock()
            if now >= next_listing:
                if self.list_store():
                    next_listing = now + self.config.interval
                else:
                    next_listing = now + self.list_backoff.delay(self.list_failures)
            try:
                self.converge()
            except StopRequested:
                break
            self.status.beat()
            self.status.write()
            wake = min(next_listing, self.retries.next_retry() or next_listing)
            self._sleep(max(0.05, wake - self.clock()))
        _log.info("stopped")

    def _sleep(self, seconds: float) -> None:
        """Wait (stop-aware), beating the heartbeat every few seconds so idling looks alive."""
        deadline = self.clock() + seconds
        while not self.stop.is_set() and (left := deadline - self.clock()) > 0:
            self.stop.wait(min(left, 5.0))
            self.status.beat()

    def run_once(self) -> int:
        """Init-container mode: 0 once every model has a version in place, 1 if one has none."""
        self.prepare()
        listed = False
        for attempt in range(1, self.config.max_attempts + 1):
            if not listed or not self.complete():
                listed = self.list_store() or listed
            try:
                self.converge()
            except StopRequested:
                break
            self.status.write()
            if (listed and self.complete()) or self.stop.is_set():
                break
            if attempt < self.config.max_attempts:
                wake = self.retries.next_retry()
                delay = self.list_backoff.delay(self.list_failures) if not listed else 0.05
                if wake is not None:
                    delay = max(delay, wake - self.clock())
                self._sleep(max(0.05, min(delay, self.config.max_backoff)))
        self.status.write()
        missing = [n for n in self.config.models if not self.dirs[n].versions()]
        if missing:
            _log.error("no version could be made available for %s", ", ".join(missing))
            return 1
        if not self.complete():
            _log.warning("some wanted versions are missing; serving what is in place")
        return 0
