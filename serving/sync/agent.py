"""The sync loop: keep ``DEST/NAME/`` holding exactly the versions the policy wants.

Each listing cycle, per model: list committed versions in the store (manifest present and
matching, `contracts.store.list_committed_versions`), decide the wanted set (the policy applied to
what is committed, plus any committed version a label in ``models.config`` points at), fetch the
missing ones newest first, then remove versions this agent wrote that are no longer wanted, but
only once every wanted version is in place (so the last good version always stays). If nothing
wanted can be fetched and the model has no version at all, older committed versions are tried, so
a pod still starts while the newest version is broken.

S3 is listed every ``interval`` seconds (listing costs money, tensorflow/serving#1291); a
manifest is downloaded again only when its ETag changed (`contracts.store.ManifestCache`); failed
listings back off exponentially from ``interval`` up to ``max_backoff``; a failed version is
retried on its own backoff from the cached manifests, without re-listing.

With ``tfserving_url`` (TF Serving's REST API in the same pod, ``GET /v1/models/<name>``), an
unwanted version is retired only once the server reports every wanted version AVAILABLE; a
wanted version the server reports as failed to load (state END with an error), or has not
reported AVAILABLE within ``load_timeout`` of its placing (whatever the server answers, or if it
does not answer: a crash loop), is marked failed (status ``not_loadable``, metric
``tfserving_sync_versions_not_loadable``) and taken off the disk when another version remains,
so TF Serving falls back to the last good version. Without ``tfserving_url`` nothing can prove a
successor loads: the newest version below the wanted ones is kept beside them, and the status
(``kept_without_proof``) and the log say so. A version whose files the store replaced
(``publish --force``: another content digest) is fetched again and swapped in with one atomic
exchange; a failed fetch of content the store has since replaced is retried at the next listing,
not after its backoff.

Nothing the store, the disk or S3 does makes the loop exit: every cycle runs under one guard that
logs the error, records it in the status and the metrics, backs off and carries on.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from contracts.store import (
    CommittedVersion,
    ManifestCache,
    StoreError,
    StoreLocation,
    content_digest,
    list_committed,
)
from contracts.tfconfig import ConfigError, VersionPolicy, parse_models_config

from .backoff import Backoff, RetryTracker
from .download import describe_error, fetch_version
from .errors import FetchError, StopRequested, SyncConfigError
from .health import tfserving_states
from .local import ModelDir
from .metrics import SyncMetrics
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
    tfserving_url: str | None = None  # retire versions only once the successor is AVAILABLE
    # With tfserving_url: a version on disk that TF Serving has not reported AVAILABLE this long
    # after it was placed is marked failed and taken off the disk (when another one remains).
    load_timeout: float = 600.0

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
        if self.load_timeout <= 0:
            raise SyncConfigError(f"--load-timeout must be positive, got {self.load_timeout}")


class Agent:
    """Syncs the configured models; `run` loops until stopped, `run_once` is init mode."""

    def __init__(
        self,
        config: AgentConfig,
        s3: Any,
        status: StatusBoard,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: SyncMetrics | None = None,
    ) -> None:
        self.config = config
        self.s3 = s3
        self.status = status
        self.stop = stop or threading.Event()
        self.clock = clock
        self.metrics = metrics or SyncMetrics(config.models, served=bool(config.tfserving_url))
        self.status.on_write_error = lambda _exc: self.metrics.failed("status_file")
        self.manifests = ManifestCache()
        self.dirs: dict[str, ModelDir] = {}
        self.committed: dict[str, dict[int, CommittedVersion]] = {}
        self.problems: dict[str, dict[int, str]] = {}
        self.served: dict[str, dict[int, tuple[str, str]] | None] = {}
        self._local_digests: dict[tuple[str, int], str | None] = {}
        # Versions TF Serving failed to load, by the content digest that failed: not fetched
        # again until the store holds other files for them (publish --force) or a restart.
        self.rejected: dict[tuple[str, int], tuple[str, str]] = {}
        # Versions placed on disk and not yet reported AVAILABLE, since when (clock); and those
        # TF Serving has reported AVAILABLE since they were placed (proven: no timeout).
        self.unproven: dict[tuple[str, int], float] = {}
        self.proven: set[tuple[str, int]] = set()
        # The content digest each failing fetch was for: other files (publish --force) retry
        # at the next listing instead of after the failure's backoff.
        self._failed_digests: dict[tuple[str, int], str] = {}
        self._said_kept: set[tuple[str, int]] = set()
        self.cycle_failures = 0
        self._once = False  # init mode: TF Serving is not running yet, so it is not asked
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
            try:
                removed = model_dir.clean_debris()
            except OSError as exc:  # e.g. ENOSPC rewriting the ledger: not a reason to exit
                self._cycle_failed(exc)
                removed = []
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
        downloads = self.manifests.downloads
        try:
            listings = {
                name: list_committed(self.s3, self.config.source, name, self.manifests)
                for name in self.config.models
            }
        except (BotoCoreError, ClientError, StoreError, OSError) as exc:
            self.list_failures += 1
            self.metrics.failed("listing")
            self._error(f"listing {self.config.source.uri} failed: {describe_error(exc)}")
            self.status.listing(ok=False)
            return False
        finally:
            self.metrics.manifest_downloads.inc(self.manifests.downloads - downloads)
        self.list_failures = 0
        self.metrics.polled()
        self.status.listing(ok=True)
        for name in self.config.models:
            listing = listings[name]
            self.committed[name] = listing.versions
            self._note_problems(name, listing.problems)
            policy, labels = self._policy(name)
            committed = self.committed[name]
            wanted = policy.wants(committed) | (set(labels.values()) & committed.keys())
            missing_labels = sorted(set(labels.values()) - committed.keys())
            if missing_labels:
                _log.warning("%s: labelled versions %s are not committed", name, missing_labels)
            self.wanted[name] = wanted
            # Forget failures of versions that are no longer committed (deleted or rolled back),
            # and of versions whose files the store replaced since they failed: a repair
            # (publish --force) is fetched now, not after the failed content's backoff.
            self.retries.forget_except(
                {
                    k
                    for k in self.retries.states
                    if k[0] != name
                    or (
                        k[1] in committed
                        and self._failed_digests.get(k) in (None, _digest(committed[k[1]]))
                    )
                }
            )
            self.status.model(name, policy=str(policy), labels=labels, wanted=sorted(wanted))
            self.metrics.versions_wanted.labels(name).set(len(wanted))
        return True

    def _note_problems(self, name: str, problems: dict[int, str]) -> None:
        """Record store entries that are not usable versions; count each new one once."""
        previous = self.problems.get(name, {})
        for version, problem in problems.items():
            if previous.get(version) != problem:
                self.metrics.failed("manifest")
                self._error(f"store entry ignored: {problem}")
        self.problems[name] = dict(problems)
        self.status.model(name, store_problems={str(v): p for v, p in sorted(problems.items())})

    def converge(self) -> None:
        """Fetch what is wanted and missing, fall back if nothing is there, prune the rest."""
        for name in self.config.models:
            if self.stop.is_set():
                return
            if name not in self.committed:
                continue  # never listed successfully yet
            model_dir, committed = self.dirs[name], self.committed[name]
            wanted = self.wanted[name]
            self._observe_server(name)
            for version in sorted(wanted - model_dir.versions(), reverse=True):
                if not self._is_rejected(name, committed[version]):
                    self._try_fetch(name, committed[version])
            for version in sorted(wanted & model_dir.versions() & model_dir.owned()):
                if self._replaced(name, committed[version]):
                    _log.warning(
                        "%s: version %s was replaced in the store (publish --force); "
                        "fetching its new content",
                        name,
                        version,
                    )
                    self._try_fetch(name, committed[version], replace=True)
            if not model_dir.versions():
                for version in sorted(committed.keys() - wanted, reverse=True):
                    _log.warning(
                        "%s: no wanted version in place; falling back to %s", name, version
                    )
                    if self._try_fetch(name, committed[version]):
                        break
            self._prune(name)
            self._show(name)

    def _is_rejected(self, name: str, found: CommittedVersion) -> bool:
        rejected = self.rejected.get((name, found.manifest.version))
        if rejected is None:
            return False
        if rejected[0] == content_digest(found.manifest):
            return True
        del self.rejected[(name, found.manifest.version)]  # new files: worth another try
        return False

    def _replaced(self, name: str, found: CommittedVersion) -> bool:
        """Whether the store's files of a version differ from those this agent installed."""
        key = (name, found.manifest.version)
        if key not in self._local_digests:
            local = self.dirs[name].local_manifest(found.manifest.version)
            self._local_digests[key] = None if local is None else content_digest(local)
        local_digest = self._local_digests[key]
        return local_digest is not None and local_digest != content_digest(found.manifest)

    def _try_fetch(self, name: str, found: CommittedVersion, replace: bool = False) -> bool:
        manifest = found.manifest
        key = (name, manifest.version)
        if self.stop.is_set() or not self.retries.ready(key, self.clock()):
            return False
        _log.info(
            "%s: fetching version %s (%d bytes)", name, manifest.version, manifest.total_bytes
        )
        self.status.fetching(name, manifest.version, manifest.total_bytes)
        self.status.write()
        counted = 0

        def progress(received: int) -> None:
            nonlocal counted
            self.metrics.bytes_downloaded.labels(name).inc(max(0, received - counted))
            counted = max(counted, received)
            self._progress(name, received)

        try:
            fetch_version(
                self.s3,
                self.config.source,
                manifest,
                self.dirs[name],
                self.stop,
                on_progress=progress,
                prefix=found.prefix,
                replace=replace,
            )
        except FetchError as exc:
            self.metrics.failed(exc.reason)
            self._failed_digests[key] = content_digest(manifest)
            state = self.retries.failed(key, str(exc), self.clock())
            wait = state.retry_at - self.clock()
            self._error(f"{exc} (attempt {state.failures}; retrying in {wait:.1f}s)")
            return False
        finally:
            self.status.fetching(name, None)
        self._local_digests[key] = content_digest(manifest)
        self._failed_digests.pop(key, None)
        self.retries.succeeded(key)
        self.unproven[key] = self.clock()  # its load is yet to be seen
        self.proven.discard(key)
        self.metrics.installed.labels(name).inc()
        self.status.event(name, "installed", manifest.version)
        self.status.error(None)
        self._show(name)
        self.status.write()
        return True

    # --- what the server has loaded ------------------------------------------------------------

    def _observe_server(self, name: str) -> None:
        """Ask TF Serving which versions it serves; take back the versions it failed to load,
        or has not loaded within ``load_timeout`` of their placing (answering or not)."""
        if not self.config.tfserving_url or self._once:
            return  # nothing to ask: `_prune` then keeps the previous version
        states: dict[int, tuple[str, str]] | None
        try:
            states = tfserving_states(self.config.tfserving_url, name)
        except (OSError, ValueError) as exc:
            if self.served.get(name) is not None or name not in self.served:
                _log.warning("%s: TF Serving status unavailable: %s", name, exc)
                self.metrics.failed("server_status")
            states = None
            self.status.model(name, served=None)
        else:
            available = {v for v, (state, _code) in states.items() if state == "AVAILABLE"}
            self.metrics.served(name, available)
            self.status.model(name, served=sorted(available))
        self.served[name] = states
        model_dir = self.dirs[name]
        mine = model_dir.versions() & model_dir.owned()
        now = self.clock()
        for version in sorted(mine, reverse=True):
            key = (name, version)
            state, code = (states or {}).get(version, ("", ""))
            if state == "AVAILABLE":
                self.proven.add(key)
                self.unproven.pop(key, None)
                continue
            if version not in self.wanted.get(name, set()):
                continue
            since = self.unproven.setdefault(key, now)
            if state == "END" and code not in ("OK", "0"):
                reason, why = "not_loaded", f"TF Serving could not load it ({code})"
            elif key not in self.proven and now - since >= self.config.load_timeout:
                seen = "status unavailable" if states is None else f"state {state or 'unknown'}"
                code = "LOAD_TIMEOUT"
                reason = "load_timeout"
                why = (
                    f"TF Serving has not reported it AVAILABLE {now - since:.0f}s after it was "
                    f"placed ({seen}; --load-timeout {self.config.load_timeout:g}s)"
                )
            else:
                continue
            if not (model_dir.versions() - {version}):
                continue  # nothing to fall back to: keep it, a restart may yet load it
            self._reject(name, version, code, reason, why)

    def _reject(self, name: str, version: int, code: str, reason: str, why: str) -> None:
        """Off the disk, so TF Serving's own policy (latest:N) picks the last good version again,
        also after a restart; not fetched again until the store holds other files for it."""
        model_dir = self.dirs[name]
        self.metrics.failed(reason)
        self._error(
            f"{name}/{version}: {why}; removed, and not fetched again until the store holds "
            "other files for it"
        )
        digest = self._local_digests.get((name, version)) or ""
        if not digest:
            local = model_dir.local_manifest(version)
            digest = content_digest(local) if local is not None else ""
        self.rejected[(name, version)] = (digest, code)
        model_dir.remove(version)
        self._local_digests.pop((name, version), None)
        self.unproven.pop((name, version), None)
        self.metrics.removed.labels(name).inc()
        self.status.event(name, "removed", version)

    def _prune(self, name: str) -> None:
        model_dir, wanted = self.dirs[name], self.wanted[name]
        local = model_dir.versions()
        if not wanted or not wanted <= local:
            return  # keep everything until the wanted set is complete: the last good stays
        doomed = sorted((local - wanted) & model_dir.owned())
        waiting: list[int] = []
        kept: list[int] = []
        if doomed and self.config.tfserving_url:
            states = self.served.get(name)
            if states is None:
                waiting = sorted(wanted)  # the server cannot tell: keep the old versions
            else:
                waiting = sorted(v for v in wanted if states.get(v, ("", ""))[0] != "AVAILABLE")
        elif doomed:
            # Nobody can say whether the successors load: keep the newest version below them
            # (the one served before; a higher one would be what `latest` serves, so it goes).
            below = [v for v in doomed if v < max(wanted)]
            kept = below[-1:]
            for version in kept:
                if (name, version) not in self._said_kept:
                    self._said_kept.add((name, version))
                    _log.warning(
                        "%s: keeping version %s beside %s: without --tfserving-url the agent "
                        "cannot see whether its successor loads",
                        name,
                        version,
                        sorted(wanted),
                    )
        self.status.model(
            name, waiting_for_server=waiting if doomed else [], kept_without_proof=kept
        )
        if waiting:
            return  # retire only once every successor is AVAILABLE
        for version in doomed:
            if version in kept:
                continue
            _log.info("%s: removing version %s (no longer wanted)", name, version)
            model_dir.remove(version)
            self._local_digests.pop((name, version), None)
            self.unproven.pop((name, version), None)
            self.proven.discard((name, version))
            self.metrics.removed.labels(name).inc()
            self.status.event(name, "removed", version)

    # --- status --------------------------------------------------------------------------------

    def _show(self, name: str) -> None:
        model_dir = self.dirs[name]
        self.metrics.on_disk(name, model_dir.versions())
        failed = {
            str(v): {
                "error": s.last_error,
                "failures": s.failures,
                "retry_in": round(max(0.0, s.retry_at - self.clock()), 3),
            }
            for (n, v), s in self.retries.states.items()
            if n == name
        }
        rejected = {str(v): code for (n, v), (_d, code) in self.rejected.items() if n == name}
        wanted = self.wanted.get(name, set())
        self.metrics.not_loadable.labels(name).set(sum(1 for v in rejected if int(v) in wanted))
        self.status.model(
            name,
            available=sorted(model_dir.versions()),
            owned=sorted(model_dir.owned()),
            failed=failed,
            not_loadable=rejected,
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
            try:
                if now >= next_listing:
                    if self.list_store():
                        next_listing = now + self.config.interval
                    else:
                        next_listing = now + self.list_backoff.delay(self.list_failures)
                self.converge()
                self.cycle_failures = 0
            except StopRequested:
                break
            except Exception as exc:  # the guard: nothing from the store or disk ends the loop
                self._cycle_failed(exc)
                next_listing = self.clock() + self.list_backoff.delay(self.cycle_failures)
            self.status.beat()
            self.status.write()
            wake = min(next_listing, self.retries.next_retry() or next_listing)
            self._sleep(max(0.05, wake - self.clock()))
        _log.info("stopped")

    def _cycle_failed(self, exc: Exception) -> None:
        """Log, count and record an error no narrower handler caught; the caller backs off."""
        self.cycle_failures += 1
        reason = "internal"
        if isinstance(exc, OSError):
            reason = "disk_full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "disk"
        self.metrics.failed(reason)
        _log.exception("sync cycle failed (%s); backing off and keeping what is in place", reason)
        self.status.error(f"sync cycle failed: {type(exc).__name__}: {exc}")

    def _sleep(self, seconds: float) -> None:
        """Wait (stop-aware), beating the heartbeat every few seconds so idling looks alive."""
        deadline = self.clock() + seconds
        while not self.stop.is_set() and (left := deadline - self.clock()) > 0:
            self.stop.wait(min(left, 5.0))
            self.status.beat()

    def run_once(self) -> int:
        """Init-container mode: 0 once every model has a version in place, 1 if one has none.

        TF Serving is not running yet, so with ``tfserving_url`` nothing is retired here; the
        sidecar retires old versions once the server reports their successors AVAILABLE.
        """
        self._once = True
        self.prepare()
        listed = False
        for attempt in range(1, self.config.max_attempts + 1):
            try:
                if not listed or not self.complete():
                    listed = self.list_store() or listed
                self.converge()
            except StopRequested:
                break
            except Exception as exc:  # as in `run`: fall through to what is on disk
                self._cycle_failed(exc)
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


def _digest(found: CommittedVersion) -> str:
    return content_digest(found.manifest)
