"""Invariance relations in a run and a record: each relation of the case computed by the backend
(harness.backends.relation_runs) and judged (harness.judging.relations) under the cell's tolerance."""

from __future__ import annotations

import dataclasses
from typing import Any

from harness.backends.base import Backend
from harness.backends.capture import captured_upstream_messages, first_line
from harness.judging.relations import (
    RelationOutcome,
    broken_reason,
    judge_relation,
    recorded_statuses,
    unsupported_relation,
)
from harness.judging.results import CellResult
from harness.model.case import Case
from harness.model.tolerance import BITWISE, Tolerance
from harness.verdicts import Verdict


def judged_relations(case: Case, backend: Backend, tolerance: Tolerance,
                     recorded: dict[str, Any] | None = None) -> tuple[RelationOutcome, ...]:
    """Every relation of the case on the backend; one it cannot take is unsupported with the backend's reason."""
    from harness.backends.relation_runs import Models, relation_sides

    models = Models(backend)
    outcomes = []
    for relation in case.config.relations:
        if getattr(backend, "runs_case_inputs_only", False):
            outcomes.append(unsupported_relation(relation, "it runs the case's own inputs only, in a worker"))
            continue
        try:
            with captured_upstream_messages():
                sides = relation_sides(case, models, relation)
        except Exception as error:  # a backend that cannot take a side: a fact about the backend
            outcomes.append(unsupported_relation(relation, first_line(error, limit=160)))
            continue
        outcomes.append(judge_relation(case.config, relation, [(side.variant, side.expected, side.actual)
                                                                for side in sides], tolerance, recorded))
    return tuple(outcomes)


def with_relations(cell: CellResult, case: Case, backend: Backend, tolerance: Tolerance,
                   recorded: dict[str, Any] | None) -> CellResult:
    """The judged cell with its relations; a cell that passed and broke a relation is INVARIANT."""
    outcomes = judged_relations(case, backend, tolerance, recorded)
    cell = dataclasses.replace(cell, relations=outcomes)
    if any(outcome.broken for outcome in outcomes) and not cell.verdict.failing:
        cell = dataclasses.replace(cell, verdict=Verdict.INVARIANT, reason=broken_reason(backend.name, outcomes))
    return cell


def recorded_relations(case: Case, backend: Backend) -> dict[str, dict[str, Any]]:
    """What a golden records of the relations on a backend: whether each held bitwise, and by how much not."""
    return recorded_statuses(judged_relations(case, backend, BITWISE))
