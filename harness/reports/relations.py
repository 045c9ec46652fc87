"""The invariance relations of a run, in words: per relation, which backends hold it bitwise, which within the
tolerance, which break it and which cannot take it; and each relation whose bitwise status changed since the
golden was recorded (a finding, not a failure)."""

from __future__ import annotations

from collections import defaultdict

from harness.judging.relations import RelationStatus
from harness.judging.results import RunReport
from harness.model.config import RELATIONS


def relation_lines(report: RunReport, *, verbose: bool = False) -> list[str]:
    """One line per relation the run judged (per backend and cell with -v), then the bitwise changes."""
    by_relation: dict[str, dict[RelationStatus, set[str]]] = defaultdict(lambda: defaultdict(set))
    configs: dict[str, set[str]] = defaultdict(set)
    changes = []
    for cell in report.cells:
        for outcome in cell.relations:
            by_relation[outcome.relation][outcome.status].add(cell.backend)
            configs[outcome.relation].add(cell.config_id)
            if outcome.bitwise_changed:
                changes.append(f"  {cell.config_id} x {cell.backend}: {outcome.describe()}")
    if not by_relation:
        return []
    lines = ["", "Invariance relations (each judged on every backend that can take it; bitwise status recorded "
                 "in the golden):"]
    for relation in (name for name in RELATIONS if name in by_relation):
        statuses = by_relation[relation]
        parts = [f"{status.value} on {', '.join(sorted(statuses[status]))}" for status in RelationStatus
                 if statuses.get(status)]
        lines.append(f"  {relation} ({len(configs[relation])} config(s)): " + "; ".join(parts))
    if verbose:
        lines += [f"  {cell.config_id} x {cell.backend}: {outcome.describe()}"
                  for cell in report.cells for outcome in cell.relations]
    if changes:
        lines += ["Relations whose bitwise status changed since the goldens were recorded (findings, not failures):",
                  *changes]
    return lines
