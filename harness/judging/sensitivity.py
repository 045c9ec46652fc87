"""Does a stored artifact compute the model, or only its golden? Probes on a second input.

A stored artifact is written by the same pull request as the golden it is checked against, so matching the
golden proves little: a model that outputs the golden's constants (plus 0 x a real recurrence, to pass the
static gate) matches it bitwise. Two behavioural checks see through that, on a second input
(harness.model.inputs.probe_inputs) whose outputs nobody recorded:
- `insensitive_outputs`: an RNN's outputs move when its whole input does; one that stays put ignores it
  (`replay`, which has no other export to compare with);
- `disagreeing_outputs`: the stored artifact and a fresh export of the same weights agree on the second
  input as they do on the golden's (`run`, when the bytes differ).
Pure: arrays in, names out.
"""

from __future__ import annotations

import numpy as np

Outputs = dict[str, np.ndarray]
INSENSITIVE_RELATIVE = 1e-6  # a move below this share of the output's scale is no move
AGREE_RTOL, AGREE_ATOL = 1e-2, 1e-3  # two exports of one model, any precision: far looser than any tolerance


def _float64(array: np.ndarray) -> np.ndarray:
    return np.asarray(array).astype(np.float64)


def insensitive_outputs(first: Outputs, probed: Outputs) -> tuple[str, ...]:
    """Names of the float outputs that did not move (beyond INSENSITIVE_RELATIVE of their scale) when every
    floating input value was drawn anew."""
    still = []
    for name, before in first.items():
        after = probed.get(name)
        if after is None or np.shape(after) != np.shape(before) or before.dtype.kind not in "fV":
            continue
        before64, after64 = _float64(before), _float64(after)
        if not (np.all(np.isfinite(before64)) and np.all(np.isfinite(after64))):
            continue
        scale = max(1.0, float(np.max(np.abs(before64), initial=0.0)))
        if float(np.max(np.abs(after64 - before64), initial=0.0)) <= INSENSITIVE_RELATIVE * scale:
            still.append(name)
    return tuple(still)


def disagreeing_outputs(stored: Outputs, fresh: Outputs) -> tuple[tuple[str, float], ...]:
    """(name, max abs difference) of each output where the stored artifact and a fresh export differ beyond
    AGREE_RTOL/AGREE_ATOL on the second input (a shape that differs counts, as inf)."""
    differing = []
    for name, expected in fresh.items():
        actual = stored.get(name)
        if actual is None or np.shape(actual) != np.shape(expected):
            differing.append((name, float("inf")))
            continue
        actual64, expected64 = _float64(actual), _float64(expected)
        if not np.allclose(actual64, expected64, rtol=AGREE_RTOL, atol=AGREE_ATOL, equal_nan=True):
            differing.append((name, float(np.nanmax(np.abs(actual64 - expected64)))))
    return tuple(differing)


def insensitive_reason(names: tuple[str, ...]) -> str:
    """The ERROR reason for a stored artifact whose outputs ignore its input."""
    return (f"the stored artifact does not compute this model: its output{'s' if len(names) > 1 else ''} "
            f"{', '.join(names)} stay put when its whole input is drawn anew (a model that outputs the golden's "
            "constants?)")


def disagreement_reason(differing: tuple[tuple[str, float], ...]) -> str:
    """The ERROR reason for a stored artifact that matches the golden but not a fresh export elsewhere."""
    worst = ", ".join(f"{name} by {distance:.3g}" for name, distance in differing[:3])
    return ("the stored artifact does not compute this model: on a second input it differs from a fresh export "
            f"of the same weights ({worst}): a forged or swapped artifact, or one that agrees on the golden's input "
            "only")
