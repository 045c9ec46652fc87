"""A user's model localised by submodule: each submodule's output on the backend against eager's, in call order,
and the first one that moves beyond the noise (pure NumPy; harness.backends.submodule_states supplies both sides)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, kw_only=True)
class SubmoduleError:
    """One submodule: its largest output error (None: no exported value of its outputs' shapes) and whether it
    moved beyond the noise."""

    name: str
    kind: str
    max_abs: float | None
    moved: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind, "max_abs": self.max_abs, "moved": self.moved}


def submodule_errors(eager: Mapping[str, Sequence[np.ndarray]], kinds: Mapping[str, str],
                     exported: Mapping[str, Sequence[np.ndarray]], *, atol: float, rtol: float
                     ) -> tuple[SubmoduleError, ...]:
    """Each eager submodule (call order) against the values its scope hands on in the export: every output is
    matched to the scope's value of its shape that is closest (an LSTM hands on output, h_n and c_n)."""
    found = []
    for name, outputs in eager.items():
        worst: float | None = None
        moved = False
        for output in outputs:
            reference = np.asarray(output, np.float64)
            candidates = [np.asarray(value, np.float64) for value in exported.get(name, ())
                          if np.shape(value) == reference.shape]
            if not candidates:
                continue
            best = min(candidates, key=lambda value: float(np.max(np.abs(value - reference), initial=0.0)))
            error = float(np.max(np.abs(best - reference), initial=0.0))
            worst = error if worst is None else max(worst, error)
            moved = moved or bool(np.any(np.abs(best - reference) > atol + rtol * np.abs(reference)))
        found.append(SubmoduleError(name=name, kind=kinds.get(name, ""), max_abs=worst, moved=moved))
    return tuple(found)


def first_moving(errors: Sequence[SubmoduleError]) -> SubmoduleError | None:
    return next((error for error in errors if error.moved), None)


def submodule_finding(errors: Sequence[SubmoduleError], noise: float) -> str:
    """One line: the first submodule that moves, and what the ones before it did."""
    first = first_moving(errors)
    mapped = [error for error in errors if error.max_abs is not None]
    if first is None:
        return (f"where: no submodule's output leaves the noise ({noise:.1g}; {len(mapped)} of {len(errors)} "
                "submodules mapped to the export)")
    before = mapped[:mapped.index(first)]
    text = f"where: submodule {first.name} ({first.kind}) moves first (max abs {first.max_abs:.2g})"
    if before:
        text += "; before it " + ", ".join(f"{error.name} {error.max_abs:.1g}" for error in before)
    return text
