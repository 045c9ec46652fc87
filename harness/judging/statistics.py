"""Error statistics people can read: percentiles, a log-scale histogram, the worst elements,
and the tolerance that would have passed. Pure NumPy; no I/O."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WORST_COUNT = 5
# Histogram of |actual - expected|: exact, then one decade per bin up to these edges, then >= 1e-2.
HISTOGRAM_UPPER_EDGES = (1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)


@dataclass(frozen=True, kw_only=True)
class Percentiles:
    mean: float
    median: float
    p90: float
    p99: float
    max: float


@dataclass(frozen=True, kw_only=True)
class WorstElement:
    index: tuple[int, ...]
    expected: float
    actual: float
    abs_error: float
    ulps: int


@dataclass(frozen=True, kw_only=True)
class ErrorStatistics:
    """Everything worth knowing about the error of one tensor, computed once."""

    abs_error: Percentiles
    rel_error: Percentiles
    ulps: Percentiles
    histogram: tuple[tuple[str, int], ...]  # (bin label, count)
    worst: tuple[WorstElement, ...]
    needed_atol: float  # the smallest atol that passes with rtol = 0
    needed_rtol: float  # the smallest rtol that passes with atol = 0 (inf when an exact zero moved)


def error_statistics(
    expected: np.ndarray, actual: np.ndarray, abs_error: np.ndarray, rel_error: np.ndarray, ulps: np.ndarray
) -> ErrorStatistics:
    """Statistics of precomputed elementwise errors (all arrays of one shape)."""
    order = np.argsort(-abs_error, axis=None, kind="stable")[:WORST_COUNT]  # ties: first index first
    worst = tuple(
        WorstElement(
            index=tuple(int(i) for i in np.unravel_index(int(flat), abs_error.shape)),
            expected=float(expected.flat[flat]), actual=float(actual.flat[flat]),
            abs_error=float(abs_error.flat[flat]), ulps=int(ulps.flat[flat]),
        )
        for flat in order
        if abs_error.flat[flat] > 0 or np.isnan(abs_error.flat[flat])
    )
    return ErrorStatistics(
        abs_error=_percentiles(abs_error),
        rel_error=_percentiles(rel_error),
        ulps=_percentiles(ulps.astype(np.float64)),
        histogram=_histogram(abs_error),
        worst=worst,
        needed_atol=float(abs_error.max(initial=0.0)),
        needed_rtol=float(rel_error.max(initial=0.0)),
    )


def _percentiles(values: np.ndarray) -> Percentiles:
    flat = values.ravel()
    if flat.size == 0:
        return Percentiles(mean=0.0, median=0.0, p90=0.0, p99=0.0, max=0.0)
    with np.errstate(invalid="ignore", over="ignore"):  # inf errors (an exact zero that moved) are kept
        p50, p90, p99 = np.percentile(flat, [50, 90, 99])
        mean = float(np.mean(flat))
    return Percentiles(mean=mean, median=float(p50), p90=float(p90), p99=float(p99), max=float(flat.max()))


def _histogram(abs_error: np.ndarray) -> tuple[tuple[str, int], ...]:
    """Counts per bin: exact, (0, 1e-9), [1e-9, 1e-8), ..., [1e-3, 1e-2), >= 1e-2."""
    flat = abs_error.ravel()
    bins = [("exact", int(np.count_nonzero(flat == 0)))]
    lows = (0.0, *HISTOGRAM_UPPER_EDGES[:-1])
    for low, high in zip(lows, HISTOGRAM_UPPER_EDGES, strict=True):
        inside = (flat > low) & (flat < high) if low == 0.0 else (flat >= low) & (flat < high)
        bins.append((f"<{high:.0e}", int(np.count_nonzero(inside))))
    bins.append((f">={HISTOGRAM_UPPER_EDGES[-1]:.0e}", int(np.count_nonzero(flat >= HISTOGRAM_UPPER_EDGES[-1]))))
    return tuple(bins)


def histogram_lines(statistics: ErrorStatistics, width: int = 30) -> list[str]:
    """A short text histogram of |error| by decade, as Polygraphy prints value histograms."""
    largest = max((count for _, count in statistics.histogram), default=0) or 1
    return [
        f"{label:>7} | {'#' * max(1 if count else 0, round(width * count / largest)):<{width}} {count}"
        for label, count in statistics.histogram
    ]
