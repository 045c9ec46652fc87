"""The Session of `harness run -j N`: the same run, its cells judged in worker processes (session.parallel).

Kept apart from session.core so that the core never imports the worker pool, and the workers (which import
session.parallel, then build a plain Session) never import this."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from harness.judging.results import CellResult, RunReport
from harness.model.config import RnnConfig
from harness.session.core import Session
from harness.session.parallel import judged_in_parallel
from harness.session.settings import Settings


class ParallelSession(Session):
    """A Session whose run spreads its configs over settings.jobs worker processes (fewer when the CPUs or the
    memory estimates cap them); its report's warnings say when -j was capped and when a worker died."""

    parallel_notes: tuple[str, ...] = ()  # this run's: -j capped, workers that died

    def run(self, on_cell: Callable[[CellResult], None] | None = None) -> RunReport:
        self.parallel_notes = ()
        report = super().run(on_cell)
        return dataclasses.replace(report, warnings=report.warnings + self.parallel_notes)

    def judge_all(self, configs: tuple[RnnConfig, ...], names: tuple[str, ...],
                  on_cell: Callable[[CellResult], None] | None = None) -> list[CellResult]:
        judged = judged_in_parallel(self.settings, configs, names, self.settings.jobs, on_cell)
        self.parallel_notes += judged.notes
        if not self.settings.live_reference:
            for config in configs:  # loaded here too: the environment comparison reads this process's goldens
                self.golden(config)
        return judged.cells


def session_for(settings: Settings) -> Session:
    """A ParallelSession when more than one job is asked for, else a plain Session."""
    return ParallelSession(settings) if settings.jobs > 1 else Session(settings)
