"""Pure comparison of named tensors: arrays in, value objects out (no I/O, no torch).

Order of checks, as torch.testing does: presence, shape, dtype, then values. A shape or dtype
mismatch is layout drift and is never reported as value drift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.judging.statistics import ErrorStatistics, error_statistics
from harness.model.tolerance import Tolerance
from harness.verdicts import TensorStatus


@dataclass(frozen=True, kw_only=True)
class TensorComparison:
    """How one actual tensor relates to its expected one."""

    name: str
    status: TensorStatus
    expected_shape: tuple[int, ...] | None
    actual_shape: tuple[int, ...] | None
    expected_dtype: str | None
    actual_dtype: str | None
    max_abs: float = 0.0
    max_rel: float = 0.0
    max_ulps: int = 0
    mismatched: int = 0
    total: int = 0
    worst_index: tuple[int, ...] | None = None
    worst_expected: float | None = None
    worst_actual: float | None = None
    diagnosis: str = ""  # for layout problems: the explanation that fits (harness.judging.layout)
    statistics: ErrorStatistics | None = None  # for compared values that are not bitwise equal
    expected_non_finite: NonFinite | None = None  # NaN/inf in the golden: how many, and the first index
    actual_non_finite: NonFinite | None = None  # NaN/inf in the result

    @property
    def passed(self) -> bool:
        return self.status in (TensorStatus.IDENTICAL, TensorStatus.CLOSE)

    @property
    def layout_problem(self) -> bool:
        return self.status in (TensorStatus.SHAPE, TensorStatus.MISSING, TensorStatus.UNEXPECTED)


def compare_outputs(
    expected: dict[str, np.ndarray], actual: dict[str, np.ndarray], tolerance: Tolerance
) -> tuple[TensorComparison, ...]:
    """One comparison per tensor name in either dict, expected names first."""
    names = list(expected) + [name for name in actual if name not in expected]
    return tuple(
        compare_tensor(name, expected.get(name), actual.get(name), tolerance) for name in names
    )


def compare_tensor(
    name: str, expected: np.ndarray | None, actual: np.ndarray | None, tolerance: Tolerance
) -> TensorComparison:
    if expected is None or actual is None:
        status = TensorStatus.MISSING if actual is None else TensorStatus.UNEXPECTED
        return TensorComparison(
            name=name, status=status,
            expected_shape=None if expected is None else tuple(expected.shape),
            actual_shape=None if actual is None else tuple(actual.shape),
            expected_dtype=None if expected is None else str(expected.dtype),
            actual_dtype=None if actual is None else str(actual.dtype),
        )
    layout = dict(
        name=name, expected_shape=tuple(expected.shape), actual_shape=tuple(actual.shape),
        expected_dtype=str(expected.dtype), actual_dtype=str(actual.dtype), total=int(expected.size),
    )
    if expected.shape != actual.shape or expected.dtype != actual.dtype:
        return TensorComparison(status=TensorStatus.SHAPE, **layout)  # type: ignore[arg-type]
    return TensorComparison(**layout, **_value_fields(expected, actual, tolerance))  # type: ignore[arg-type]


def _value_fields(expected: np.ndarray, actual: np.ndarray, tolerance: Tolerance) -> dict[str, object]:
    """Error statistics for two arrays of equal shape and dtype, under the non-finite policy:
    +inf equals only +inf and -inf only -inf; a NaN matches a NaN at the same index only under
    tolerance.equal_nan, and is otherwise a mismatch (even bitwise-equal NaNs)."""
    nan_e, nan_a = np.isnan(expected), np.isnan(actual)
    counts = {"expected_non_finite": non_finite(expected), "actual_non_finite": non_finite(actual)}
    if _bitwise_equal(expected, actual) and (tolerance.equal_nan or not nan_e.any()):
        return {"status": TensorStatus.IDENTICAL, **counts}
    wide_expected = expected.astype(np.float64)
    wide_actual = actual.astype(np.float64)
    matched_nan = nan_e & nan_a if tolerance.equal_nan else np.zeros(expected.shape, dtype=bool)
    bad_nan = (nan_e | nan_a) & ~matched_nan
    inf_e, inf_a = np.isinf(wide_expected), np.isinf(wide_actual)
    same_inf = inf_e & inf_a & (wide_expected == wide_actual)
    bad_inf = (inf_e | inf_a) & ~same_inf & ~(nan_e | nan_a)
    with np.errstate(invalid="ignore", over="ignore"):  # max - (-max) overflows to inf: an honest inf error
        difference = np.abs(wide_actual - wide_expected)
    abs_error = np.where(matched_nan | same_inf, 0.0, difference)
    abs_error = np.where(bad_nan | bad_inf, np.inf, abs_error)
    magnitude = np.where(np.isfinite(wide_expected), np.abs(wide_expected), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_error = np.where(abs_error == 0, 0.0, abs_error / magnitude)
    if tolerance.bitwise:
        mismatch = _bitwise_mismatch(expected, actual) | bad_nan
    else:
        with np.errstate(over="ignore"):  # rtol * max may overflow to inf: nothing then exceeds it
            mismatch = (abs_error > tolerance.atol + tolerance.rtol * magnitude) | bad_nan | bad_inf
    worst = np.unravel_index(int(np.argmax(abs_error)), abs_error.shape)
    ulps = np.where(matched_nan | same_inf, np.uint64(0), ulp_distance(expected, actual))
    ulps = np.where(bad_nan | bad_inf, np.iinfo(np.uint64).max, ulps).astype(np.uint64)
    return {
        "status": TensorStatus.DRIFT if mismatch.any() else TensorStatus.CLOSE,
        "max_abs": float(abs_error.max()),
        "max_rel": float(rel_error.max()),
        "max_ulps": int(ulps.max()),
        "statistics": error_statistics(expected, actual, abs_error, rel_error, ulps),
        "mismatched": int(mismatch.sum()),
        "worst_index": tuple(int(i) for i in worst),
        "worst_expected": float(expected[worst]),
        "worst_actual": float(actual[worst]),
        **counts,
    }


@dataclass(frozen=True, kw_only=True)
class NonFinite:
    """Non-finite elements of one tensor: how many, and where the first one is."""

    count: int
    first_index: tuple[int, ...]


def non_finite(array: np.ndarray) -> NonFinite | None:
    """None when every element is finite."""
    if not is_float(array.dtype) or array.size == 0:
        return None
    bad = ~np.isfinite(array)
    if not bad.any():
        return None
    first = np.unravel_index(int(np.argmax(bad)), bad.shape)
    return NonFinite(count=int(bad.sum()), first_index=tuple(int(i) for i in first))


ORACLE = "float64 NumPy oracle"
FLOAT64_EAGER = "float64 eager torch (no oracle)"


@dataclass(frozen=True, kw_only=True)
class OracleDistance:
    """How far a result is from the float64 oracle: max abs error, and ulps in the result's dtype."""

    max_abs: float
    max_ulps: int
    reference: str = ORACLE  # or FLOAT64_EAGER, where no oracle applies


