"""Judging invariance relations: the two sides of a relation (harness.backends.relation_runs) compared under the
cell's tolerance, where they part named as a step and a batch element, and whether the relation held bitwise
against what the golden recorded. Pure: arrays in, outcomes out (no torch)."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from harness.judging.compare import compare_outputs
from harness.model.config import RnnConfig
from harness.model.tolerance import BITWISE, Tolerance


class RelationStatus(enum.Enum):
    BITWISE = "holds bitwise"
    HOLDS = "holds within tolerance"
    BROKEN = "broken"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True, kw_only=True)
class RelationOutcome:
    """One relation on one backend: the worst of its variants (2 and 3 chunks, say)."""

    relation: str
    status: RelationStatus
    variant: str = ""  # the variant the numbers are from (the worst)
    max_abs: float = 0.0
    max_ulps: int = 0
    where: str = ""  # where the sides part most: "output at step 2, batch element 1"
    reason: str = ""  # why the backend cannot take it (unsupported)
    recorded_bitwise: bool | None = None  # what the golden recorded for this backend; None: nothing recorded

    @property
    def broken(self) -> bool:
        return self.status is RelationStatus.BROKEN

    @property
    def bitwise(self) -> bool:
        return self.status is RelationStatus.BITWISE

    @property
    def bitwise_changed(self) -> bool:
        """Bitwise at record time and no longer, or the reverse (a finding, not a failure)."""
        judged = self.status in (RelationStatus.BITWISE, RelationStatus.HOLDS)
        return judged and self.recorded_bitwise is not None and self.recorded_bitwise != self.bitwise

    def describe(self) -> str:
        """One line: "chunked: holds bitwise", "batch: broken (each of 5 ... alone): 1e-04 at output, step 2 ..."."""
        if self.status is RelationStatus.UNSUPPORTED:
            return f"{self.relation}: unsupported ({self.reason})"
        text = f"{self.relation}: {self.status.value}"
        if self.status is not RelationStatus.BITWISE:
            text += f" ({self.variant}: max abs {self.max_abs:.2g}, {self.max_ulps} ulps, at {self.where})"
        if self.bitwise_changed:
            text += (f"; recorded {'bitwise' if self.recorded_bitwise else 'not bitwise'}, now "
                     f"{'bitwise' if self.bitwise else 'not bitwise'}")
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"relation": self.relation, "status": self.status.name.lower(), "variant": self.variant,
                "max_abs": self.max_abs, "max_ulps": self.max_ulps, "where": self.where, "reason": self.reason,
                "recorded_bitwise": self.recorded_bitwise}


def judge_relation(config: RnnConfig, relation: str, sides: Sequence[tuple[str, Mapping[str, np.ndarray],
                                                                          Mapping[str, np.ndarray]]],
                   tolerance: Tolerance, recorded: Mapping[str, Any] | None = None) -> RelationOutcome:
    """The worst of the relation's (variant, expected, actual) sides under the tolerance."""
    worst: RelationOutcome | None = None
    for variant, expected, actual in sides:
        outcome = _one_side(config, relation, variant, dict(expected), dict(actual), tolerance)
        if worst is None or _rank(outcome) > _rank(worst):
            worst = outcome
    assert worst is not None, "a relation has at least one side"
    return _with_record(worst, recorded)


def unsupported_relation(relation: str, reason: str) -> RelationOutcome:
    return RelationOutcome(relation=relation, status=RelationStatus.UNSUPPORTED, reason=reason)


def recorded_statuses(outcomes: Sequence[RelationOutcome]) -> dict[str, dict[str, Any]]:
    """What a golden keeps of each judged relation on a backend (its fingerprint's `relations`)."""
    return {outcome.relation: {"bitwise": outcome.bitwise, "max_abs": outcome.max_abs}
            for outcome in outcomes if outcome.status is not RelationStatus.UNSUPPORTED}


def broken_reason(backend: str, outcomes: Sequence[RelationOutcome]) -> str:
    """The INVARIANT reason of a cell whose relations broke: each broken relation, where, by how much."""
    broken = [outcome for outcome in outcomes if outcome.broken]
    return "; ".join(f"relation {outcome.relation} broken on {backend} ({outcome.variant}): max abs "
                     f"{outcome.max_abs:.2g} at {outcome.where}" for outcome in broken)


def _one_side(config: RnnConfig, relation: str, variant: str, expected: dict[str, np.ndarray],
              actual: dict[str, np.ndarray], tolerance: Tolerance) -> RelationOutcome:
    exact = compare_outputs(expected, actual, BITWISE)
    if all(comparison.passed for comparison in exact):
        return RelationOutcome(relation=relation, status=RelationStatus.BITWISE, variant=variant)
    judged = compare_outputs(expected, actual, tolerance)
    worst = max(judged, key=lambda comparison: (not comparison.passed, comparison.max_abs))
    status = RelationStatus.HOLDS if all(comparison.passed for comparison in judged) else RelationStatus.BROKEN
    return RelationOutcome(relation=relation, status=status, variant=variant, max_abs=worst.max_abs,
                           max_ulps=max(comparison.max_ulps for comparison in judged),
                           where=_where(config, worst.name, worst.worst_index))


def _where(config: RnnConfig, name: str, index: tuple[int, ...] | None) -> str:
    """A tensor index as a step and a batch element (the output) or a layer and a batch element (a state)."""
    if index is None:
        return name
    if name == "output" and len(index) == 3:
        step, element = (index[1], index[0]) if config.batch_first else (index[0], index[1])
        return f"{name}, step {step}, batch element {element}"
    if len(index) == 3:
        return f"{name}, layer*direction {index[0]}, batch element {index[1]}"
    return f"{name} {index}"


def _rank(outcome: RelationOutcome) -> tuple[int, float]:
    order = {RelationStatus.BITWISE: 0, RelationStatus.HOLDS: 1, RelationStatus.BROKEN: 2}
    return order.get(outcome.status, 0), outcome.max_abs


def _with_record(outcome: RelationOutcome, recorded: Mapping[str, Any] | None) -> RelationOutcome:
    if not recorded or not isinstance(recorded.get(outcome.relation), Mapping):
        return outcome
    bitwise = recorded[outcome.relation].get("bitwise")
    if not isinstance(bitwise, bool):
        return outcome
    return replace(outcome, recorded_bitwise=bitwise)
