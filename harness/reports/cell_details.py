"""The details of one cell: its table entry, and every line a user needs to act on it when it fails.

A NONDETERMINISTIC cell reads as what it is: two runs of one prepared model must be bitwise equal, so it
names that rule, the largest difference between the runs (in ulps of the compared dtype), and which tensors
differ, how many elements and the index of each one's largest difference, with no tolerance histogram.
"""

from __future__ import annotations

import math

from harness.judging.compare import ORACLE, OracleDistance, TensorComparison
from harness.judging.results import CellResult
from harness.judging.statistics import ErrorStatistics, histogram_lines
from harness.reports.findings import changed_parameters_text
from harness.reports.localisation import localisation_lines
from harness.reports.text import printable_lines
from harness.reports.upstream_errors import detail_lines
from harness.verdicts import Cause, PastStatus, TensorStatus, Verdict

ULPS_UNBOUNDED = 2**64 - 1  # a NaN or an infinity against a number: no finite distance
PAST_MARKS = {PastStatus.UNCHANGED: "=", PastStatus.NEW: "?"}


def cell_text(cell: CellResult) -> str:
    """A short table entry: the verdict, max abs error and ulps, and the backend's own movement."""
    text = str(cell.verdict.value)
    if cell.verdict in (Verdict.CLOSE, Verdict.DRIFT):
        text += f" {cell.max_abs:.1e}/{ulps_text(cell.max_ulps)}u"
    if cell.past:
        text += f" ({PAST_MARKS.get(cell.past.status, f'+{cell.past.max_ulps}u')})"
    return text


def failure_lines(cell: CellResult, environment_changes: tuple[str, ...] = (), *,
                  reference: str = "the golden", verbose: bool = False) -> list[str]:
    """Everything a user needs to act on one failing cell, every line printable; `reference` names what it was
    compared with; `verbose`: the whole upstream error behind an ERROR, not only the lines that explain it."""
    return printable_lines(_failure_lines(cell, environment_changes, reference=reference, verbose=verbose))


def _failure_lines(cell: CellResult, environment_changes: tuple[str, ...] = (), *,
                   reference: str = "the golden", verbose: bool = False) -> list[str]:
    if cell.verdict is Verdict.NONDETERMINISTIC:
        return _nondeterministic_lines(cell, reference)
    tolerance = f" (tolerance {cell.tolerance.describe()})" if cell.tolerance else ""  # none: nothing was compared
    cause = f"; cause: {cell.cause.value}" if cell.cause else ""
    if cell.cause is Cause.WEIGHTS and cell.weights_changed:
        cause += f" ({changed_parameters_text(cell.weights_changed)})"
    argmax = ""
    if cell.argmax_changed is not None and cell.verdict is Verdict.DRIFT:
        argmax = ("; argmax unchanged" if cell.argmax_changed == 0
                  else f"; argmax changed at {cell.argmax_changed} positions")
    lines = [f"  {cell.config_id} x {cell.backend}: {cell.verdict.value}{tolerance}{cause}{argmax}"]
    if cell.reason:
        lines.append(f"    {cell.reason}")
    lines += detail_lines(cell, verbose=verbose)
    if cell.weights_changed and cell.cause is not Cause.WEIGHTS:  # the inputs changed first, or not a drift
        lines.append(f"    weights differ from the golden's: {changed_parameters_text(cell.weights_changed)}")
    if environment_changes:
        lines.append(f"    environment since the golden: {'; '.join(environment_changes)}")
    lines += [f"    invariant broken: {violation}" for violation in cell.invariant_violations]
    lines += [f"    {line}" for line in cell.analysis]
    lines += localisation_lines(cell)  # where in the stack a DRIFT starts
    if cell.past and cell.past.status is not PastStatus.NEW:
        lines.append(f"    own fingerprint: {cell.past.summary}")
    if cell.runtime_finding:
        lines.append(f"    same export, two runtimes: {cell.runtime_finding}")
    if cell.artifact_check and cell.artifact_check.changed:
        lines.append(f"    artifact: {cell.artifact_check.cause.value}: {cell.artifact_check.summary}")
        lines += [f"      structure: {line}" for line in cell.artifact_check.structure_diff]
    if cell.oracle and not cell.golden_oracle:  # a user's model: today's code gives the reference (no oracle)
        lines.append(f"    {cell.oracle.reference}: this result is {distance_text(cell.oracle)} from it")
    elif cell.oracle and cell.golden_oracle:
        label = "float64 oracle" if cell.oracle.reference == ORACLE else cell.oracle.reference
        # The reference is computed from today's weights and inputs: after they changed it cannot say who moved.
        verdict = (f": computed from today's {cell.cause.value.split()[0]}, so it cannot say which side moved"
                   if cell.cause in (Cause.WEIGHTS, Cause.INPUTS) else
                   _who_moved(cell.oracle, cell.golden_oracle, reference))
        lines.append(f"    {label}: this result is {distance_text(cell.oracle)} from it, "
                     f"{reference} {distance_text(cell.golden_oracle)}{verdict}")
    lines += [f"    {line}" for tensor in cell.tensors for line in _tensor_lines(tensor, reference=reference)]
    if cell.repeat:
        lines.append("    two runs of the same prepared model differ:")
        lines += [f"      {line}" for tensor in cell.repeat if not tensor.passed for line in _tensor_lines(tensor)]
    return lines


