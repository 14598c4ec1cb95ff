"""The model server: flags -> config files -> manager, batcher, metrics, gRPC and REST.

Creates a `ModelServer` that reads the files its `ServerOptions` name (models.config, batching
parameters, monitoring config) with `contracts.tfconfig`, loads the initial models before opening
any port (as tensorflow_model_server does), serves gRPC and REST, re-reads models.config every
``model_config_file_poll_wait_seconds`` and stops gracefully: stop accepting, finish in-flight
requests, then return.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from contracts.tfconfig import (
    BatchingParameters,
    ConfigError,
    ModelConfig,
    parse_batching_parameters,
    parse_models_config,
    parse_monitoring_config,
)
from devtools.server.batching import BatchScheduler, default_parameters
from devtools.server.errors import ServerConfigError, ServingError
from devtools.server.flags import ServerOptions
from devtools.server.grpc_service import GrpcOptions, GrpcServer, create_grpc_server
from devtools.server.limits import ByteBudget, RequestLimits
from devtools.server.manager import ManagerOptions, ModelManager, check_model_configs
from devtools.server.metrics import Metrics
from devtools.server.rest import RestApi, RestLimits, RestServer
from model.tf_runtime import onednn_problem

log = logging.getLogger(__name__)


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ServerConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def load_models(options: ServerOptions) -> list[ModelConfig]:
    """The model list from --model_config_file or --model_name/--model_base_path."""
    try:
        if options.model_config_file:
            models = parse_models_config(_read(options.model_config_file, "--model_config_file"))
        else:
            models = [ModelConfig(name=options.model_name, base_path=options.model_base_path)]
    except ConfigError as exc:
        raise ServerConfigError(str(exc)) from None
    try:
        check_model_configs(models)
    except ServingError as exc:
        raise ServerConfigError(exc.message) from None
    for model in models:
        if model.platform != "tensorflow":
            raise ServerConfigError(
                f"model {model.name}: platform {model.platform!r} is not supported; this server "
                "serves 'tensorflow' SavedModels"
            )
    return models


def _batching(options: ServerOptions) -> BatchingParameters | None:
    if not options.enable_batching:
        return None
    if not options.batching_parameters_file:
        return default_parameters(os.cpu_count() or 1)
    try:
        return parse_batching_parameters(
            _read(options.batching_parameters_file, "--batching_parameters_file")
        )
    except ConfigError as exc:
        raise ServerConfigError(str(exc)) from None


def _metrics_path(options: ServerOptions) -> str | None:
    if not options.monitoring_config_file:
        return None
    try:
        enabled, path = parse_monitoring_config(
            _read(options.monitoring_config_file, "--monitoring_config_file")
        )
    except ConfigError as exc:
        raise ServerConfigError(str(exc)) from None
    return path if enabled else None


class ModelServer:
    """One running server; `start` returns once both ports listen."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.metrics = Metrics()
        self.batcher: BatchScheduler | None = None
        self.manager: ModelManager | None = None
        self.grpc_port = 0
        self.rest_port = 0
        self._grpc: GrpcServer | None = None
        self._rest: RestServer | None = None
        self._stop = threading.Event()
        self._config_poller: threading.Thread | None = None
        self._config_text = ""

    def start(self) -> None:
        o = self.options
        problem = onednn_problem("devtools.server")
        if problem is not None:
            raise ServerConfigError(problem)
        models = load_models(o)
        params = _batching(o)
        metrics_path = _metrics_path(o)
        if params is not None:
            pool = params.thread_pool_name or "model_server_batch_threads"
            self.batcher = BatchScheduler(
                params, lambda n, p, q: self.metrics.record_batch(pool, n, p, q)
            )
        self.manager = ModelManager(
            ManagerOptions(
                file_system_poll_wait_seconds=o.file_system_poll_wait_seconds,
                enable_model_warmup=o.enable_model_warmup,
                warmup_iterations=max(o.num_request_iterations_for_warmup, 1),
                allow_version_labels_for_unavailable_models=(
                    o.allow_version_labels_for_unavailable_models
                ),
                batch_timeout_seconds=o.rest_api_timeout_in_ms / 1000 or None,
                max_request_tensor_bytes=o.max_request_tensor_bytes,
            ),
            self.metrics,
            self.batcher,
        )
        if o.file_system_poll_wait_seconds >= 0:
            try:
                self.manager.start(models)
            except ServingError as exc:
                raise ServerConfigError(f"{exc.code_name}: {exc.message}") from None
        budget = ByteBudget(o.max_inflight_request_bytes)
        if o.port:
            limits = RequestLimits(
                max_tensor_bytes=o.max_request_tensor_bytes,
                max_batch_size=params.max_batch_size if params is not None else None,
            )
            grpc_options = GrpcOptions(
                address=f"{o.host}:{max(o.port, 0)}",
                max_workers=o.grpc_max_threads,
                max_message_bytes=o.max_request_bytes,
                max_concurrent_rpcs=o.grpc_max_concurrent_rpcs,
                limits=limits,
                budget=budget,
                request_timeout_seconds=o.grpc_request_timeout_in_ms / 1000,
            )
            self._grpc = create_grpc_server(self.manager, self.metrics, grpc_options)
            self.grpc_port = self._grpc.start()
            log.info("Running gRPC ModelServer at %s:%d ...", o.host, self.grpc_port)
        if o.rest_api_port:
            api = RestApi(self.manager, self.metrics, metrics_path)
            rest_limits = RestLimits(
                max_request_bytes=o.max_request_bytes,
                num_threads=o.rest_api_num_threads,
                max_connections=o.rest_api_max_connections,
                header_timeout_seconds=o.rest_api_header_timeout_in_ms / 1000,
                body_timeout_seconds=o.rest_api_body_timeout_in_ms / 1000,
            )
            self._rest = RestServer(api, o.host, o.rest_api_port, rest_limits, budget)
            self._rest.start()
            self.rest_port = self._rest.port
            log.info("Exporting HTTP/REST API at:%s:%d ...", o.host, self.rest_port)
        if o.model_config_file and o.model_config_file_poll_wait_seconds > 0:
            self._config_text = _read(o.model_config_file, "--model_config_file")
            self._config_poller = threading.Thread(
                target=self._poll_config, name="config-poll", daemon=True
            )
            self._config_poller.start()
        if o.port_file:
            _write_port_file(o.port_file, self.grpc_port, self.rest_port)

    def _poll_config(self) -> None:
        """Re-read models.config; a bad or failing config is logged and the old one kept."""
        assert self.manager is not None
        while not self._stop.wait(self.options.model_config_file_poll_wait_seconds):
            try:
                text = _read(self.options.model_config_file, "--model_config_file")
                if text == self._config_text:
                    continue
                self._config_text = text
                self.manager.reload(load_models(self.options))
                log.info("Reloaded model config from %s", self.options.model_config_file)
            except (ServerConfigError, ServingError) as exc:
                log.error("Keeping the previous model config: %s", exc)
            except Exception:
                log.exception("Model config poll failed")

    def stop(self, grace_seconds: float = 30.0) -> None:
        """Stop accepting, finish in-flight requests, stop polling and batching."""
        self._stop.set()
        if self._grpc is not None:
            self._grpc.stop(grace_seconds)
        if self._rest is not None:
            self._rest.stop(grace_seconds)
        if self._config_poller is not None:
            self._config_poller.join()
        if self.manager is not None:
            self.manager.stop()
        if self.batcher is not None:
            self.batcher.close()
        log.info("Server stopped")


def _write_port_file(path: str, grpc_port: int, rest_port: int) -> None:
    """Write atomically (temp file + rename) so a reader never sees half a file."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps({"grpc": grpc_port, "rest": rest_port}))
    os.replace(tmp, target)
