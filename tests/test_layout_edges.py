"""Edges of the layout diagnosis (harness.judging.layout), pure: arrays and axis names in, one sentence out.

tests/test_layout.py checks the notebook case against torch's own outputs; these need no torch.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.judging.layout import diagnose_layout

RNG = np.random.default_rng(11)
OUTPUT_AXES = ("seq", "batch", "directions*hidden")
STATE_AXES = ("layers*directions", "batch", "hidden")
SWAP = ("output == golden.transpose(1, 0, 2) {proof}: the batch and sequence axes are swapped, as when batch_first "
        "changes;{labels} the result has them the other way round")
LOST = ("h_n lost axis 1{label} of size 1: as when unbatched input (no batch axis) replaces a batch of one, "
        "or the reverse")


def golden(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def test_the_notebook_mislabel_is_a_swap_naming_the_golden_axes() -> None:
    """The notebook's comment calls a (3, 5, 8) output "batch, seq, hidden": a consumer that believes it hands
    back (5, 3, 8)."""
    expected = golden(3, 5, 8)
    assert diagnose_layout("output", expected, np.ascontiguousarray(expected.transpose(1, 0, 2)), OUTPUT_AXES) == (
        SWAP.format(proof="bitwise", labels=" golden axes are (seq, batch, directions*hidden) = (3, 5, 8);"))


def test_a_swap_without_axis_names_has_no_axis_label() -> None:
    expected = golden(3, 5, 8)
    assert diagnose_layout("output", expected, expected.transpose(1, 0, 2)) == SWAP.format(proof="bitwise", labels="")


def test_a_swap_within_1e_5_says_so() -> None:
    expected = 1e-6 * RNG.standard_normal((3, 5, 8))  # values near zero: only the absolute 1e-5 can agree
    actual = expected.transpose(1, 0, 2) + 5e-6
    assert diagnose_layout("output", expected, actual) == SWAP.format(proof="within 1e-5", labels="")


@pytest.mark.parametrize("change", ["relative", "absolute"])
def test_a_transposed_shape_with_values_far_off_is_no_swap(change: str) -> None:
    expected = np.abs(RNG.standard_normal((3, 5, 8))) + 0.5
    moved = expected * 1.5 if change == "relative" else expected + 0.5
    assert diagnose_layout("output", expected, moved.transpose(1, 0, 2)) is None


def test_a_dtype_change_says_whether_the_values_still_agree() -> None:
    expected = golden(2, 3)
    assert diagnose_layout("h_n", expected, expected.astype(np.float64) + 1e-6) == (
        "dtype changed float32 -> float64 (same shape); values agree within 1e-5 after casting")
    assert diagnose_layout("h_n", expected, expected.astype(np.float64) + 1.0) == (
        "dtype changed float32 -> float64 (same shape); values differ too")
    assert diagnose_layout("h_n", expected.astype(np.float16), expected.astype(np.float16).astype(np.float64)) == (
        "dtype changed float16 -> float64 (same shape); values agree bitwise after casting")


def test_a_dtype_and_shape_change_is_explained_by_the_shape() -> None:
    expected = golden(3, 5, 8)
    assert diagnose_layout("output", expected, expected.transpose(1, 0, 2).astype(np.float64)) == (
        SWAP.format(proof="bitwise", labels=""))


def test_a_lost_axis_is_the_one_whose_removal_agrees() -> None:
    expected = golden(2, 1, 1)  # two size-1 axes: only squeezing axis 1 gives the (2, 1) result
    assert diagnose_layout("h_n", expected, expected[:, 0, :], STATE_AXES) == LOST.format(label=" (batch)")
    assert diagnose_layout("h_n", expected, expected[:, 0, :], ("layers*directions",)) == LOST.format(label="")
    assert diagnose_layout("h_n", expected, expected[:, 0, :]) == LOST.format(label="")


def test_a_gained_axis_is_the_one_whose_removal_agrees() -> None:
    expected = golden(2, 1)
    assert diagnose_layout("h_n", expected, expected[:, None, :], STATE_AXES) == (
        "h_n gained an axis of size 1 at position 1: as when a batch of one replaces unbatched input, or the reverse")


@pytest.mark.parametrize(("concatenated_shape", "stacked_shape"), [((5, 16), (5, 2, 8)), ((3, 5, 16), (3, 5, 2, 8))])
def test_directions_stacked_or_concatenated(
    concatenated_shape: tuple[int, ...], stacked_shape: tuple[int, ...]
) -> None:
    concatenated = golden(*concatenated_shape)
    stacked = concatenated.reshape(stacked_shape)
    assert diagnose_layout("output", concatenated, stacked) == (
        f"output: the two directions are stacked on a new axis {stacked_shape} where the golden concatenates them "
        f"on the last axis {concatenated_shape}")
    assert diagnose_layout("output", stacked, concatenated) == (
        f"output: the two directions are concatenated on the last axis {concatenated_shape} where the golden stacks "
        f"them on a new axis {stacked_shape}")


@pytest.mark.parametrize(("expected_shape", "actual_shape"), [
    ((3, 5, 16), (3, 5, 4, 4)),  # a new axis, but of 4, not of two directions
    ((3, 5, 4, 4), (3, 5, 16)),
    ((2, 12), (3, 8)),  # the same size, reshaped: no explanation fits
])
def test_a_reshape_that_is_not_about_directions_is_not_explained(
    expected_shape: tuple[int, ...], actual_shape: tuple[int, ...]
) -> None:
    values = np.arange(float(np.prod(expected_shape)))
    assert diagnose_layout("output", values.reshape(expected_shape), values.reshape(actual_shape)) is None


def test_only_the_last_dimension_changed() -> None:
    sentence = ("output: only the last dimension{label} changed, 4 -> 8: the feature size changed, as when proj_size "
                "(LSTM projection) or hidden_size changes or an exporter drops the projection")
    expected, actual = golden(3, 5, 4), golden(3, 5, 8)
    assert diagnose_layout("output", expected, actual, ("seq", "batch", "directions*proj")) == (
        sentence.format(label=" (directions*proj)"))
    assert diagnose_layout("output", expected, actual) == sentence.format(label="")
