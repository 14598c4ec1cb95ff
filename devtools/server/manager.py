"""Model lifecycle: which versions exist, load, warm up, serve, drain and unload.

Creates a `ModelManager` that does what TF Serving's ServerCore + AspiredVersionsManager do with
the file-system source and the availability-preserving policy:

- every ``file_system_poll_wait_seconds`` it lists each model's base path (directories named by
  a version 1 ... 2^63-1 only, so ``.incoming-3`` is ignored) and asks the version policy which
  to serve;
- a wanted version is loaded and, with warmup on, replays its warmup records; only then does it
  become AVAILABLE and routable. A version that fails either step ends in state END with the
  error in its status and never replaces a good one; it is retried only when its directory is
  replaced (new inode or mtime), not on every poll;
- an unwanted version is unloaded only when a wanted version is AVAILABLE (or none is wanted at
  all, or more than one unwanted version serves): the lowest goes first. It stops taking requests
  at once, and its memory is released after the in-flight requests holding it finish;
- labels map to versions; assigning one to a version that is not AVAILABLE fails the config
  unless ``allow_version_labels_for_unavailable_models`` (TF Serving's rules, including #1608);
- `ModelManager.reload` applies a new model list (file poll or HandleReloadConfigRequest).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from contracts import rules
from contracts.tfconfig import ModelConfig
from devtools.server.batching import BatchScheduler, batch_key
from devtools.server.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ServingError,
    Unknown,
)
from devtools.server.limits import DEFAULT_MAX_TENSOR_BYTES
from devtools.server.metrics import Metrics
from devtools.server.servable import Servable, Signature
from devtools.server.warmup import run_warmup

log = logging.getLogger(__name__)

START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"

Loader = Callable[[str, int, Path], Servable]


@dataclass(frozen=True)
class ManagerOptions:
    file_system_poll_wait_seconds: int = 1
    enable_model_warmup: bool = True
    warmup_iterations: int = 1
    allow_version_labels_for_unavailable_models: bool = False
    batch_timeout_seconds: float | None = None  # how long a request may wait in the batch queue
    max_request_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES  # bounds warmup records too


@dataclass(frozen=True)
class VersionStatus:
    """One row of GetModelStatus: version, state and the last error (OK when none)."""

    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""


@dataclass(eq=False)
class _Version:
    version: int
    state: str = START
    error: ServingError | None = None
    servable: Servable | None = None
    refs: int = 0
    identity: tuple[int, int] | None = None  # (inode, mtime_ns) of the dir a failed load used


@dataclass(eq=False)
class _Model:
    config: ModelConfig | None
    versions: dict[int, _Version] = field(default_factory=dict)


def check_model_configs(models: list[ModelConfig]) -> None:
    """ServerCore's ValidateModelConfigList: every base path is absolute.

    TF Serving also takes URIs (s3://, gs://); this server reads local directories only. A
    relative path would resolve against the server's working directory, which nobody who sends
    a ReloadConfig request can see or control.
    """
    for model in models:
        if not os.path.isabs(model.base_path):
            raise InvalidArgument(
                f"Expected model {model.name} to have an absolute path or URI; "
                f"got base_path()={model.base_path}"
            )


def servable_id(name: str, version: int) -> str:
    return f"{{name: {name} version: {version}}}"


class ModelManager:
    """Thread-safe registry of model versions, kept in step with the disk by a poll thread."""

    def __init__(
        self,
        options: ManagerOptions,
        metrics: Metrics | None = None,
        batcher: BatchScheduler | None = None,
        loader: Loader = Servable.load,
    ) -> None:
        self.options = options
        self.metrics = metrics
        self.batcher = batcher
        self._loader = loader
        self._models: dict[str, _Model] = {}
        self._labels: dict[str, dict[str, int]] = {}
        self._lock = threading.Condition()
        self._cycle_lock = threading.Lock()  # one config change / poll cycle at a time
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._unloaders: list[threading.Thread] = []

    # --- configuration -----------------------------------------------------------------------

    def start(self, models: list[ModelConfig]) -> None:
        """Apply the first config (loading what it asks for), then start polling."""
        self.reload(models)
        interval = self.options.file_system_poll_wait_seconds
        if interval > 0:
            self._poller = threading.Thread(target=self._poll_loop, name="fs-poll", daemon=True)
            self._poller.start()

    def reload(self, models: list[ModelConfig]) -> None:
        """ServerCore::ReloadConfig: check labels, switch config, load, report new models' fate."""
        check_model_configs(models)
        with self._cycle_lock:
            new_labels = self._check_labels(models)
            with self._lock:
                before = {n for n, m in self._models.items() if m.config is not None}
                wanted = {m.name: m for m in models}
                for name, model in self._models.items():
                    model.config = wanted.get(name)
                for name, config in wanted.items():
                    self._models.setdefault(name, _Model(config)).config = config
                self._labels = new_labels
            for config in models:
                log.info(
                    "Config entry: name: %s base_path: %s platform: %s",
                    config.name,
                    config.base_path,
                    config.platform,
                )
            self._cycle()
            failed = [m for m in models if m.name not in before and not self._any_available(m)]
            errors = [
                f"{{{servable_id(m.name, v.version)} due to error: {v.error.code_name}: "
                f"{v.error.message}}}"
                for m in failed
                for v in self._models[m.name].versions.values()
                if v.error is not None
            ]
            if errors:
                raise Unknown(
                    f"{len(errors)} model(s) did not become available: {{{', '.join(errors)}, }}"
                )

    def _check_labels(self, models: list[ModelConfig]) -> dict[str, dict[str, int]]:
        """UpdateModelVersionLabelMap: labels may only point at AVAILABLE versions (or flag)."""
        labels: dict[str, dict[str, int]] = {}
        with self._lock:
            for config in models:
                model = self._models.get(config.name)
                for label, version in config.labels.items():
                    allowed = False
                    if self.options.allow_version_labels_for_unavailable_models:
                        existing = self._labels.get(config.name, {}).get(label)
                        allowed = existing is None or existing == version
                    state = model.versions.get(version) if model else None
                    if not allowed and (state is None or state.state != AVAILABLE):
                        raise FailedPrecondition(
                            f"Request to assign label to version {version} of model "
                            f"{config.name}, which is not currently available for inference"
                        )
                    labels.setdefault(config.name, {})[label] = version
        return labels

    def _any_available(self, config: ModelConfig) -> bool:
        with self._lock:
            model = self._models.get(config.name)
            return bool(model) and any(v.state == AVAILABLE for v in model.versions.values())

    # --- polling -------------------------------------------------------------------------------

    def _poll_loop(self) -> None:
        interval = self.options.file_system_poll_wait_seconds
        while not self._stop.wait(interval):
            try:
                with self._cycle_lock:
                    self._cycle()
            except Exception:  # a poll must never kill the poller
                log.exception("File system poll failed; retrying in %ss", interval)

    def poll_now(self) -> None:
        """Run one poll cycle in the caller's thread (tests, and a config reload)."""
        with self._cycle_lock:
            self._cycle()

    def _cycle(self) -> None:
        with self._lock:
            models = list(self._models.items())
        for name, model in models:
            config = model.config
            if config is None:
                self._settle(name, set())
                continue
            on_disk = self._scan(config)
            if on_disk is None:
                continue  # base path unreadable: keep serving what is loaded, as TF Serving does
            aspired = config.policy.wants(on_disk)
            for version in sorted(aspired, reverse=True):
                self._maybe_load(config, version, on_disk[version])
            self._settle(name, aspired)

    def _scan(self, config: ModelConfig) -> dict[int, Path] | None:
        base = Path(config.base_path)
        try:
            children = list(base.iterdir())
        except OSError as exc:
            log.error(
                "FileSystemStoragePathSource encountered a filesystem access error: Could not "
                "find base path %s for servable %s with error %s",
                base,
                config.name,
                exc.strerror or exc,
            )
            return None
        # The project's one version rule (1 ... 2^63-1, TF Serving's int64), spelled as TF Serving
        # reads a directory name (leading zeros count): a version the store and the sync agent
        # accept is a version this server serves.
        named = ((rules.parse_served_version_dir(p.name), p) for p in children)
        versions = {v: p for v, p in named if v is not None and p.is_dir()}
        if not versions:
            log.warning(
                "File system storage path source: No versions of servable %s found under base "
                "path %s",
                config.name,
                base,
            )
        return versions

    def _maybe_load(self, config: ModelConfig, version: int, path: Path) -> None:
        identity = _identity(path)
        with self._lock:
            model = self._models[config.name]
            record = model.versions.get(version)
            if record is not None and record.state in (LOADING, AVAILABLE, UNLOADING):
                return
            if record is not None and record.error is not None and record.identity == identity:
                return  # failed before from this very directory; wait until it is replaced
            record = model.versions[version] = _Version(version, LOADING, identity=identity)
        self._load(config.name, record, path)

    def _load(self, name: str, record: _Version, path: Path) -> None:
        sid = servable_id(name, record.version)
        log.info("Loading servable version %s", sid)
        start = time.monotonic()
        servable = None
        try:
            servable = self._loader(name, record.version, path)
            if self.batcher is not None:
                servable.set_runner(self._batched_runner(servable))
            if self.options.enable_model_warmup:
                self._warmup(servable)  # measures the signatures its records call
            servable.measure_unmeasured()  # the others, on a probe where one can be made
        except ServingError as exc:
            self._fail(record, sid, path, exc, servable)
            return
        except Exception as exc:  # anything TF raises: the version fails, the server lives
            self._fail(record, sid, path, Unknown(f"{type(exc).__name__}: {exc}"), servable)
            return
        with self._lock:
            record.servable, record.state, record.error = servable, AVAILABLE, None
        if self.metrics:
            self.metrics.load_attempt_count.inc(str(path), "success")
        log.info(
            "Successfully loaded servable version %s (%.0f ms)",
            sid,
            (time.monotonic() - start) * 1000,
        )

    def _warmup(self, servable: Servable) -> None:
        start = time.monotonic()
        status = "OK"
        try:
            run_warmup(
                servable, self.options.warmup_iterations, self.options.max_request_tensor_bytes
            )
        except ServingError as exc:
            status = exc.code_name
            raise
        finally:
            if self.metrics:
                self.metrics.model_warmup_latency.labels(str(servable.path), status).observe(
                    (time.monotonic() - start) * 1e6
                )

    def _fail(
        self, record: _Version, sid: str, path: Path, exc: ServingError, servable: Servable | None
    ) -> None:
        log.error("Loading servable: %s failed: %s: %s", sid, exc.code_name, exc.message)
        if servable is not None:
            servable.release()
        with self._lock:
            record.state, record.error = END, exc
        if self.metrics:
            self.metrics.load_attempt_count.inc(str(path), "fail")

    def _batched_runner(self, servable: Servable):
        batcher = self.batcher
        assert batcher is not None
        timeout = self.options.batch_timeout_seconds

        def run(signature: Signature, inputs: dict) -> dict:
            key = (id(servable), signature.name, batch_key(inputs))
            return batcher.run(
                key, inputs, lambda merged: servable.call(signature, merged), timeout
            )

        return run

    def _settle(self, name: str, aspired: set[int]) -> None:
        """AvailabilityPreservingPolicy's unload rule, applied until nothing more may go."""
        while True:
            with self._lock:
                model = self._models[name]
                serving = [v for v in model.versions.values() if v.state == AVAILABLE]
                unaspired = sorted(
                    (v for v in serving if v.version not in aspired), key=lambda v: v.version
                )
                aspired_serving = any(v.version in aspired for v in serving)
                if not unaspired or not (not aspired or aspired_serving or len(unaspired) > 1):
                    return
                victim = unaspired[0]
                victim.state = UNLOADING  # no new request can take it from here on
            thread = threading.Thread(
                target=self._drain, args=(name, victim), name=f"unload-{name}-{victim.version}"
            )
            thread.start()
            self._unloaders = [t for t in self._unloaders if t.is_alive()] + [thread]

    def _drain(self, name: str, record: _Version) -> None:
        sid = servable_id(name, record.version)
        log.info("Unloading servable version %s", sid)
        with self._lock:
            while record.refs:
                self._lock.wait()
            servable, record.servable = record.servable, None
        if servable is not None:
            servable.release()
        with self._lock:
            record.state = END
        log.info("Done unloading servable version %s", sid)

    # --- requests ------------------------------------------------------------------------------

    @contextmanager
    def handle(self, name: str, version: int | None, label: str | None) -> Iterator[Servable]:
        """ServerCore::GetServableHandle: the version stays loaded while the caller holds it."""
        if not name:
            raise InvalidArgument("ModelSpec has no name specified.")
        with self._lock:
            if label is not None:
                version = self._resolve_label(name, label)
            record = self._find(name, version)
            if record is None or record.servable is None:
                request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
                raise NotFound(f"Servable not found for request: {request}")
            record.refs += 1
            servable = record.servable
        try:
            yield servable
        finally:
            with self._lock:
                record.refs -= 1
                if not record.refs:
                    self._lock.notify_all()

    def _resolve_label(self, name: str, label: str) -> int:
        try:
            return self._labels[name][label]
        except KeyError:
            raise InvalidArgument(f"Unrecognized servable version label: {label}") from None

    def _find(self, name: str, version: int | None) -> _Version | None:
        model = self._models.get(name)
        if model is None:
            return None
        if version is not None:
            record = model.versions.get(version)
            return record if record is not None and record.state == AVAILABLE else None
        available = [v for v in model.versions.values() if v.state == AVAILABLE]
        return max(available, key=lambda v: v.version, default=None)

    def status(self, name: str, version: int | None) -> list[VersionStatus]:
        """GetModelStatus: every version this server has seen, newest first, or the one asked for.

        There is no label here: TF Serving's ``GetModelStatusWithModelSpec``
        (get_model_status_impl.cc) reads only the spec's version, so a status request by label,
        known or not, lists every version.
        """
        with self._lock:
            model = self._models.get(name)
            versions = model.versions if model else {}
            if version is not None:
                if version not in versions:
                    raise NotFound(f"Could not find version {version} of model {name}")
                records = [versions[version]]
            else:
                if not versions:
                    raise NotFound(f"Could not find any versions of model {name}")
                records = sorted(versions.values(), key=lambda v: -v.version)
            return [
                VersionStatus(
                    r.version,
                    r.state,
                    r.error.code_name if r.error else "OK",
                    r.error.message if r.error else "",
                )
                for r in records
            ]

    def model_names(self) -> list[str]:
        with self._lock:
            return sorted(n for n, m in self._models.items() if m.config is not None)

    # --- shutdown ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop polling and wait for unloads in progress; loaded versions stay until exit."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join()
        for thread in self._unloaders:
            thread.join()


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns
