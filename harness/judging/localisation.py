"""Where a drift starts in a recurrent stack: the first layer, direction and time step whose own error
leaves the noise, told apart from the error it carries in from earlier steps and lower layers.

Pure NumPy over per layer x direction x step states (harness.backends.layer_states supplies them):
the reference's, the backend's free-running ones, and the backend's teacher-forced ones (each step run
from the reference's previous state and the reference's input to that layer). Teacher forcing measures the
error a step makes on its own (`local`); what the free-running state adds on top of it came in through
the state and the input (`carried`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from harness.judging.submodules import SubmoduleError, first_moving
from harness.model.tolerance import Tolerance

DIRECTIONS = ("forward", "reverse")
NOISE_ULPS = 4  # a step's own rounding stays within a few ulps of the dtype; the floor under any tolerance
_EPS = {"float64": 2.0**-52, "float32": 2.0**-23, "float16": 2.0**-10, "bfloat16": 2.0**-7}

Key = tuple[int, str]  # (layer, 1-based; direction)


@dataclass(frozen=True, kw_only=True)
class StackStates:
    """Hidden states per (layer, direction), each [steps, batch, hidden] in sequence order."""

    reference: Mapping[Key, np.ndarray]
    free: Mapping[Key, np.ndarray]  # the backend run over the whole sequence, as it runs
    local: Mapping[Key, np.ndarray]  # the backend run one step at a time from the reference's states
    notes: tuple[str, ...] = ()  # findings of their own (a one-step execution not bitwise the full one)


@dataclass(frozen=True, kw_only=True)
class FirstDivergence:
    """Where the error first leaves the noise. `own`: a step's own error did (else only the accumulated)."""

    layer: int
    direction: str
    step: int  # 0-based, in sequence order
    own: bool = True

    def to_dict(self) -> dict[str, object]:
        return {"layer": self.layer, "direction": self.direction, "step": self.step}


@dataclass(frozen=True, kw_only=True)
class LayerErrors:
    """One layer and direction: per-step max abs errors in sequence order, and the free error's growth."""

    layer: int
    direction: str
    local: tuple[float, ...]
    carried: tuple[float, ...]
    free: tuple[float, ...]
    growth: float | None  # free error's factor per step (in processing order) after it left the noise
    own_error: bool = False  # some step's own (local) error leaves the noise

    def to_dict(self) -> dict[str, object]:
        return {"layer": self.layer, "direction": self.direction, "local": list(self.local),
                "carried": list(self.carried), "growth": self.growth}


@dataclass(frozen=True, kw_only=True)
class Localisation:
    """The analysis of one cell; `skipped` says why there is none (then `per_layer` is empty)."""

    first: FirstDivergence | None = None
    per_layer: tuple[LayerErrors, ...] = ()
    noise: float = 0.0  # the absolute floor a step's own error must pass to count
    finding: str = ""  # one line, "where: ..."
    notes: tuple[str, ...] = ()
    skipped: str = ""
    seconds: float = 0.0
    submodules: tuple[SubmoduleError, ...] = ()  # a user's model: each submodule in call order (judging.submodules)

    def to_dict(self) -> dict[str, object]:
        document: dict[str, object] = {
            "first": self.first.to_dict() if self.first else None,
            "per_layer": [layer.to_dict() for layer in self.per_layer], "noise": self.noise,
            "finding": self.finding, "notes": list(self.notes), "skipped": self.skipped,
            "seconds": round(self.seconds, 4)}
        if self.submodules:
            moving = first_moving(self.submodules)
            document["first_submodule"] = moving.name if moving else None
            document["submodules"] = [error.to_dict() for error in self.submodules]
        return document


def skipped(reason: str) -> Localisation:
    return Localisation(skipped=reason, finding=f"where: not localised ({reason})")


def noise_floor(tolerance: Tolerance | None, dtype: str) -> tuple[float, float]:
    """(atol, rtol) a step's own error must exceed: the cell's tolerance, never below a few ulps of the dtype
    (a float64 reference against any float32 step is never bitwise, even under a bitwise tolerance)."""
    floor = NOISE_ULPS * _EPS.get(dtype, _EPS["float32"])
    if tolerance is None or tolerance.bitwise:
        return floor, floor
    return max(tolerance.atol, floor), tolerance.rtol


