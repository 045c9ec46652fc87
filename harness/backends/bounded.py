"""One bounded-worker mechanism: `python -m <module> DIR` in a process of its own, killed with its whole
process group past a time budget, its address space bounded, and dying with its parent.

Used by torch.compile (compiles can hang) and by the replay of a stored artifact that no static check can
bound (an ONNX Loop whose trip count is data, say). The worker reads its request from DIR and writes its
result there; the parent reads the result only once the worker has exited with 0. Every worker calls
`lifetime.die_with_parent(worker_parent())` first thing, so none outlives a killed run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

LOG = "worker.log"
MEMORY_BOUND_ENV = "HARNESS_WORKER_MEMORY_BOUND"  # bytes the worker may map beyond what its imports took
PARENT_ENV = "HARNESS_PARENT_PID"  # the worker dies with this process (harness.backends.lifetime)
# What a worker says when its address space ran out: Python's MemoryError, C++'s bad_alloc (torch, ORT).
_OUT_OF_MEMORY = ("MemoryError", "bad_alloc", "Failed to allocate", "out of memory", "DefaultCPUAllocator",
                  "AllocateRaw")


class MemoryBoundExceeded(RuntimeError):
    """The worker ran out of the address space it was allowed; the message names the bound."""


@dataclass(frozen=True, kw_only=True)
class Bounds:
    """What one worker may take: wall-clock seconds, and bytes of address space beyond its imports (None: no
    memory bound)."""

    seconds: float
    memory_bytes: int | None = None


def run_bounded(python_args: tuple[str, ...], workdir: Path, bounds: Bounds, *, task: str, worker: str,
                on_start: Callable[[int], None] | None = None) -> None:
    """Run `python <python_args> workdir` (e.g. ("-m", module)) within bounds. TimeoutError past the time
    budget and MemoryBoundExceeded past the memory bound, naming it (the whole process group is killed);
    RuntimeError with the worker's last line when it fails otherwise."""
    env = {**os.environ, "PYTHONPATH": _with_this_harness(os.environ.get("PYTHONPATH", "")),
           PARENT_ENV: str(os.getpid())}
    if bounds.memory_bytes is not None:
        env[MEMORY_BOUND_ENV] = str(bounds.memory_bytes)
    with open(workdir / LOG, "wb") as log:
        process = subprocess.Popen([sys.executable, *python_args, str(workdir)], stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    if on_start:
        on_start(process.pid)
    try:
        code = process.wait(timeout=bounds.seconds)
    except BaseException as error:  # the budget, Ctrl-C or the cell's own budget: nothing may outlive us
        kill_group(process)
        if isinstance(error, subprocess.TimeoutExpired):
            raise TimeoutError(f"{task} exceeded its budget of {bounds.seconds:g} s (killed)") from None
        raise
    if code != 0:
        last = last_line(workdir / LOG)
        if bounds.memory_bytes is not None and any(sign in last for sign in _OUT_OF_MEMORY):
            raise MemoryBoundExceeded(f"{task} exceeded its memory bound of {bounds.memory_bytes / 1024**2:.0f} MiB "
                                      f"({worker} exited with {code}: {last})")
        raise RuntimeError(f"{worker} exited with {code}: {last}")


def worker_parent() -> int:
    """In a worker: the pid of the process that started it (HARNESS_PARENT_PID), for
    harness.backends.lifetime.die_with_parent; a parent that died before the worker asked is then noticed."""
    text = os.environ.get(PARENT_ENV, "")
    return int(text) if text.isdigit() else os.getppid()


def bound_own_memory() -> None:
    """In the worker, after its imports: cap its address space at what it maps now plus the bound the
    parent set (HARNESS_WORKER_MEMORY_BOUND); an allocation past it fails instead of swapping the machine."""
    text = os.environ.get(MEMORY_BOUND_ENV, "")
    if not text:
        return
    import resource

    with open("/proc/self/statm", encoding="ascii") as statm:
        mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = mapped + int(text)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker's process group, then reap the worker. The worker is not yet reaped here, so its
    pid (the group's id) cannot have been reused."""
    with contextlib.suppress(ProcessLookupError):  # the group is already gone
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def last_line(log: Path) -> str:
    """The worker log's last non-empty line (300 characters at most)."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no output)"
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else "(no output)"


def _with_this_harness(path: str) -> str:
    """PYTHONPATH with this copy of harness first: the worker must run the same code as its parent."""
    root = str(Path(__file__).resolve().parents[2])
    return os.pathsep.join([root, path]) if path else root
