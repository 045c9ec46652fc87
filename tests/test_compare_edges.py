"""Edges of the comparison (harness.judging.compare): every supported dtype, empty and zero-size tensors,
negative zero, subnormals, the largest finite values and the non-finite policy (+inf equals only +inf,
-inf only -inf; a NaN is a mismatch unless Tolerance(equal_nan=True)). Arrays in, findings out.

bfloat16 appears here only where its tensors are bitwise equal: a bfloat16 tensor that moved cannot be
compared today (tests/test_judging_regressions.py).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from harness.judging.compare import (
    NonFinite,
    OracleDistance,
    compare_outputs,
    compare_tensor,
    non_finite,
    oracle_distance,
    ulp_distance,
)
from harness.model.tolerance import BITWISE, Tolerance
from harness.verdicts import TensorStatus

LOOSE = Tolerance(atol=1e-6, rtol=1e-5)
EXACT = Tolerance(atol=0.0, rtol=0.0)  # no slack, yet not bitwise: -0 equals +0 and NaN payloads may differ
WORST_ULPS = 2**64 - 1  # what a NaN or an infinity against anything else counts as
DTYPES = [np.float16, np.float32, np.float64]
ALL_DTYPES = [*DTYPES, ml_dtypes.bfloat16]
NAN_BITS: dict[Any, tuple[int, int, type]] = {  # two quiet NaNs with different payloads, per dtype
    np.float16: (0x7E00, 0x7E01, np.uint16),
    np.float32: (0x7FC00000, 0x7FC00001, np.uint32),
    np.float64: (0x7FF8000000000000, 0x7FF8000000000001, np.uint64),
}


def nans(dtype: Any) -> tuple[Any, Any]:
    """Two NaNs of dtype whose bits differ."""
    first, second, unsigned = NAN_BITS[dtype]
    pair = np.array([first, second], dtype=unsigned).view(dtype)
    assert np.isnan(pair).all() and pair[0].tobytes() != pair[1].tobytes()
    return pair[0], pair[1]


def up(value: float, dtype: Any) -> Any:
    """The next representable value above value, in dtype."""
    return np.nextafter(dtype(value), dtype(np.inf))


# -- presence, shape and dtype -------------------------------------------------------------------------


def test_missing_and_unexpected_tensors_keep_the_side_that_exists() -> None:
    missing = compare_tensor("c_n", np.zeros((2, 3), np.float32), None, LOOSE)
    assert (missing.status, missing.expected_shape, missing.actual_shape, missing.expected_dtype,
            missing.actual_dtype) == (TensorStatus.MISSING, (2, 3), None, "float32", None)
    assert not missing.passed and missing.layout_problem and missing.statistics is None
    unexpected = compare_tensor("extra", None, np.zeros(4, np.float64), LOOSE)
    assert (unexpected.status, unexpected.expected_shape, unexpected.actual_shape, unexpected.expected_dtype,
            unexpected.actual_dtype) == (TensorStatus.UNEXPECTED, None, (4,), None, "float64")
    assert not unexpected.passed and unexpected.layout_problem


def test_a_dtype_change_is_shape_drift_naming_both_dtypes_and_no_values() -> None:
    result = compare_tensor("h_n", np.zeros((1, 5, 8), np.float32), np.ones((1, 5, 8), np.float64), LOOSE)
    assert (result.status, result.expected_dtype, result.actual_dtype) == (TensorStatus.SHAPE, "float32", "float64")
    assert (result.expected_shape, result.actual_shape, result.total) == ((1, 5, 8), (1, 5, 8), 40)
    assert (result.max_abs, result.mismatched, result.statistics) == (0.0, 0, None)


def test_same_bytes_under_another_dtype_of_the_same_width_is_a_dtype_change() -> None:
    """float16 and bfloat16 zeros are the same bytes: still a dtype change, never IDENTICAL."""
    result = compare_tensor("x", np.zeros(3, np.float16), np.zeros(3, ml_dtypes.bfloat16), LOOSE)
    assert (result.status, result.expected_dtype, result.actual_dtype) == (TensorStatus.SHAPE, "float16", "bfloat16")


def test_compare_outputs_lists_expected_names_first_then_the_extra_ones() -> None:
    a = np.zeros(1, np.float32)
    names = [r.name for r in compare_outputs({"h_n": a, "output": a}, {"zeta": a, "output": a, "alpha": a}, LOOSE)]
    assert names == ["h_n", "output", "zeta", "alpha"]
    assert compare_outputs({}, {}, LOOSE) == ()


# -- empty, zero-size and scalar tensors -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("shape", [(0,), (3, 0, 8), (0, 0)])
def test_zero_size_tensors_of_one_shape_are_identical(dtype: Any, shape: tuple[int, ...]) -> None:
    result = compare_tensor("x", np.zeros(shape, dtype), np.zeros(shape, dtype), LOOSE)
    assert result.status is TensorStatus.IDENTICAL and result.passed
    assert (result.total, result.expected_shape, result.mismatched, result.worst_index) == (0, shape, 0, None)
    assert result.expected_non_finite is None and result.actual_non_finite is None


def test_zero_size_tensors_of_other_shapes_or_dtypes_are_shape_drift() -> None:
    assert compare_tensor("x", np.zeros((0, 8), np.float32), np.zeros((8, 0), np.float32), LOOSE).status is (
        TensorStatus.SHAPE)
    assert compare_tensor("x", np.zeros(0, np.float32), np.zeros(0, np.float64), LOOSE).status is TensorStatus.SHAPE


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_scalar_tensor_has_an_empty_worst_index(dtype: Any) -> None:
    result = compare_tensor("x", np.array(1.0, dtype), np.array(2.0, dtype), LOOSE)
    assert (result.status, result.worst_index, result.total, result.max_abs) == (TensorStatus.DRIFT, (), 1, 1.0)
    assert (result.worst_expected, result.worst_actual, result.mismatched) == (1.0, 2.0, 1)


# -- one ulp, negative zero, subnormals, the largest finite values ----------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_ulp_in_every_dtype(dtype: Any) -> None:
    expected = np.array([0.5, 1.0, -2.0], dtype)
    actual = expected.copy()
    actual[1] = up(1.0, dtype)
    step = float(actual[1]) - 1.0
    result = compare_tensor("x", expected, actual, Tolerance(atol=0.0, rtol=0.01))
    assert (result.status, result.mismatched, result.total, result.max_ulps) == (TensorStatus.CLOSE, 0, 3, 1)
    assert (result.max_abs, result.max_rel) == (step, step)
    assert (result.worst_index, result.worst_expected, result.worst_actual) == ((1,), 1.0, float(actual[1]))
    strict = compare_tensor("x", expected, actual, BITWISE)
    assert (strict.status, strict.mismatched, strict.max_ulps) == (TensorStatus.DRIFT, 1, 1)
    assert compare_tensor("x", expected, actual, EXACT).mismatched == 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_negative_zero_is_zero_ulps_away_but_not_the_same_bits(dtype: Any) -> None:
    expected, actual = np.array([0.0, 1.0], dtype), np.array([-0.0, 1.0], dtype)
    result = compare_tensor("x", expected, actual, EXACT)
    assert (result.status, result.max_abs, result.max_rel, result.max_ulps) == (TensorStatus.CLOSE, 0.0, 0.0, 0)
    assert result.statistics is not None and result.statistics.worst == ()  # nothing moved by value
    strict = compare_tensor("x", expected, actual, BITWISE)
    assert (strict.status, strict.mismatched, strict.max_ulps) == (TensorStatus.DRIFT, 1, 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_subnormals_are_counted_in_ulps_through_zero(dtype: Any) -> None:
    tiny = np.nextafter(dtype(0), dtype(1))  # the smallest subnormal
    expected, actual = np.array([0.0, tiny], dtype), np.array([tiny, -tiny], dtype)
    assert ulp_distance(expected, actual).tolist() == [1, 2]
    result = compare_tensor("x", expected, actual, EXACT)
    assert (result.status, result.mismatched, result.max_ulps) == (TensorStatus.DRIFT, 2, 2)
    assert (result.max_abs, result.worst_index) == (2 * float(tiny), (1,))
    assert result.max_rel == math.inf  # an exact zero that moved
    assert compare_tensor("x", expected, actual, Tolerance(atol=3 * float(tiny), rtol=0.0)).status is (
        TensorStatus.CLOSE)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_largest_finite_values(dtype: Any) -> None:
    big = np.finfo(dtype).max
    below = np.nextafter(big, dtype(0))
    expected = np.array([big, -big], dtype)
    close = compare_tensor("x", expected, np.array([below, -big], dtype), Tolerance(atol=0.0, rtol=0.01))
    assert (close.status, close.max_ulps, close.worst_index) == (TensorStatus.CLOSE, 1, (0,))
    assert close.max_abs == float(big) - float(below)
    assert ulp_distance(np.array([big], dtype), np.array([np.inf], dtype))[0] == 1  # inf is next on the line...
    overflowed = compare_tensor("x", expected, np.array([np.inf, -big], dtype), LOOSE)
    assert (overflowed.status, overflowed.mismatched, overflowed.max_abs) == (TensorStatus.DRIFT, 1, math.inf)
    assert overflowed.max_ulps == WORST_ULPS  # ...but a finite value never equals an infinity


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_largest_values_of_opposite_sign_are_measured_without_overflow(dtype: Any) -> None:
    big = np.finfo(dtype).max
    result = compare_tensor("x", np.array([big], dtype), np.array([-big], dtype), LOOSE)
    assert (result.status, result.max_abs, result.max_rel) == (TensorStatus.DRIFT, 2 * float(big), 2.0)
    assert result.max_ulps == 2 * int(np.array([big], dtype).view(NAN_BITS[dtype][2])[0])


# -- the non-finite policy -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_nan_against_a_number_is_the_largest_error(dtype: Any) -> None:
    expected, actual = np.array([1.0, np.nan, 2.0], dtype), np.array([1.0, 1.0, 2.0], dtype)
    result = compare_tensor("x", expected, actual, LOOSE)
    assert (result.status, result.mismatched, result.worst_index) == (TensorStatus.DRIFT, 1, (1,))
    assert (result.max_abs, result.max_rel, result.max_ulps) == (math.inf, math.inf, WORST_ULPS)
    assert math.isnan(result.worst_expected or 0.0) and result.worst_actual == 1.0
    assert (result.expected_non_finite, result.actual_non_finite) == (NonFinite(count=1, first_index=(1,)), None)
    flipped = compare_tensor("x", actual, expected, dataclasses.replace(LOOSE, equal_nan=True))
    assert (flipped.status, flipped.max_ulps) == (TensorStatus.DRIFT, WORST_ULPS)  # equal_nan: NaN vs NaN only
    assert flipped.actual_non_finite == NonFinite(count=1, first_index=(1,))


@pytest.mark.parametrize("dtype", DTYPES)
def test_equal_nan_matches_nans_at_one_index_whatever_their_payload(dtype: Any) -> None:
    first, second = nans(dtype)
    expected, actual = np.array([first, 1.0], dtype), np.array([second, 1.0], dtype)
    matched = compare_tensor("x", expected, actual, dataclasses.replace(EXACT, equal_nan=True))
    assert (matched.status, matched.mismatched, matched.max_ulps) == (TensorStatus.CLOSE, 0, 0)
    assert (matched.max_abs, matched.max_rel) == (0.0, 0.0)
    assert matched.statistics is not None and matched.statistics.worst == ()
    unmatched = compare_tensor("x", expected, actual, EXACT)
    assert (unmatched.status, unmatched.mismatched, unmatched.max_ulps) == (TensorStatus.DRIFT, 1, WORST_ULPS)
    assert unmatched.max_abs == math.inf
    assert ulp_distance(expected, actual).tolist() == [0, 0]  # NaN to NaN: no distance on the line


@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_equal_nans_are_a_mismatch_unless_equal_nan(dtype: Any) -> None:
    values = np.array([np.nan, 1.0], dtype)
    for tolerance in (LOOSE, BITWISE):
        result = compare_tensor("x", values, values.copy(), tolerance)
        assert (result.status, result.mismatched) == (TensorStatus.DRIFT, 1)
        assert compare_tensor("x", values, values.copy(), dataclasses.replace(tolerance, equal_nan=True)).status is (
            TensorStatus.IDENTICAL)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_same_infinity_is_no_error_and_the_rest_is_still_measured(dtype: Any) -> None:
    expected = np.array([np.inf, -np.inf, 1.0], dtype)
    actual = np.array([np.inf, -np.inf, up(1.0, dtype)], dtype)
    step = float(actual[2]) - 1.0
    result = compare_tensor("x", expected, actual, Tolerance(atol=0.0, rtol=0.01))
    assert (result.status, result.mismatched, result.max_ulps, result.worst_index) == (TensorStatus.CLOSE, 0, 1, (2,))
    assert (result.max_abs, result.max_rel) == (step, step)
    assert result.expected_non_finite == result.actual_non_finite == NonFinite(count=2, first_index=(0,))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("other", [-np.inf, np.nan, 0.0, "max"])
def test_an_infinity_equals_nothing_but_itself(dtype: Any, other: Any) -> None:
    other = np.finfo(dtype).max if other == "max" else other
    expected, actual = np.array([np.inf, 1.0], dtype), np.array([other, 1.0], dtype)
    for tolerance in (LOOSE, dataclasses.replace(LOOSE, equal_nan=True)):
        result = compare_tensor("x", expected, actual, tolerance)
        assert (result.status, result.mismatched, result.worst_index) == (TensorStatus.DRIFT, 1, (0,))
        assert (result.max_abs, result.max_ulps) == (math.inf, WORST_ULPS)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_infinite_result_drifts_even_when_the_tolerance_bound_overflows(dtype: Any) -> None:
    """rtol * |expected| overflows to inf, so inf <= bound: the infinity alone must still make it DRIFT."""
    huge = Tolerance(atol=0.0, rtol=1e308)
    with np.errstate(over="ignore"):  # the overflow of the bound itself is tests/test_judging_regressions.py
        result = compare_tensor("x", np.array([2.0, 1.0], dtype), np.array([np.inf, 1.0], dtype), huge)
        finite = compare_tensor("x", np.array([2.0], dtype), np.array([3.0], dtype), huge)
    assert (result.status, result.mismatched) == (TensorStatus.DRIFT, 1)
    assert finite.status is TensorStatus.CLOSE


def test_bitwise_tolerance_demands_identical_bytes_even_for_matched_nans() -> None:
    first, second = nans(np.float32)
    expected, actual = np.array([first, 1.0], np.float32), np.array([second, 1.0], np.float32)
    result = compare_tensor("x", expected, actual, dataclasses.replace(BITWISE, equal_nan=True))
    assert (result.status, result.mismatched, result.max_ulps) == (TensorStatus.DRIFT, 1, 0)


def test_an_exact_zero_that_moved_has_an_infinite_relative_error() -> None:
    expected, actual = np.array([0.0, 1.0, 2.0]), np.array([1e-9, 1.0, 2.0])
    result = compare_tensor("x", expected, actual, LOOSE)
    assert (result.status, result.max_abs, result.max_rel) == (TensorStatus.CLOSE, 1e-9, math.inf)
    assert result.statistics is not None and result.statistics.needed_rtol == math.inf


# -- non_finite ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_finite_counts_every_nan_and_infinity_and_names_the_first(dtype: Any) -> None:
    values = np.array([[1.0, 2.0, np.nan], [np.inf, 3.0, -np.inf]], dtype)
    assert non_finite(values) == NonFinite(count=3, first_index=(0, 2))
    assert non_finite(np.array([np.nan], dtype)) == NonFinite(count=1, first_index=(0,))
    assert non_finite(np.array([1.0, -np.inf], dtype)) == NonFinite(count=1, first_index=(1,))
    assert non_finite(np.array([1.0, np.finfo(dtype).max, -0.0], dtype)) is None


@pytest.mark.parametrize("values", [np.zeros(0, np.float32), np.zeros((2, 0)), np.arange(3), np.array(["nan", "inf"])])
def test_non_finite_is_none_for_empty_and_non_float_arrays(values: np.ndarray) -> None:
    assert non_finite(values) is None


# -- ulp_distance ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("expected", "actual"), [
    (np.zeros(2, np.float32), np.zeros(2, np.float64)),
    (np.zeros(2, np.int32), np.zeros(2, np.int32)),
])
def test_ulp_distance_needs_two_arrays_of_one_float_dtype(expected: np.ndarray, actual: np.ndarray) -> None:
    with pytest.raises(TypeError, match=f"^ulp_distance needs two arrays of one float dtype, got {expected.dtype}, "
                                        f"{actual.dtype}$"):
        ulp_distance(expected, actual)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ulp_distance_is_elementwise_uint64(dtype: Any) -> None:
    tiny = np.nextafter(dtype(0), dtype(1))
    expected = np.array([[0.0, 1.0, -tiny], [np.nan, np.inf, 2.0]], dtype)
    actual = np.array([[-0.0, up(1.0, dtype), tiny], [1.0, np.inf, np.nan]], dtype)
    distance = ulp_distance(expected, actual)
    assert distance.dtype == np.uint64 and distance.shape == (2, 3)
    assert distance.tolist() == [[0, 1, 2], [WORST_ULPS, 0, WORST_ULPS]]


# -- oracle_distance -------------------------------------------------------------------------------------


def test_oracle_distance_is_the_worst_over_comparable_tensors() -> None:
    oracle = {"output": np.array([1.0, 2.0]), "h_n": np.array([0.5]), "c_n": np.array([0.0, 0.0])}
    actual = {"output": np.array([1.0, up(2.0, np.float32)], np.float32), "h_n": np.array([0.5], np.float32),
              "c_n": np.array([9.0], np.float32)}  # c_n's shape differs: not comparable
    step = float(up(2.0, np.float32)) - 2.0
    assert oracle_distance(actual, oracle) == OracleDistance(max_abs=step, max_ulps=1)


def test_a_nan_in_any_tensor_shows_in_the_oracle_distance() -> None:
    oracle = {"output": np.array([1.0, 2.0]), "h_n": np.array([0.5])}
    actual = {"output": np.array([1.0, 2.5], np.float32), "h_n": np.array([np.nan], np.float32)}
    distance = oracle_distance(actual, oracle)
    assert distance is not None and math.isnan(distance.max_abs) and distance.max_ulps == WORST_ULPS


def test_zero_size_tensors_are_no_distance_from_the_oracle() -> None:
    oracle = {"output": np.zeros((0, 8)), "h_n": np.zeros((1, 0, 8))}
    actual = {"output": np.zeros((0, 8), np.float32), "h_n": np.zeros((1, 0, 8), np.float32)}
    assert oracle_distance(actual, oracle) == OracleDistance(max_abs=0.0, max_ulps=0)


def test_oracle_distance_is_none_when_nothing_compares() -> None:
    oracle = {"output": np.zeros(3), "h_n": np.zeros(2)}
    assert oracle_distance({"output": np.zeros(4, np.float32), "h_n": np.zeros(2, np.int32)}, oracle) is None
    assert oracle_distance({}, oracle) is None