def oracle_distance(actual: dict[str, np.ndarray], oracle: dict[str, np.ndarray],
                    reference: str = ORACLE) -> OracleDistance | None:
    """The worst distance over tensors present in both with equal shapes; None if none compare."""
    pairs = [(actual[name], oracle[name]) for name in oracle
             if name in actual and actual[name].shape == oracle[name].shape and is_float(actual[name].dtype)]
    if not pairs:
        return None
    distances = [float(np.max(np.abs(a.astype(np.float64) - o), initial=0.0)) for a, o in pairs]
    return OracleDistance(
        max_abs=math.nan if any(math.isnan(d) for d in distances) else max(distances),  # a NaN must show
        max_ulps=max(int(np.max(ulp_distance(a, o.astype(a.dtype)), initial=0)) for a, o in pairs),
        reference=reference,
    )


def is_float(dtype: np.dtype[Any]) -> bool:
    """A floating dtype, bfloat16 included (ml_dtypes gives it kind 'V', not 'f')."""
    return dtype.kind == "f" or dtype.name == "bfloat16"


def _bitwise_equal(expected: np.ndarray, actual: np.ndarray) -> bool:
    return bool(np.ascontiguousarray(expected).tobytes() == np.ascontiguousarray(actual).tobytes())


def _bitwise_mismatch(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    unsigned = _UNSIGNED_OF_SIZE[expected.dtype.itemsize]
    return np.asarray(expected.view(unsigned) != actual.view(unsigned))


_UNSIGNED_OF_SIZE = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def ulp_distance(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Units in the last place between same-dtype floats, elementwise, as uint64.

    Floats are mapped to their position on the number line (sign-magnitude bits), so
    +0 and -0 are 0 apart and the smallest subnormals of opposite sign are 2 apart.
    NaN against anything but NaN counts as the largest distance.
    """
    if expected.dtype != actual.dtype or not is_float(expected.dtype):
        raise TypeError(f"ulp_distance needs two arrays of one float dtype, got {expected.dtype}, {actual.dtype}")
    bits = expected.dtype.itemsize * 8
    unsigned = _UNSIGNED_OF_SIZE[expected.dtype.itemsize]
    sign_bit = np.uint64(1) << np.uint64(bits - 1)
    raw_e = expected.view(unsigned).astype(np.uint64)
    raw_a = actual.view(unsigned).astype(np.uint64)
    magnitude_e, magnitude_a = raw_e & ~sign_bit, raw_a & ~sign_bit
    same_sign = (raw_e & sign_bit) == (raw_a & sign_bit)
    larger = np.maximum(magnitude_e, magnitude_a)
    smaller = np.minimum(magnitude_e, magnitude_a)
    distance = np.where(same_sign, larger - smaller, magnitude_e + magnitude_a)
    nan_e, nan_a = np.isnan(expected), np.isnan(actual)
    distance = np.where(nan_e & nan_a, np.uint64(0), distance)
    return np.where(nan_e ^ nan_a, np.iinfo(np.uint64).max, distance).astype(np.uint64)
