from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from harness.judging.compare import compare_outputs, compare_tensor, ulp_distance
from harness.model.tolerance import BITWISE, Tolerance
from harness.verdicts import TensorStatus

LOOSE = Tolerance(atol=1e-6, rtol=1e-5)


def test_identical_arrays() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    result = compare_tensor("output", a, a.copy(), LOOSE)
    assert result.status is TensorStatus.IDENTICAL and result.passed


def test_one_ulp_is_close_but_not_bitwise() -> None:
    a = np.array([0.5, 1.0], dtype=np.float32)
    b = a.copy()
    b[1] = np.nextafter(b[1], np.float32(2))
    assert compare_tensor("x", a, b, LOOSE).status is TensorStatus.CLOSE
    strict = compare_tensor("x", a, b, BITWISE)
    assert strict.status is TensorStatus.DRIFT and strict.mismatched == 1 and strict.max_ulps == 1


def test_drift_reports_worst_index_values_and_counts() -> None:
    expected = np.zeros((2, 3, 4), dtype=np.float32)
    actual = expected.copy()
    actual[1, 2, 3] = 1e-3
    actual[0, 0, 0] = 1e-7  # within atol
    result = compare_tensor("h_n", expected, actual, LOOSE)
    assert result.status is TensorStatus.DRIFT
    assert result.mismatched == 1 and result.total == 24
    assert result.worst_index == (1, 2, 3)
    assert result.worst_expected == 0.0 and result.worst_actual == pytest.approx(1e-3)
    assert result.max_abs == pytest.approx(1e-3)


def test_shape_and_dtype_changes_are_layout_not_values() -> None:
    a = np.zeros((3, 5, 8), dtype=np.float32)
    swapped = compare_tensor("output", a, a.transpose(1, 0, 2).copy(), LOOSE)
    assert swapped.status is TensorStatus.SHAPE
    assert (swapped.expected_shape, swapped.actual_shape) == ((3, 5, 8), (5, 3, 8))
    assert compare_tensor("output", a, a.astype(np.float64), LOOSE).status is TensorStatus.SHAPE


def test_missing_and_unexpected_tensors() -> None:
    a = np.zeros(2, dtype=np.float32)
    results = {r.name: r.status for r in compare_outputs({"output": a, "c_n": a}, {"output": a, "extra": a}, LOOSE)}
    assert results == {"output": TensorStatus.IDENTICAL, "c_n": TensorStatus.MISSING,
                       "extra": TensorStatus.UNEXPECTED}


def test_a_nan_is_a_mismatch_unless_equal_nan_and_at_the_same_index() -> None:
    a = np.array([np.nan, 1.0], dtype=np.float32)
    same = compare_tensor("x", a, a.copy(), LOOSE)
    assert same.status is TensorStatus.DRIFT and same.mismatched == 1  # even bitwise-equal NaNs
    assert same.expected_non_finite is not None and same.expected_non_finite.first_index == (0,)
    assert compare_tensor("x", a, a.copy(), dataclasses.replace(LOOSE, equal_nan=True)).status is TensorStatus.IDENTICAL
    moved = np.array([1.0, np.nan], dtype=np.float32)
    assert compare_tensor("x", a, moved, dataclasses.replace(LOOSE, equal_nan=True)).mismatched == 2
    b = np.array([0.0, 1.0], dtype=np.float32)
    assert compare_tensor("x", a, b, LOOSE).status is TensorStatus.DRIFT


@pytest.mark.parametrize("actual", [[1e30, 1.0], [-np.inf, 1.0], [3.4e38, 1.0]])
def test_infinity_equals_only_the_same_infinity(actual: list[float]) -> None:
    expected = np.array([np.inf, 1.0], dtype=np.float32)
    result = compare_tensor("x", expected, np.array(actual, dtype=np.float32), LOOSE)
    assert result.status is TensorStatus.DRIFT and result.mismatched == 1 and result.worst_index == (0,)
    assert result.max_abs == np.inf
    assert compare_tensor("x", expected, expected.copy(), LOOSE).status is TensorStatus.IDENTICAL
    nudged = np.array([np.inf, np.nextafter(np.float32(1), np.float32(2))], dtype=np.float32)
    assert compare_tensor("x", expected, nudged, LOOSE).status is TensorStatus.CLOSE


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ulp_distance(dtype: type) -> None:
    one = np.array([1.0], dtype=dtype)
    up = np.nextafter(one, dtype(2))
    assert ulp_distance(one, up)[0] == 1
    zero, negative_zero = np.array([0.0], dtype=dtype), np.array([-0.0], dtype=dtype)
    assert ulp_distance(zero, negative_zero)[0] == 0
    tiny = np.nextafter(zero, dtype(1))
    assert ulp_distance(-tiny, tiny)[0] == 2
    assert ulp_distance(np.array([np.nan], dtype=dtype), one)[0] == np.iinfo(np.uint64).max
