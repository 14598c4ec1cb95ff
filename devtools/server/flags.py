"""Command-line flags of ``python -m devtools.server``: tensorflow_model_server's names and syntax.

TF Serving parses flags with ``tensorflow::Flags``: ``--name=value``, booleans also as bare
``--name`` or ``--name=false``, and no positional arguments. argparse would also accept
``--name value``, abbreviations and ``-h`` styles TF Serving rejects, so the table below is parsed
by hand (about forty lines) to keep the same command lines valid for both servers.

Defaults are TF Serving's (``model_servers/server.h``), except where this stand-in adds a flag:
``--port_file`` (write the bound ports as JSON, for ephemeral ``:0`` ports in tests: pass
``--port=0`` and the gRPC server is disabled exactly as in TF Serving, so tests ask for a free
port with ``--rest_api_port=-1``/``--port=-1``, meaning "pick any free port") and
``--max_request_bytes`` (largest REST body or gRPC message accepted), ``--host`` (the address
to bind: loopback unless told otherwise, where TF Serving binds every interface), and the limits
that keep hostile or merely huge requests from exhausting memory, threads or sockets
(docs/hostile-input.md): ``--max_request_tensor_bytes``, ``--max_inflight_request_bytes``,
``--rest_api_max_connections``, ``--rest_api_header_timeout_in_ms``,
``--rest_api_body_timeout_in_ms``, ``--grpc_max_concurrent_rpcs`` and
``--grpc_request_timeout_in_ms``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

from devtools.server.errors import ServerConfigError
from devtools.server.limits import DEFAULT_MAX_TENSOR_BYTES

EPHEMERAL_PORT = -1  # this stand-in's addition: bind any free port and report it via --port_file
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
# Requests in flight hold from this budget at least 1/16 of the memory they are estimated to
# cause (limits.MEMORY_FACTOR; measured: docs/hostile-input.md), so 128 MiB keeps them under 2 GiB.
DEFAULT_MAX_INFLIGHT_REQUEST_BYTES = 128 * 1024 * 1024


def _cpus() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class ServerOptions:
    """Everything the command line says; validated once in `parse_flags`."""

    port: int = 8500
    rest_api_port: int = 0
    rest_api_num_threads: int = 4 * _cpus()
    rest_api_timeout_in_ms: int = 30000
    grpc_max_threads: int = 4 * _cpus()
    model_name: str = ""
    model_base_path: str = ""
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: int = 0
    file_system_poll_wait_seconds: int = 1
    enable_batching: bool = False
    batching_parameters_file: str = ""
    monitoring_config_file: str = ""
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 0
    allow_version_labels_for_unavailable_models: bool = False
    port_file: str = ""
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_request_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES
    max_inflight_request_bytes: int = DEFAULT_MAX_INFLIGHT_REQUEST_BYTES
    rest_api_max_connections: int = 256
    rest_api_header_timeout_in_ms: int = 10000
    rest_api_body_timeout_in_ms: int = 30000
    grpc_max_concurrent_rpcs: int = 256
    grpc_request_timeout_in_ms: int = 30000
    # Loopback: a development server answers this machine only unless told otherwise
    # (--host=0.0.0.0 for every interface, where tensorflow_model_server binds: server.cc).
    host: str = "127.0.0.1"


_HELP = {
    "port": "gRPC port (0 disables gRPC, -1 picks a free port)",
    "rest_api_port": "REST port (0 disables REST, -1 picks a free port)",
    "rest_api_num_threads": "requests processed concurrently on the REST port",
    "rest_api_timeout_in_ms": "deadline of a REST request waiting in the batch queue",
    "grpc_max_threads": "gRPC worker threads",
    "model_name": "name of the single model (with --model_base_path)",
    "model_base_path": "directory holding the model's integer-named version directories",
    "model_config_file": "ModelServerConfig text proto (models.config)",
    "model_config_file_poll_wait_seconds": "re-read --model_config_file this often (0: never)",
    "file_system_poll_wait_seconds": "poll base paths for versions this often (0: once)",
    "enable_batching": "merge concurrent requests into one model call",
    "batching_parameters_file": "BatchingParameters text proto",
    "monitoring_config_file": "MonitoringConfig text proto (Prometheus endpoint)",
    "enable_model_warmup": "replay assets.extra/tf_serving_warmup_requests before serving",
    "num_request_iterations_for_warmup": "times each warmup record is replayed (0: once)",
    "allow_version_labels_for_unavailable_models": "allow labels on versions not yet loaded",
    "port_file": 'write {"grpc": port, "rest": port} here once both listen',
    "max_request_bytes": "largest REST body / gRPC message accepted",
    "max_request_tensor_bytes": "largest decoded input of one gRPC request (from its shapes)",
    "max_inflight_request_bytes": "memory budget of the requests in flight (each holds at least "
    "1/16 of its estimated cost); beyond: 429 / RESOURCE_EXHAUSTED",
    "rest_api_max_connections": "open REST connections; beyond: 503 and close",
    "rest_api_header_timeout_in_ms": "time a client has to send a request's line and headers",
    "rest_api_body_timeout_in_ms": "time a client has to send a request's body, once its "
    "headers are in; beyond: 408",
    "grpc_max_concurrent_rpcs": "gRPC calls running or queued; beyond: RESOURCE_EXHAUSTED",
    "grpc_request_timeout_in_ms": "time a gRPC call has to send its request message before it "
    "may take a worker; beyond: DEADLINE_EXCEEDED",
    "host": "address to bind (0.0.0.0: every interface)",
}


def usage() -> str:
    lines = ["usage: python -m devtools.server [--flag=value ...]", ""]
    for f in fields(ServerOptions):
        lines.append(f"  --{f.name}={f.default!r}\t{_HELP[f.name]}")
    return "\n".join(lines)


def _parse_bool(name: str, text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ServerConfigError(f"--{name}={text}: expected true or false")


def parse_flags(argv: list[str]) -> ServerOptions:
    """Parse ``argv`` (without the program name) into validated `ServerOptions`."""
    kinds = {f.name: f.type for f in fields(ServerOptions)}
    values: dict[str, Any] = {}
    for arg in argv:
        if not arg.startswith("--"):
            raise ServerConfigError(f"unexpected argument {arg!r}: flags look like --name=value")
        name, sep, text = arg[2:].partition("=")
        if name not in kinds:
            raise ServerConfigError(f"unknown flag --{name} (see --help)")
        kind = kinds[name]
        if kind == "bool":
            values[name] = _parse_bool(name, text) if sep else True
        elif not sep:
            raise ServerConfigError(f"--{name} needs a value: --{name}=VALUE")
        elif kind == "int":
            try:
                values[name] = int(text)
            except ValueError:
                raise ServerConfigError(f"--{name}={text}: expected an integer") from None
        else:
            values[name] = text
    options = ServerOptions(**values)
    _validate(options)
    return options


def _validate(o: ServerOptions) -> None:
    problems = []
    for name in ("port", "rest_api_port"):
        value = getattr(o, name)
        if not EPHEMERAL_PORT <= value <= 65535:
            problems.append(f"--{name}={value}: use 1-65535, 0 to disable or -1 for any free port")
    if o.port == 0 and o.rest_api_port == 0:
        problems.append("both --port and --rest_api_port are 0: enable at least one API")
    if o.port != 0 and o.port == o.rest_api_port and o.port != EPHEMERAL_PORT:
        problems.append(f"--port and --rest_api_port are both {o.port}: use two ports")
    single = bool(o.model_name or o.model_base_path)
    if o.model_config_file and single:
        problems.append("use either --model_config_file or --model_name/--model_base_path")
    elif not o.model_config_file and not (o.model_name and o.model_base_path):
        problems.append(
            "no model: pass --model_name=NAME --model_base_path=DIR or --model_config_file=FILE"
        )
    if o.batching_parameters_file and not o.enable_batching:
        problems.append("--batching_parameters_file needs --enable_batching")
    positive = (
        "rest_api_num_threads",
        "grpc_max_threads",
        "max_request_bytes",
        "max_request_tensor_bytes",
        "max_inflight_request_bytes",
        "rest_api_max_connections",
        "rest_api_header_timeout_in_ms",
        "rest_api_body_timeout_in_ms",
        "grpc_max_concurrent_rpcs",
        "grpc_request_timeout_in_ms",
    )
    for name in positive:
        if getattr(o, name) <= 0:
            problems.append(f"--{name}={getattr(o, name)}: must be positive")
    for name in ("max_request_bytes", "max_request_tensor_bytes"):
        if getattr(o, name) > o.max_inflight_request_bytes > 0:
            problems.append(
                f"--max_inflight_request_bytes={o.max_inflight_request_bytes} is below "
                f"--{name}={getattr(o, name)}: a request at the limit could never be served"
            )
    if o.model_config_file_poll_wait_seconds < 0:
        problems.append("--model_config_file_poll_wait_seconds must be >= 0")
    if o.num_request_iterations_for_warmup < 0:
        problems.append("--num_request_iterations_for_warmup must be >= 0")
    if problems:
        raise ServerConfigError("; ".join(problems))
