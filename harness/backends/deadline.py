"""The per-cell time budget: one deadline for the cell being judged, honoured by every backend.

A stored artifact, a suite's `train_steps` or a user's model can run for ever; the budget turns that into
an ERROR naming the budget, and the run goes on. Within `cell_budget(seconds)`:
- in the main thread, SIGALRM raises CellBudgetExceeded at the deadline: Python-level loops (training steps,
  the ONNX reference evaluator, a TorchScript loop between ops) stop there;
- onnxruntime runs are ended by ORT's own terminate flag (`terminate_at_deadline`), since a signal handler
  runs only once ORT returns to Python;
- a worker process (torch.compile, a bounded artifact replay) is given at most the time left (`remaining`).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from harness.errors import ConfigError

BUDGET_ENV = "HARNESS_CELL_BUDGET_S"
DEFAULT_CELL_BUDGET_S = 600.0

_open: list[tuple[float, float]] = []  # (time.monotonic() deadline, budget seconds) of open budgets, innermost last


class CellBudgetExceeded(BaseException):
    """The cell ran past its time budget (an ERROR naming the budget, never a crash of the run).

    A BaseException, like KeyboardInterrupt: the `except Exception` that turns a backend's failure into a
    result (or a model that cannot run in float64 into no reference) must not swallow it and run on unbounded.
    Only the session, which owns the budget, catches it."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"exceeded the per-cell time budget of {seconds:g} s (--cell-budget, {BUDGET_ENV}): "
                         "stopped")
        self.seconds = seconds


def parse_budget(text: str | float | None, *, where: str = "--cell-budget") -> float:
    """A positive, finite number of seconds; None or "" gives $HARNESS_CELL_BUDGET_S, else 600 s."""
    if text is None or text == "":
        return seconds_from_env(BUDGET_ENV, DEFAULT_CELL_BUDGET_S)
    return positive_seconds(text, where=where)


def seconds_from_env(variable: str, default: float) -> float:
    """The positive number of seconds $variable holds, or default when it is unset or empty."""
    text = os.environ.get(variable, "")
    return positive_seconds(text, where=variable) if text else default


def positive_seconds(text: str | float, *, where: str) -> float:
    """text as a positive, finite number of seconds; ConfigError naming `where` otherwise."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise ConfigError(f"{where} must be a positive number of seconds, got {text!r}")
    return seconds


def remaining() -> float | None:
    """Seconds left to the innermost open budget (never below 0), or None outside any budget."""
    if not _open:
        return None
    return max(0.0, _open[-1][0] - time.monotonic())


@contextlib.contextmanager
def cell_budget(seconds: float) -> Iterator[None]:
    """Run the block under a budget of `seconds` (an enclosing, shorter budget still wins). An alarm someone
    else set (a test's hang guard, an enclosing budget) keeps its time and its handler: the earlier of the two
    fires first, each raising its own exception, and the other alarm is set again on the way out."""
    now = time.monotonic()
    deadline = now + seconds
    if _open and _open[-1][0] < deadline:
        deadline, seconds = _open[-1]
    alarm = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    if alarm:
        previous = signal.getsignal(signal.SIGALRM)
        pending = signal.getitimer(signal.ITIMER_REAL)[0]
        outer = now + pending if pending > 0 else None

        def on_alarm(signum: int, frame: Any) -> None:
            if outer is not None and time.monotonic() >= outer - 1e-3 and callable(previous):
                previous(signum, frame)  # the outer alarm's time came first: its handler decides
            raise CellBudgetExceeded(seconds)

        signal.signal(signal.SIGALRM, on_alarm)
        first = deadline if outer is None else min(deadline, outer)
        signal.setitimer(signal.ITIMER_REAL, max(first - time.monotonic(), 1e-3))
    _open.append((deadline, seconds))
    try:
        yield
    finally:
        _open.pop()
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            if outer is not None:  # the alarm that was set before this budget, with the time it had left
                signal.setitimer(signal.ITIMER_REAL, max(outer - time.monotonic(), 1e-3))


class _Watchdog:
    """One daemon thread that sets RunOptions.terminate on the runs past their deadlines: a run registers and
    unregisters in microseconds, where a threading.Timer per run started a thread each time."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._runs: dict[int, tuple[float, Any]] = {}  # id(run options) -> (monotonic deadline, run options)
        self._thread: threading.Thread | None = None

    def watch(self, run_options: Any, deadline: float) -> None:
        with self._condition:
            self._runs[id(run_options)] = (deadline, run_options)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="harness-ort-deadline", daemon=True)
                self._thread.start()
            self._condition.notify()

    def forget(self, run_options: Any) -> None:
        with self._condition:
            self._runs.pop(id(run_options), None)

    def _loop(self) -> None:
        with self._condition:
            while True:
                now = time.monotonic()
                for key, (deadline, run_options) in list(self._runs.items()):
                    if deadline <= now:
                        run_options.terminate = True
                        del self._runs[key]
                upcoming = min((deadline for deadline, _ in self._runs.values()), default=None)
                self._condition.wait(None if upcoming is None else max(upcoming - now, 1e-3))


_WATCHDOG = _Watchdog()


@contextlib.contextmanager
def terminate_at_deadline(run_options: Any) -> Iterator[None]:
    """Set onnxruntime RunOptions.terminate when the open budget runs out (a no-op outside any budget);
    CellBudgetExceeded when it did, instead of ORT's own 'terminate flag' error."""
    left = remaining()
    if left is None:
        yield
        return
    _WATCHDOG.watch(run_options, time.monotonic() + left)
    try:
        yield
    except Exception:
        if run_options.terminate:
            raise CellBudgetExceeded(_open[-1][1] if _open else left) from None
        raise
    finally:
        _WATCHDOG.forget(run_options)
