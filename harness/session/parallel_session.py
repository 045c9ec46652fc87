"""The Session of `harness run -j N`: the same run, its cells judged in worker processes (session.parallel).

Kept apart from session.core so that the core never imports the worker pool, and the workers (which import
session.parallel, then build a plain Session) never import this."""

from __future__ import annotations

from collections.abc import Callable

from harness.judging.results import CellResult
from harness.model.config import RnnConfig
from harness.session.core import Session
from harness.session.parallel import judged_in_parallel
from harness.session.settings import Settings


class ParallelSession(Session):
    """A Session whose run spreads its configs over settings.jobs worker processes."""

    def judge_all(self, configs: tuple[RnnConfig, ...], names: tuple[str, ...],
                  on_cell: Callable[[CellResult], None] | None = None) -> list[CellResult]:
        cells = judged_in_parallel(self.settings, configs, names, self.settings.jobs, on_cell)
        if not self.settings.live_reference:
            for config in configs:  # loaded here too: the environment comparison reads this process's goldens
                self.golden(config)
        return cells


def session_for(settings: Settings) -> Session:
    """A ParallelSession when more than one job is asked for, else a plain Session."""
    return ParallelSession(settings) if settings.jobs > 1 else Session(settings)