BITWISE_RULE = "two runs of the same prepared model must be bitwise equal (no tolerance applies)"


def _nondeterministic_lines(cell: CellResult, reference: str) -> list[str]:
    """The rule broken, the largest difference between the two runs in ulps of the compared dtype, which tensors
    differ (each at the index of its largest difference); how the first run compares with the reference in one
    line per failing tensor."""
    differing = [tensor for tensor in cell.repeat if not tensor.passed]
    largest = max(differing, key=lambda tensor: tensor.max_abs, default=None)
    lines = [f"  {cell.config_id} x {cell.backend}: NONDETERMINISTIC: {BITWISE_RULE}"]
    if largest is not None:
        lines.append(f"    largest difference between the two runs: {largest.max_abs:.2e} "
                     f"({ulps_text(largest.max_ulps)} ulps of {largest.expected_dtype}) in {largest.name}")
    for tensor in differing:
        if tensor.layout_problem:
            lines += [f"    {line}" for line in _tensor_lines(tensor, reference="the first run")]
            continue
        lines.append(f"    {tensor.name}: {tensor.mismatched}/{tensor.total} elements differ, largest "
                     f"{tensor.max_abs:.2e} ({ulps_text(tensor.max_ulps)} ulps) at index {tensor.worst_index}: "
                     f"{tensor.worst_expected!r} then {tensor.worst_actual!r}")
    lines += [f"    {line}" for line in cell.analysis]
    for tensor in cell.tensors:
        if not tensor.passed:
            lines.append(f"    against {reference}: {_tensor_lines(tensor, reference=reference)[0].strip()}")
    return lines


def tensor_lines(tensor: TensorComparison, *, reference: str = "the golden") -> list[str]:
    """One printable line for a passing tensor, more for a failing one."""
    return printable_lines(_tensor_lines(tensor, reference=reference))


