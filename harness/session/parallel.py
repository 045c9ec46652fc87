"""Judging a run's cells in worker processes (`harness run -j N`), with the results one process would give.

The unit of work is one config with all its backends, so each seeded case is built once. Workers are
spawned, not forked (torch's OpenMP threads do not survive a fork), and each keeps one Session, whose case
and golden caches serve every config it is given.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

from harness.backends.onnx_runtime import SLOW_UNROLLED_STEPS
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


def judged_in_parallel(
    settings: Settings, configs: Sequence[RnnConfig], backend_names: Sequence[str], jobs: int,
    on_cell: Callable[[CellResult], None] | None = None,
) -> list[CellResult]:
    """Every config x backend judged as Session(settings).judge(config, name) would, in `jobs` worker processes;
    returned in serial order (configs outer, backends inner) whatever order they finish in. on_cell sees each cell
    as its config finishes. A config whose worker dies is an ERROR cell for each backend. (This process only
    waits: a backend that kills its process then costs only its config, never the run.)"""
    names = tuple(backend_names)
    if jobs <= 1 or len(configs) <= 1:
        return _judged_here(settings, configs, names, on_cell)
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
    while todo:
        lost, todo = _drain(settings, configs, names, todo, jobs, finished)
        if len(lost) > 1:  # several were in flight when one worker died: judge them one at a time to tell which
            suspects, lost = list(lost), {}
            while suspects:
                died, suspects = _drain(settings, configs, names, suspects, 1, finished)
                lost.update(died)
        for index, error in lost.items():
            finished(index, [CellResult(config_id=configs[index].id, backend=name, verdict=Verdict.ERROR,
                                        reason=f"worker process died: {error}") for name in names])
    return [cell for index in range(len(configs)) for cell in by_config[index]]


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
    with ProcessPoolExecutor(window, mp_context=context, initializer=_start_worker, initargs=(settings,)) as pool:
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


def _start_worker(settings: Settings) -> None:
    """Pool initializer: cap the OpenMP/MKL pools before torch (or numpy) loads here, so that N workers do not
    each start a thread per core; then build this worker's Session (judge() pins torch's threads itself)."""
    global _worker_session
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(settings.threads)
    from harness.session.core import Session

    _worker_session = Session(settings)


def _judged_config(config: RnnConfig, names: tuple[str, ...]) -> list[CellResult]:
    assert _worker_session is not None, "runs only in a worker started by _start_worker"
    return [_worker_session.judge(config, name) for name in names]
