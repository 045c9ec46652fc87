"""Judging a run's cells in worker processes (`harness run -j N`), with the results one process would give.

The unit of work is one config with all its backends, so each seeded case is built once. Workers are
spawned, not forked (torch's OpenMP threads do not survive a fork), each keeps one Session, whose case
and golden caches serve every config it is given, and each dies with this process. There are never more workers
than CPUs, nor than the largest configs' memory estimates allow (model.budget.jobs_cap); the run's notes say when
-j was capped and when a worker died.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.backends.lifetime import die_with_parent
from harness.backends.onnx_runtime import SLOW_UNROLLED_STEPS
from harness.model.budget import estimate, jobs_cap
from harness.model.config import RnnConfig
from harness.session.settings import Settings
from harness.verdicts import Verdict

if TYPE_CHECKING:  # both import numpy, which a worker must load only after it has pinned its thread count
    from harness.judging.results import CellResult
    from harness.session.core import Session

Finished = Callable[[int, list["CellResult"]], None]  # config index, its cells in backend order
_worker_session: Session | None = None  # a worker process's own Session, built by _start_worker


def estimated_cost(config: RnnConfig, *, include_slow: bool = False) -> float:
    """Roughly the seconds one config takes over the default backends on this 2-core machine (fitted to a
    timed cold run), only to start the longest first: about 0.8 s of exports, plus a time per recurrent step
    (each backend loops over the steps), plus the dynamo exporter's unrolled plain RNN, whose cost grows with
    the square of the steps and which a default run leaves out past SLOW_UNROLLED_STEPS."""
    steps = config.seq_len * config.num_layers * config.num_directions
    per_step = 0.02 if config.cell in ("gru", "lstm") else 0.01
    size = config.batch * config.hidden_size * steps / 200_000
    unrolled_here = config.cell.startswith("rnn") and (steps <= SLOW_UNROLLED_STEPS or include_slow)
    unrolled = steps**2 / 2000 if unrolled_here else 0
    return 0.8 + per_step * steps + size + unrolled


COMPILE_SECONDS = 25.0  # a torch.compile cell's worker, cold (docs/backends.md): it outweighs any other config


def _compiled_here(configs: Sequence[RnnConfig], names: tuple[str, ...], include_slow: bool) -> set[str]:
    """The configs whose torch.compile cell runs in this run (the others are left out as slow)."""
    if "torch-compile" not in names:
        return set()
    from harness.backends import get_backend

    backend = get_backend("torch-compile")
    return {config.id for config in configs if include_slow or not backend.is_slow(config)}


@dataclass(frozen=True, kw_only=True)
class ParallelRun:
    """The cells of a -j run in serial order, and what its report must say about how they were judged."""

    cells: list[CellResult]
    notes: tuple[str, ...] = ()  # -j capped; workers that died, with the configs judged again


def judged_in_parallel(
    settings: Settings, configs: Sequence[RnnConfig], backend_names: Sequence[str], jobs: int,
    on_cell: Callable[[CellResult], None] | None = None,
) -> ParallelRun:
    """Every config x backend judged as Session(settings).judge(config, name) would, in at most `jobs` worker
    processes (fewer when the CPUs or the memory estimates cap them, which a note says); cells returned in serial
    order (configs outer, backends inner) whatever order they finish in. on_cell sees each cell as its config
    finishes. When a worker dies, the configs it had in flight are judged again one at a time and a note names
    them; a config whose worker dies again is an ERROR cell for each backend. (This process only waits: a backend
    that kills its process then costs only its config, never the run.)"""
    names = tuple(backend_names)
    cap = jobs_cap(jobs, [estimate(config).total for config in configs], cpus=usable_cpus(),
                   available=available_memory(), budget=settings.max_memory)
    notes = (cap.reason,) if cap.reason else ()
    if cap.jobs <= 1 or len(configs) <= 1:
        return ParallelRun(cells=_judged_here(settings, configs, names, on_cell), notes=notes)
    cells, deaths = _judged_in_pool(settings, configs, names, cap.jobs, on_cell)
    return ParallelRun(cells=cells, notes=notes + deaths)


def _judged_in_pool(settings: Settings, configs: Sequence[RnnConfig], names: tuple[str, ...], jobs: int,
                    on_cell: Callable[[CellResult], None] | None) -> tuple[list[CellResult], tuple[str, ...]]:
    from harness.judging.results import CellResult

    by_config: dict[int, list[CellResult]] = {}

    def finished(index: int, cells: list[CellResult]) -> None:
        by_config[index] = cells
        for cell in cells:
            if on_cell:
                on_cell(cell)

    compiled = _compiled_here(configs, names, settings.include_slow)
    todo = sorted(range(len(configs)), key=lambda index: -(
        estimated_cost(configs[index], include_slow=settings.include_slow)
        + (COMPILE_SECONDS if configs[index].id in compiled else 0.0)))
    notes: list[str] = []
    while todo:
        lost, todo = _drain(settings, configs, names, todo, jobs, finished)
        in_flight = list(lost)
        if len(lost) > 1:  # several were in flight when one worker died: judge them one at a time to tell which
            suspects, lost = list(lost), {}
            while suspects:
                died, suspects = _drain(settings, configs, names, suspects, 1, finished)
                lost.update(died)
        if in_flight:
            notes.append(_death_note([configs[index].id for index in in_flight],
                                     [configs[index].id for index in lost]))
        for index, error in lost.items():
            finished(index, [CellResult(config_id=configs[index].id, backend=name, verdict=Verdict.ERROR,
                                        reason=f"worker process died: {error}") for name in names])
    return [cell for index in range(len(configs)) for cell in by_config[index]], tuple(notes)


def _death_note(in_flight: list[str], died_alone: list[str]) -> str:
    """What the report says about one worker death: the configs in flight, and which of them died again alone."""
    if len(in_flight) == 1:
        return f"a -j worker process died while judging {in_flight[0]}, the only config in flight: its cells are ERROR"
    again = (f"{', '.join(died_alone)} killed its worker again (ERROR cells)" if died_alone
             else "none died again, so their cells are as a serial run's")
    return (f"a -j worker process died with {len(in_flight)} configs in flight ({', '.join(in_flight)}); "
            f"each was judged again alone: {again}")


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the platform has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def available_memory() -> int | None:
    """Bytes the machine can give without swapping (Linux's MemAvailable), None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _judged_here(settings: Settings, configs: Sequence[RnnConfig], names: tuple[str, ...],
                 on_cell: Callable[[CellResult], None] | None) -> list[CellResult]:
    """In this process, with one Session: a pool would cost more than it saves."""
    from harness.session.core import Session

    return Session(settings).judge_all(tuple(configs), names, on_cell)


