"""Worker processes that never outlive their parent: a run killed with SIGKILL (by a user, the OOM killer or a
cancelled CI job) leaves no worker computing on, holding memory or writing files.

On Linux the kernel kills the worker when its parent dies (prctl PR_SET_PDEATHSIG); elsewhere, or where prctl
is refused, a daemon thread polls the parent's pid. Used by every harness worker: `-j` pool workers, the
torch.compile worker and the fresh-process probe worker.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
POLL_SECONDS = 0.5  # the fallback's delay at most: "gone within a few seconds"


def die_with_parent(parent: int) -> None:
    """Call first thing in a worker whose parent has pid `parent`: from then on the worker is killed (with its
    process group, when it leads one) once that parent is gone, and it dies at once if the parent already is.

    PR_SET_PDEATHSIG fires when the thread that started the worker ends: every harness worker is started by
    a thread that lives as long as the run (the main thread, or the one judging the cell)."""
    if not _kernel_kills_us():
        threading.Thread(target=_watch, args=(parent,), name="harness-parent-watch", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the request took effect: nobody will signal us
        _die()


def _kernel_kills_us() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies; False where that cannot be asked."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_SECONDS)
    _die()


def _die() -> None:
    kill = getattr(signal, "SIGKILL", None)
    if kill is None:  # no SIGKILL (Windows): end this process without running any cleanup that could block
        os._exit(1)
    if os.getpgrp() == os.getpid():  # it leads a group of its own (the compile worker): take the group along
        os.killpg(os.getpid(), kill)
    os.kill(os.getpid(), kill)
