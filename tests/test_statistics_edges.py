"""Edges of the error statistics (harness.judging.statistics): exact percentiles, the histogram's bin edges,
the worst elements and their ties, empty and one-element errors, overflowing means, the text histogram."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from harness.judging.compare import compare_tensor
from harness.judging.statistics import ErrorStatistics, Percentiles, WorstElement, error_statistics, histogram_lines
from harness.model.tolerance import Tolerance

LABELS = ("exact", "<1e-09", "<1e-08", "<1e-07", "<1e-06", "<1e-05", "<1e-04", "<1e-03", "<1e-02", ">=1e-02")


def statistics_of(abs_error: np.ndarray, rel_error: np.ndarray | None = None,
                  ulps: np.ndarray | None = None) -> ErrorStatistics:
    """Statistics of given errors, with expected = 0 and actual = abs_error."""
    return error_statistics(np.zeros_like(abs_error), abs_error, abs_error,
                            abs_error if rel_error is None else rel_error,
                            np.zeros(abs_error.shape, np.uint64) if ulps is None else ulps)


def test_histogram_bins_are_decades_closed_below_and_open_above() -> None:
    edges = np.array([0.0, 5e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1.0, np.inf])
    assert statistics_of(edges).histogram == (*((label, 1) for label in LABELS[:-1]), (">=1e-02", 3))


def test_percentiles_of_a_known_distribution() -> None:
    values = np.arange(101.0)
    statistics = statistics_of(values, 2 * values, (3 * values).astype(np.uint64))
    assert statistics.abs_error == Percentiles(mean=50.0, median=50.0, p90=90.0, p99=99.0, max=100.0)
    assert statistics.rel_error == Percentiles(mean=100.0, median=100.0, p90=180.0, p99=198.0, max=200.0)
    assert statistics.ulps == Percentiles(mean=150.0, median=150.0, p90=270.0, p99=297.0, max=300.0)
    assert (statistics.needed_atol, statistics.needed_rtol) == (100.0, 200.0)


def test_one_element_is_every_percentile() -> None:
    statistics = statistics_of(np.array([0.25]), np.array([0.5]), np.array([7], np.uint64))
    assert statistics.abs_error == Percentiles(mean=0.25, median=0.25, p90=0.25, p99=0.25, max=0.25)
    assert statistics.ulps == Percentiles(mean=7.0, median=7.0, p90=7.0, p99=7.0, max=7.0)
    assert statistics.worst == (WorstElement(index=(0,), expected=0.0, actual=0.25, abs_error=0.25, ulps=7),)


def test_no_elements_give_zeros_and_empty_bins() -> None:
    statistics = statistics_of(np.zeros((0, 3)))
    zero = Percentiles(mean=0.0, median=0.0, p90=0.0, p99=0.0, max=0.0)
    assert (statistics.abs_error, statistics.rel_error, statistics.ulps) == (zero, zero, zero)
    assert statistics.histogram == tuple((label, 0) for label in LABELS)
    assert (statistics.worst, statistics.needed_atol, statistics.needed_rtol) == ((), 0.0, 0.0)


def test_huge_errors_overflow_the_mean_to_inf_without_a_warning() -> None:
    """filterwarnings = error: a RuntimeWarning from the mean would fail this test."""
    statistics = statistics_of(np.array([1e308, 1e308, 0.0]))
    assert (statistics.abs_error.mean, statistics.abs_error.max) == (math.inf, 1e308)
    infinite = statistics_of(np.array([np.inf, np.inf, 1.0]))
    assert infinite.abs_error.max == math.inf and infinite.needed_atol == math.inf


def test_worst_elements_break_ties_by_first_index() -> None:
    errors = np.tile(np.array([0.0, 1.0]), 20)  # 20 ties of 1.0 at the odd indices
    worst = statistics_of(errors).worst
    assert [w.index for w in worst] == [(1,), (3,), (5,), (7,), (9,)]


def test_worst_elements_are_only_those_that_moved() -> None:
    expected = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], np.float32)
    actual = expected.copy()
    actual[1, 2] = 6.5
    actual[0, 1] = np.nextafter(np.float32(2.0), np.float32(3.0))
    statistics = compare_tensor("x", expected, actual, Tolerance(atol=0.0, rtol=0.0)).statistics
    assert statistics is not None
    step = float(actual[0, 1]) - 2.0
    assert statistics.worst == (
        WorstElement(index=(1, 2), expected=6.0, actual=6.5, abs_error=0.5, ulps=2**20),
        WorstElement(index=(0, 1), expected=2.0, actual=2.0 + step, abs_error=step, ulps=1),
    )
    assert (statistics.needed_atol, statistics.needed_rtol) == (0.5, 0.5 / 6.0)
    assert statistics.ulps.max == 2.0**20


def test_a_nan_error_is_kept_among_the_worst() -> None:
    """compare_tensor turns NaN errors into inf; given one directly, it is still listed (sorted last)."""
    worst = statistics_of(np.array([0.0, np.nan, 0.5])).worst
    assert [w.index for w in worst] == [(2,), (1,)] and math.isnan(worst[1].abs_error)


def test_histogram_lines_scale_to_the_largest_bin_and_show_any_count() -> None:
    statistics = dataclasses.replace(statistics_of(np.zeros(1)),
                                     histogram=(("exact", 0), ("<1e-09", 1000), (">=1e-02", 1), ("x", 500)))
    assert histogram_lines(statistics) == [
        "  exact | " + " " * 30 + " 0",
        " <1e-09 | " + "#" * 30 + " 1000",
        ">=1e-02 | " + "#" + " " * 29 + " 1",  # a count too small to scale still shows one mark
        "      x | " + "#" * 15 + " " * 15 + " 500",
    ]
    assert histogram_lines(statistics, width=4)[1:] == [" <1e-09 | #### 1000", ">=1e-02 | #    1", "      x | ##   500"]


def test_histogram_lines_of_nothing() -> None:
    statistics = statistics_of(np.zeros(0))
    assert histogram_lines(statistics, width=3) == [f"{label:>7} |     0" for label in LABELS]
    assert histogram_lines(dataclasses.replace(statistics, histogram=())) == []
