from __future__ import annotations

import numpy as np
import pytest

from harness.judging.compare import compare_tensor
from harness.judging.statistics import histogram_lines
from harness.model.tolerance import Tolerance


def drifted() -> tuple[np.ndarray, np.ndarray]:
    expected = np.linspace(-1, 1, 100, dtype=np.float32).reshape(4, 25)
    actual = expected.copy()
    actual[0, :10] += np.float32(1e-7)
    actual[3, 7] += np.float32(2e-3)
    return expected, actual


def test_percentiles_histogram_and_worst_elements() -> None:
    expected, actual = drifted()
    statistics = compare_tensor("output", expected, actual, Tolerance(atol=1e-6, rtol=0)).statistics
    assert statistics is not None
    assert statistics.abs_error.max == pytest.approx(2e-3, rel=1e-3)
    assert statistics.abs_error.median == 0.0
    counts = dict(statistics.histogram)
    assert counts["exact"] + counts["<1e-06"] + counts["<1e-07"] == 99 and counts["<1e-02"] == 1
    assert sum(counts.values()) == 100
    assert statistics.worst[0].index == (3, 7)
    assert len(statistics.worst) == 5 and all(w.abs_error > 0 for w in statistics.worst)
    assert histogram_lines(statistics)[0].startswith("  exact | ")


def test_needed_tolerances_are_exactly_the_ones_that_pass() -> None:
    expected, actual = drifted()
    statistics = compare_tensor("output", expected, actual, Tolerance(atol=0, rtol=0)).statistics
    assert statistics is not None
    assert compare_tensor("o", expected, actual, Tolerance(atol=statistics.needed_atol, rtol=0)).passed
    assert not compare_tensor("o", expected, actual, Tolerance(atol=statistics.needed_atol * 0.99, rtol=0)).passed
    assert compare_tensor("o", expected, actual, Tolerance(atol=0, rtol=statistics.needed_rtol)).passed


def test_bitwise_equal_tensors_carry_no_statistics() -> None:
    expected, _ = drifted()
    assert compare_tensor("output", expected, expected.copy(), Tolerance(atol=0, rtol=0)).statistics is None
