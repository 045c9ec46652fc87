"""Layout diagnosis: on SHAPE drift, test the usual explanations and name the one that fits, with proof.

Pure: arrays and axis names in, one sentence out. Each explanation is checked against the values,
not guessed from the shapes: "bitwise" when the rearranged golden equals the result exactly, else
"within tolerance" when it is close, else the explanation is rejected.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Array = np.ndarray


def diagnose_layout(name: str, expected: Array, actual: Array, axes: tuple[str, ...] = ()) -> str | None:
    """The first explanation that maps the golden onto the result, or None if none fits."""
    if expected.dtype != actual.dtype and expected.shape == actual.shape:
        return _dtype_change(expected, actual)
    for explain in _EXPLANATIONS:
        sentence = explain(name, expected, actual, axes)
        if sentence:
            return sentence
    return None


def _dtype_change(expected: Array, actual: Array) -> str:
    proof = _agreement(expected.astype(np.float64), actual.astype(np.float64))
    values = f"values agree {proof} after casting" if proof else "values differ too"
    return f"dtype changed {expected.dtype} -> {actual.dtype} (same shape); {values}"


def _seq_batch_swap(name: str, expected: Array, actual: Array, axes: tuple[str, ...]) -> str | None:
    if expected.ndim != 3 or actual.shape != (expected.shape[1], expected.shape[0], expected.shape[2]):
        return None
    proof = _agreement(expected.transpose(1, 0, 2), actual)
    if not proof:
        return None
    labels = f" golden axes are ({', '.join(axes)}) = {expected.shape};" if axes else ""
    return (f"{name} == golden.transpose(1, 0, 2) {proof}: the batch and sequence axes are swapped, "
            f"as when batch_first changes;{labels} the result has them the other way round")


def _leading_axis(name: str, expected: Array, actual: Array, axes: tuple[str, ...]) -> str | None:
    for position in range(max(expected.ndim, actual.ndim)):
        lost = actual.ndim == expected.ndim - 1 and expected.shape[position:position + 1] == (1,)
        if lost and _agreement(np.squeeze(expected, axis=position), actual):
            label = f" ({axes[position]})" if position < len(axes) else ""
            return (f"{name} lost axis {position}{label} of size 1: as when unbatched input (no batch axis) "
                    f"replaces a batch of one, or the reverse")
        gained = expected.ndim == actual.ndim - 1 and actual.shape[position:position + 1] == (1,)
        if gained and _agreement(expected, np.squeeze(actual, axis=position)):
            return (f"{name} gained an axis of size 1 at position {position}: as when a batch of one "
                    f"replaces unbatched input, or the reverse")
    return None


def _directions_stacked(name: str, expected: Array, actual: Array, axes: tuple[str, ...]) -> str | None:
    """Two directions concatenated on the last axis (PyTorch) vs stacked on a new axis."""
    same_size = actual.size == expected.size
    stacked = expected.ndim + 1 == actual.ndim and actual.shape[-2] == 2 and same_size
    if stacked and _agreement(expected, actual.reshape(expected.shape)):
        return (f"{name}: the two directions are stacked on a new axis {actual.shape} where the golden "
                f"concatenates them on the last axis {expected.shape}")
    concatenated = actual.ndim + 1 == expected.ndim and expected.shape[-2] == 2 and same_size
    if concatenated and _agreement(expected.reshape(actual.shape), actual):
        return (f"{name}: the two directions are concatenated on the last axis {actual.shape} where the "
                    f"golden stacks them on a new axis {expected.shape}")
    return None


def _last_dimension(name: str, expected: Array, actual: Array, axes: tuple[str, ...]) -> str | None:
    if expected.ndim != actual.ndim or expected.shape[:-1] != actual.shape[:-1]:
        return None
    label = f" ({axes[-1]})" if axes else ""
    return (f"{name}: only the last dimension{label} changed, {expected.shape[-1]} -> {actual.shape[-1]}: "
            f"the feature size changed, as when proj_size (LSTM projection) or hidden_size changes "
            f"or an exporter drops the projection")


def _agreement(expected: Array, actual: Array) -> str | None:
    """'bitwise', 'within 1e-5', or None when the arrays do not agree."""
    if expected.shape != actual.shape:
        return None
    if np.array_equal(expected, actual):
        return "bitwise"
    if np.allclose(expected, actual, rtol=1e-5, atol=1e-5):
        return "within 1e-5"
    return None


_EXPLANATIONS: tuple[Callable[[str, Array, Array, tuple[str, ...]], str | None], ...] = (
    _seq_batch_swap, _leading_axis, _directions_stacked, _last_dimension,
)
