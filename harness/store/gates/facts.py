"""What a gate learned about an artifact's bytes: the value every reader of a stored artifact gets back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.errors import GoldenError


@dataclass(frozen=True, kw_only=True)
class ArtifactFacts:
    """An artifact the gate let through: its kind, the operations it contains, the recurrence found in it
    ("" when none), its ONNX structural fingerprint (None for other kinds), and whether the static checks
    were complete (`bounded`); when they were not, `unbounded_reason` says why and the caller runs it
    under a time and memory bound."""

    kind: str
    op_set: frozenset[str]
    recurrence: str
    structure: dict[str, Any] | None = None
    bounded: bool = True
    unbounded_reason: str = ""


# Static bounds every gate checks. Generous for an RNN export (the default suite's largest value is under
# 1 MiB), far below what would hurt the machine: a value a runtime would allocate, the trips of an ONNX
# Loop, and what an archive may unpack to.
MAX_VALUE_BYTES = 256 * 1024**2
MAX_LOOP_TRIPS = 1_000_000
MAX_ARCHIVE_MEMBERS = 10_000
MAX_UNPACKED_BYTES = 512 * 1024**2


def refused(where: str, what: str) -> GoldenError:
    """The one-line error of a refused artifact: where it is read from, what is refused and why."""
    return GoldenError(f"{where}: {what}")


NO_RECURRENCE = "contains no recurrence: the stored artifact is not an RNN export"