def _drain(settings: Settings, configs: Sequence[RnnConfig], names: tuple[str, ...], order: list[int],
           window: int, finished: Finished) -> tuple[dict[int, str], list[int]]:
    """Judge configs[order] in that order in one new pool, at most `window` at a time, so that a dead worker takes
    only the configs in flight with it. Returns those (index -> why) and the ones not yet submitted then."""
    waiting = deque(order)
    flying: dict[Future[list[CellResult]], int] = {}
    lost: dict[int, str] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(window, mp_context=context, initializer=_start_worker,
                             initargs=(settings, os.getpid())) as pool:
        while (waiting or flying) and not lost:
            while waiting and len(flying) < window:
                index = waiting.popleft()
                flying[pool.submit(_judged_config, configs[index], names)] = index
            done, _ = wait(flying, return_when=FIRST_COMPLETED)
            if any(isinstance(future.exception(), BrokenProcessPool) for future in done):
                done, _ = wait(flying)  # a broken pool fails every future still in flight at once
            for future in done:
                index = flying.pop(future)
                error = future.exception()
                if isinstance(error, BrokenProcessPool):
                    lost[index] = str(error)
                else:
                    finished(index, future.result())  # any other exception is raised here, as serially
    return lost, list(waiting)


def _start_worker(settings: Settings, parent: int) -> None:
    """Pool initializer: die with the run's process; cap the OpenMP/MKL pools before torch loads here, so that
    N workers do not each start a thread per core; then build this worker's Session (judge() pins torch's
    threads itself)."""
    global _worker_session
    die_with_parent(parent)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(settings.threads)
    from harness.session.core import Session

    _worker_session = Session(settings)


def _judged_config(config: RnnConfig, names: tuple[str, ...]) -> list[CellResult]:
    assert _worker_session is not None, "runs only in a worker started by _start_worker"
    return [_worker_session.judge(config, name) for name in names]
