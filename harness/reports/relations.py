"""The invariance relations of a run, in words: one line counting how they held; with --table or -v, per relation
which backends hold it bitwise, which within the tolerance, which break it and which cannot take it (and with
-v each cell's); and each relation whose bitwise status changed since the golden was recorded (a finding, not a
failure). Broken relations are INVARIANT cells: the failures say those."""

from __future__ import annotations

import textwrap
from collections import Counter, defaultdict

from harness.judging.relations import RelationOutcome, RelationStatus
from harness.judging.results import CellResult, RunReport
from harness.model.config import RELATIONS
from harness.reports.text import counted


def relation_lines(report: RunReport, *, verbose: bool = False, table: bool = False, width: int = 120) -> list[str]:
    outcomes = [(cell, outcome) for cell in report.cells for outcome in cell.relations]
    if not outcomes:
        return []
    statuses = Counter(outcome.status for _, outcome in outcomes)
    configs = {cell.config_id for cell, _ in outcomes}
    counts = ", ".join(f"{statuses[status]} {_SHORT[status]}" for status in RelationStatus if statuses[status])
    hint = "" if verbose or table else " (--table: by backend)"
    lines = ["", f"Invariance relations ({counted(len(configs), 'config')} x backends): {counts}{hint}"]
    if verbose or table:
        lines += _per_relation(outcomes, width)
    if verbose:
        lines += [f"  {cell.config_id} x {cell.backend}: {outcome.describe()}" for cell, outcome in outcomes]
    changes = [f"  {cell.config_id} x {cell.backend}: {outcome.describe()}" for cell, outcome in outcomes
               if outcome.bitwise_changed]
    if changes:
        lines += ["Relations whose bitwise status changed since the goldens were recorded (findings, not failures):",
                  *changes]
    return lines


_SHORT = {RelationStatus.BITWISE: "hold bitwise", RelationStatus.HOLDS: "within tolerance",
          RelationStatus.BROKEN: "BROKEN", RelationStatus.UNSUPPORTED: "unsupported"}


def _per_relation(outcomes: list[tuple[CellResult, RelationOutcome]], width: int) -> list[str]:
    """Per relation, the backends of each status (a backend whose configs differ is under each of them)."""
    by_relation: dict[str, dict[RelationStatus, set[str]]] = defaultdict(lambda: defaultdict(set))
    for cell, outcome in outcomes:
        by_relation[outcome.relation][outcome.status].add(cell.backend)
    lines = []
    for relation in (name for name in RELATIONS if name in by_relation):
        statuses = by_relation[relation]
        parts = [f"{status.value} on {', '.join(sorted(statuses[status]))}" for status in RelationStatus
                 if statuses.get(status)]
        lines += textwrap.wrap(f"{relation}: " + "; ".join(parts), width=width, initial_indent="  ",
                               subsequent_indent="      ")
    return lines
