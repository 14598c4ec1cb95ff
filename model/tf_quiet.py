"""Keep TensorFlow's GPU-probe noise off CPU-only machines, and nothing else.

TensorFlow's C++ runtime logs ``E ... cuda_platform.cc] failed call to cuInit: ... (303)`` the
first time a process touches a device on a machine with no NVIDIA GPU, even with
``TF_CPP_MIN_LOG_LEVEL=2``: that level hides INFO and WARNING only, and this line is an ERROR.
Raising the level to 3 would also hide real errors (a SavedModel that fails to load), so instead:

- `configure` (before TensorFlow is imported) sets ``TF_CPP_MIN_LOG_LEVEL=2``, as before;
- `probe_devices` runs the first device probe (``tf.config.list_physical_devices("GPU")``, handed
  in by the caller) with the process's stderr captured, then writes back every captured line that
  is not the probe's noise. It captures only when no NVIDIA device node exists: on a GPU machine
  a failed cuInit is a real fault and prints as is. TensorFlow probes once per process, so later
  device use prints nothing of this kind, and every later error prints as it happens.

``--verbose`` on the commands, or ``TFSE_VERBOSE=1`` in the environment, turns both off and
brings TensorFlow's full log back (``TF_CPP_MIN_LOG_LEVEL=0``); child processes inherit it.

This module never imports TensorFlow: `configure` must run before TensorFlow is imported, so
callers import this first and hand the probe in. It lives with the model stage, the lowest floor
whose commands load TensorFlow; the development tools (local server, benchmark, local run) use it
from there.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

VERBOSE_ENV = "TFSE_VERBOSE"
# The device nodes the NVIDIA driver creates (/dev/nvidia0, /dev/nvidiactl, ...).
GPU_DEVICE_GLOB = "nvidia*"
# Lines the CUDA platform's failed initialisation prints on a machine without a GPU.
PROBE_NOISE = re.compile(r"failed call to cuInit|CUDA error: Failed call to cuInit")

_probed = False


def verbose_requested() -> bool:
    """True when ``TFSE_VERBOSE`` asks for TensorFlow's full log (1, true, yes)."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in {"1", "true", "yes"}


def configure(verbose: bool = False) -> None:
    """Set TensorFlow's log level; call before TensorFlow is imported.

    `verbose` (a command's ``--verbose``) also exports ``TFSE_VERBOSE=1`` so child processes
    (the local run's servers and agents) log in full too.
    """
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    if verbose_requested():
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def has_gpu_device(dev: Path = Path("/dev")) -> bool:
    """True when an NVIDIA device node exists (a GPU machine, or a container given one)."""
    return any(dev.glob(GPU_DEVICE_GLOB))


def probe_devices(probe: Callable[[], object], *, dev: Path = Path("/dev")) -> None:
    """Run TensorFlow's first device probe, dropping only its CPU-only noise from stderr.

    `probe` is typically ``lambda: tf.config.list_physical_devices("GPU")``. Runs once per process;
    later calls do nothing.
    """
    global _probed
    if _probed:
        return
    _probed = True
    if verbose_requested() or has_gpu_device(dev):
        probe()
        return
    with drop_stderr_lines(PROBE_NOISE):
        probe()


@contextmanager
def drop_stderr_lines(pattern: re.Pattern[str]) -> Iterator[None]:
    """Capture file descriptor 2 (C++ logs write there, not to `sys.stderr`) and replay it on exit
    without the lines `pattern` matches. A temporary file, not a pipe, so a chatty block cannot
    fill a buffer and block."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not pattern.search(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