def localise(states: StackStates, *, tolerance: Tolerance | None, dtype: str) -> Localisation:
    """Per-step local and carried errors of every layer and direction, the first divergence, and the words."""
    atol, rtol = noise_floor(tolerance, dtype)
    layers: list[LayerErrors] = []
    own_first: dict[Key, tuple[int, int]] = {}  # (processing index, step) of the first step its own error moves
    free_first: dict[Key, tuple[int, int]] = {}
    for key in sorted(states.reference, key=_order):
        reference, free, local = (np.asarray(side[key], dtype=np.float64)
                                  for side in (states.reference, states.free, states.local))
        bound = atol + rtol * np.abs(reference)
        local_error, free_error = np.abs(local - reference), np.abs(free - reference)
        own = _first_step(np.any(local_error > bound, axis=_inner(reference)), key[1])
        moved = _first_step(np.any(free_error > bound, axis=_inner(reference)), key[1])
        if own is not None:
            own_first[key] = own
        if moved is not None:
            free_first[key] = moved
        free_max = _per_step(free_error)
        layers.append(LayerErrors(
            layer=key[0], direction=key[1], local=_per_step(local_error), carried=_per_step(np.abs(free - local)),
            free=free_max, growth=growth(_processing(free_max, key[1]), start=moved[0] if moved else None),
            own_error=own is not None))
    first = _earliest(own_first, own=True) or _earliest(free_first, own=False)
    return Localisation(first=first, per_layer=tuple(layers), noise=atol,
                        finding=finding(first, layers, atol), notes=states.notes)


def growth(errors: Sequence[float], *, start: int | None) -> float | None:
    """exp of the least-squares slope of log(error) against the step, from the step the error left the noise
    on (processing order); None with fewer than two such steps."""
    if start is None:
        return None
    points = [(index, math.log(value)) for index, value in enumerate(errors) if index >= start and value > 0]
    if len(points) < 2:
        return None
    xs, ys = np.array([p[0] for p in points], float), np.array([p[1] for p in points], float)
    slope = float(np.polyfit(xs, ys, 1)[0])
    return float(math.exp(slope))


def finding(first: FirstDivergence | None, layers: Sequence[LayerErrors], noise: float) -> str:
    """One line: where the error starts, which layers only carry it, and how it grows."""
    if first is None:
        return f"where: no layer, direction or step leaves the noise ({noise:.1g})"
    by_key = {(layer.layer, layer.direction): layer for layer in layers}
    origin = by_key[(first.layer, first.direction)]
    if first.own:
        head = (f"where: layer {first.layer}, {first.direction}, first diverges at step {first.step} "
                f"(local {origin.local[first.step]:.2g} at step {first.step}")
    else:
        head = (f"where: layer {first.layer}, {first.direction}, first leaves the noise at step {first.step} "
                f"(no step's own error above {noise:.1g}: accumulated rounding")
    above = [layer for layer in layers if layer.layer > first.layer]
    carriers = sorted({layer.layer for layer in above} - {layer.layer for layer in above if layer.own_error})
    parts = [head]
    if carriers:
        worst = max(max(layer.local, default=0.0) for layer in above if layer.layer in carriers)
        names = "layer " + str(carriers[0]) if len(carriers) == 1 else "layers " + ", ".join(map(str, carriers))
        parts.append(f"{names} only {'carries' if len(carriers) == 1 else 'carry'} it: local <= {worst:.1g} "
                     "everywhere")
    others = [layer for layer in layers if (layer.layer, layer.direction) != (first.layer, first.direction)
              and layer.own_error]
    if others:
        other = max(others, key=lambda layer: max(layer.local))
        step = int(np.argmax(other.local))
        parts.append(f"layer {other.layer} {other.direction} errs on its own too: local {other.local[step]:.2g} "
                     f"at step {step}")
    text = "; ".join(parts) + ")"
    if origin.growth is not None:
        text += f"; error {'grows' if origin.growth >= 1 else 'shrinks'} x{origin.growth:.3g} per step"
    return text


def _order(key: Key) -> tuple[int, int]:
    return key[0], DIRECTIONS.index(key[1])


def _inner(array: np.ndarray) -> tuple[int, ...]:
    return tuple(range(1, array.ndim))


def _per_step(error: np.ndarray) -> tuple[float, ...]:
    return tuple(float(value) for value in error.reshape(error.shape[0], -1).max(axis=1))


def _processing(values: Sequence[float], direction: str) -> list[float]:
    return list(values) if direction == "forward" else list(reversed(values))


def _first_step(flags: np.ndarray, direction: str) -> tuple[int, int] | None:
    """(processing index, step in sequence order) of the first flagged step; a reverse direction starts at the
    last step."""
    steps = len(flags)
    order = range(steps) if direction == "forward" else range(steps - 1, -1, -1)
    return next(((index, step) for index, step in enumerate(order) if flags[step]), None)


def _earliest(first: dict[Key, tuple[int, int]], *, own: bool) -> FirstDivergence | None:
    """The lowest layer wins (a layer's error reaches every layer above it), then the earliest processed step,
    then forward before reverse."""
    if not first:
        return None
    layer, direction = min(first, key=lambda key: (key[0], first[key][0], DIRECTIONS.index(key[1])))
    return FirstDivergence(layer=layer, direction=direction, step=first[(layer, direction)][1], own=own)
