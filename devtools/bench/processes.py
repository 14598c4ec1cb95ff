"""Servers under test, each in its own process: the local TF-Serving stand-in and the naive one.

Creates `start_local_server` and `start_naive_server`, context managers that start the server
as ``python -m ...`` on free loopback ports (reported through ``--port_file``), wait until the
model is AVAILABLE, yield a `RunningServer`, and stop it (SIGTERM, then SIGKILL) however the
block ends. Output goes to log files in the work directory, so a chatty server never blocks on a
full pipe and a failure can be diagnosed afterwards.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from contracts.tfconfig import BatchingParameters, render_batching_parameters
from devtools.processes import REPO, local_aws_env, stop, tail
from serving.client import ClientError, RestClient

__all__ = ["RunningServer", "ServerStartError", "start_local_server", "start_naive_server"]


class ServerStartError(RuntimeError):
    """A server under test exited or never became ready; the message quotes its log."""


@dataclass(frozen=True)
class RunningServer:
    name: str
    rest_url: str
    grpc_target: str | None
    pid: int
    log: Path


def start_local_server(
    base_path: Path,
    model: str,
    workdir: Path,
    *,
    batching: BatchingParameters | None,
    poll_seconds: int = 1,
    ready_timeout_s: float = 180.0,
    extra_flags: Sequence[str] = (),
) -> contextlib.AbstractContextManager[RunningServer]:
    """``python -m devtools.server`` over `base_path` with TF Serving's own flags."""
    flags = [
        "--port=-1",
        "--rest_api_port=-1",
        f"--model_name={model}",
        f"--model_base_path={base_path}",
        f"--file_system_poll_wait_seconds={poll_seconds}",
    ]
    if batching is not None:
        batching_file = workdir / "batching_parameters.txt"
        batching_file.write_text(render_batching_parameters(batching))
        flags += ["--enable_batching", f"--batching_parameters_file={batching_file}"]
    return _serve(
        "local",
        [sys.executable, "-m", "devtools.server", *flags, *extra_flags],
        model,
        workdir,
        ready_timeout_s,
    )


def start_naive_server(
    base_path: Path | None,
    model: str,
    workdir: Path,
    *,
    ready_timeout_s: float = 180.0,
) -> contextlib.AbstractContextManager[RunningServer]:
    """``python -m devtools.bench.naive_server`` (model.predict per request) over `base_path`.

    With `base_path` None it runs with ``--null``: no model, fixed answers.
    """
    command = [sys.executable, "-m", "devtools.bench.naive_server", f"--model_name={model}"]
    command.append("--null" if base_path is None else f"--model_base_path={base_path}")
    name = "null" if base_path is None else "naive"
    return _serve(name, command, model, workdir, ready_timeout_s)


@contextlib.contextmanager
def _serve(
    name: str, command: list[str], model: str, workdir: Path, ready_timeout_s: float
) -> Iterator[RunningServer]:
    port_file = workdir / f"{name}.ports.json"
    port_file.unlink(missing_ok=True)
    log = workdir / f"{name}.log"
    with log.open("wb") as log_handle:
        process = subprocess.Popen(
            [*command, f"--port_file={port_file}"],
            cwd=REPO,
            env=local_aws_env(),
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so stop() reaches its children
        )
    try:
        ports = _wait_for_ports(process, port_file, log, ready_timeout_s)
        server = RunningServer(
            name=name,
            rest_url=f"http://127.0.0.1:{ports['rest']}",
            grpc_target=f"127.0.0.1:{ports['grpc']}" if ports.get("grpc") else None,
            pid=process.pid,
            log=log,
        )
        _wait_available(process, server, model, ready_timeout_s)
        yield server
    finally:
        stop(process)


def _wait_for_ports(
    process: subprocess.Popen[bytes], port_file: Path, log: Path, timeout_s: float
) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerStartError(f"server exited with {process.returncode}:\n{tail(log, 30)}")
        if port_file.exists():
            try:
                return json.loads(port_file.read_text())
            except ValueError:
                pass  # being written; read again
        time.sleep(0.1)
    raise ServerStartError(f"no port file after {timeout_s:g}s:\n{tail(log, 30)}")


def _wait_available(
    process: subprocess.Popen[bytes], server: RunningServer, model: str, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    with RestClient(server.rest_url, timeout=5) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ServerStartError(f"server exited:\n{tail(server.log, 30)}")
            try:
                if any(s.state == "AVAILABLE" for s in client.status(model)):
                    return
            except ClientError:
                pass  # not loaded yet
            time.sleep(0.2)
    raise ServerStartError(f"{model} not AVAILABLE after {timeout_s:g}s:\n{tail(server.log, 30)}")
