"""Child processes of the local run: started with a log each, always stopped, ports checked.

Creates `Processes`, a context manager that starts long-running services (S3 endpoint, sync
agent, server) and one-shot commands (train, publish, synth) as ``python -m ...`` children in
their own process groups, writes each one's output to ``<logs>/<name>.log``, and on exit stops
every service (SIGTERM, then SIGKILL after a grace period) in reverse start order, so no stray
process or port outlives the run, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")

# The loopback S3 endpoint accepts any credentials; these keep a developer's real chain unused.
LOCAL_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "local-run",
    "AWS_SECRET_ACCESS_KEY": "local-run",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def local_aws_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child that talks only to loopback S3 endpoints."""
    env = {**os.environ, **LOCAL_AWS_ENV, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        env.pop(key, None)
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    return {**env, **extra}


class StepFailed(RuntimeError):
    """A step of the local run failed; `step` names it and `log` is the file to read."""

    def __init__(self, step: str, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.log = log


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now (for children that cannot report their own)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until(
    step: str, what: str, check: Callable[[], T | None], timeout_s: float, log: Path | None
) -> T:
    """Poll `check` until it returns something other than None/False, or fail the step."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result is not None and result is not False:
            return result
        time.sleep(0.2)
    raise StepFailed(step, f"timed out after {timeout_s:g} s waiting for {what}", log)


def tail(log: Path, lines: int = 15) -> str:
    """The last lines of a child's log, for an error message."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    ports: tuple[int, ...] = ()

    def check_alive(self, step: str) -> None:
        if self.process.poll() is not None:
            raise StepFailed(
                step,
                f"{self.name} exited with code {self.process.returncode}:\n{tail(self.log)}",
                self.log,
            )


@dataclass
class Processes:
    logs: Path
    services: list[Service] = field(default_factory=list)
    _ports: set[int] = field(default_factory=set)

    def __enter__(self) -> Processes:
        self.logs.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for service in reversed(self.services):
            stop(service.process)
        self.services.clear()

    def start(self, name: str, args: Sequence[str], ports: Sequence[int] = ()) -> Service:
        """Start ``python <args>`` as a long-running service logging to ``<logs>/<name>.log``."""
        log = self.logs / f"{name}.log"
        with log.open("wb") as handle:
            process = subprocess.Popen(
                [sys.executable, *args],
                cwd=REPO,
                env=local_aws_env(),
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stopped as a whole
            )
        service = Service(name, process, log, tuple(ports))
        self.services.append(service)
        self._ports.update(ports)
        return service

    def add_ports(self, ports: Sequence[int]) -> None:
        self._ports.update(ports)

    def run(
        self, step: str, name: str, args: Sequence[str], *, echo: bool = False, timeout_s: float
    ) -> Path:
        """Run ``python <args>`` to completion; its output goes to the log (and the terminal)."""
        log = self.logs / f"{name}.log"
        with log.open("wb") as handle:
            process = subprocess.Popen(
                [sys.executable, *args],
                cwd=REPO,
                env=local_aws_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                assert process.stdout is not None
                # Chunks, not lines: Keras redraws its progress bar with carriage returns.
                while chunk := process.stdout.read1(65536):
                    handle.write(chunk)
                    if echo:
                        sys.stdout.buffer.write(chunk)
                        sys.stdout.flush()
                process.wait(timeout=timeout_s)
            except BaseException:
                stop(process)
                raise
        if process.returncode != 0:
            raise StepFailed(
                step, f"{name} exited with code {process.returncode}:\n{tail(log)}", log
            )
        return log

    def leftover_ports(self) -> list[int]:
        return sorted(port for port in self._ports if port_open(port))


def stop(process: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    """SIGTERM the child's process group, SIGKILL it after `grace_s`; the child must have been
    started with ``start_new_session=True`` (its own group), or this would signal our own."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def start_local_s3(procs: Processes, step: str, bucket: str) -> str:
    """A loopback S3 endpoint (moto's server) with an empty `bucket`; returns its URL."""
    import boto3

    port = free_port()
    moto = procs.start("s3", ["-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], [port])

    def up() -> bool:
        moto.check_alive(step)
        return port_open(port)

    wait_until(step, "the S3 endpoint", up, 60, moto.log)
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=LOCAL_AWS_ENV["AWS_DEFAULT_REGION"],
        aws_access_key_id=LOCAL_AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    ).create_bucket(Bucket=bucket)
    return endpoint