def _tensor_lines(tensor: TensorComparison, *, reference: str = "the golden") -> list[str]:
    name = tensor.name.ljust(6)
    if tensor.status is TensorStatus.MISSING:
        return [f"{name} missing: expected {tensor.expected_shape} {tensor.expected_dtype}, not produced"]
    if tensor.status is TensorStatus.UNEXPECTED:
        return [f"{name} unexpected: produced {tensor.actual_shape} {tensor.actual_dtype}, not in {reference}"]
    if tensor.status is TensorStatus.SHAPE:
        diagnosis = [f"       diagnosis: {tensor.diagnosis}"] if tensor.diagnosis else []
        return [f"{name} SHAPE: expected {tensor.expected_shape} {tensor.expected_dtype}, "
                f"got {tensor.actual_shape} {tensor.actual_dtype}", *diagnosis]
    non_finite = _non_finite_lines(tensor, reference)
    if tensor.status is TensorStatus.IDENTICAL:
        return [f"{name} identical {tensor.expected_shape} {tensor.expected_dtype}", *non_finite]
    share = 100.0 * tensor.mismatched / tensor.total if tensor.total else 0.0
    summary = (f"{name} {tensor.status.value}: {tensor.mismatched}/{tensor.total} elements ({share:.1f}%) "
               f"outside tolerance; max abs {tensor.max_abs:.3e}, max rel {tensor.max_rel:.3e}, "
               f"{ulps_text(tensor.max_ulps)} ulps")
    if tensor.status is TensorStatus.CLOSE or tensor.statistics is None:
        return [summary, *non_finite]
    return [summary, *non_finite, f"       worst at index {tensor.worst_index}: expected {tensor.worst_expected!r}, "
                                  f"actual {tensor.worst_actual!r}", *_statistics_lines(tensor.statistics)]


def _non_finite_lines(tensor: TensorComparison, reference: str) -> list[str]:
    """Where NaN/inf stand, in the golden and in the result: count and first index."""
    parts = [f"{side} has {counts.count} non-finite (first at {counts.first_index})"
             for side, counts in ((reference, tensor.expected_non_finite), ("the result", tensor.actual_non_finite))
             if counts is not None]
    return [f"       non-finite values: {'; '.join(parts)}"] if parts else []


def ulps_text(ulps: int) -> str:
    """A distance in ulps; "max" for a NaN or an infinity against a number."""
    return "max" if ulps == ULPS_UNBOUNDED else str(ulps)


def _statistics_lines(statistics: ErrorStatistics) -> list[str]:
    """The rich view of a failing tensor's error."""
    indent = " " * 7
    abs_error, ulps = statistics.abs_error, statistics.ulps
    lines = [
        f"{indent}abs error: mean {abs_error.mean:.2e}, median {abs_error.median:.2e}, p90 {abs_error.p90:.2e}, "
        f"p99 {abs_error.p99:.2e}, max {abs_error.max:.2e}; rel error max {statistics.rel_error.max:.2e}; "
        f"ulps median {ulps.median:.0f}, p99 {ulps.p99:.0f}, max {ulps.max:.0f}",
        f"{indent}would pass with atol >= {statistics.needed_atol:.2e} (rtol 0) "
        f"or rtol >= {statistics.needed_rtol:.2e} (atol 0)",
        f"{indent}|error| histogram:",
        *(f"{indent}  {line}" for line in histogram_lines(statistics)),
        f"{indent}worst elements (index: expected -> actual, abs error, ulps):",
    ]
    lines += [f"{indent}  {element.index}: {element.expected!r} -> {element.actual!r}, "
              f"{element.abs_error:.2e}, {element.ulps}" for element in statistics.worst]
    return lines


def _who_moved(result: OracleDistance, golden: OracleDistance, reference: str = "the golden") -> str:
    """Which side of the disagreement moved away from the mathematics (a factor of 10 to say so)."""
    if math.isnan(result.max_abs) or math.isnan(golden.max_abs):
        side = reference if math.isnan(golden.max_abs) else "this result"
        return f": not comparable, {side} holds NaN"
    truth = "the mathematics" if result.reference == ORACLE else "the float64 computation"
    if result.max_abs > 10 * golden.max_abs:
        return f": this result moved away from {truth}"
    if golden.max_abs > 10 * result.max_abs:
        return f": {reference} is the one away from {truth}"
    return ": both are as close to it"


def distance_text(distance: OracleDistance) -> str:
    """A distance to the oracle: its max abs error, and ulps in the result's own dtype. Zero ulps from a non-zero
    error is the oracle rounding to the result itself: said so, not as "(0 ulps)" beside an error."""
    if distance.max_ulps == 0 and distance.max_abs > 0:
        return f"{distance.max_abs:.1e} (under 1 ulp of the result's dtype: the oracle rounds to it)"
    return f"{distance.max_abs:.1e} ({ulps_text(distance.max_ulps)} ulps)"
