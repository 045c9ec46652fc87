"""The terminal report: a config x backend verdict table, then details for every failure."""

from __future__ import annotations

import math
from collections import defaultdict

from harness.judging.compare import FLOAT64_EAGER, ORACLE, OracleDistance, TensorComparison
from harness.judging.results import CellResult, RunReport, WeightsChange
from harness.judging.statistics import ErrorStatistics, histogram_lines
from harness.reports.text import counted, printable_lines, text_table
from harness.reports.upstream_errors import detail_lines, resolved_limitation_lines
from harness.verdicts import NO_AUTOGRAD, Cause, PastStatus, TensorStatus, Verdict

NAMED_PARAMETERS = 3  # a changed-weights line names this many parameters, then "and N more"
ULPS_UNBOUNDED = 2**64 - 1  # a NaN or an infinity against a number: no finite distance
PAST_MARKS = {PastStatus.UNCHANGED: "=", PastStatus.NEW: "?"}
LEGEND = ("  each cell: verdict vs the golden, max abs error/max ulps; then vs the backend's own recorded "
          "fingerprint: (=) bitwise unchanged, (+Nu) moved by N ulps, (?) none recorded")
REPLAY_LEGEND = ("  each cell: the stored artifact run now vs the golden, max abs error/max ulps; then vs what it "
                 "computed when recorded: (=) bitwise unchanged, (+Nu) moved by N ulps (the runtime moved)")
CHECK_LEGEND = "  each cell: verdict vs eager CPU computed in this run (the reference), max abs error/max ulps"


def cell_text(cell: CellResult) -> str:
    """A short table entry: the verdict, max abs error and ulps, and the backend's own movement."""
    text = str(cell.verdict.value)
    if cell.verdict in (Verdict.CLOSE, Verdict.DRIFT):
        text += f" {cell.max_abs:.1e}/{_ulps(cell.max_ulps)}u"
    if cell.past:
        text += f" ({PAST_MARKS.get(cell.past.status, f'+{cell.past.max_ulps}u')})"
    return text


def report_lines(report: RunReport, *, verbose: bool = False) -> list[str]:
    """The whole terminal report, every line printable (text from goldens and upstream errors escaped there);
    passing runs stay short, -v (verbose) adds every detail."""
    legend = REPLAY_LEGEND if report.replay else CHECK_LEGEND if report.live_reference else LEGEND
    lines = [*_header(report), "", *_table(report), legend]
    lines += [f"  {name} settings: " + ", ".join(f"{key}={value}" for key, value in settings.items())
              for name, settings in report.backend_settings.items()]
    failures = [cell for cell in report.failures if cell.verdict is not Verdict.MISSING]
    if failures:
        lines += ["", "Failures:"]
        for cell in failures:
            lines += _failure_lines(cell, report.environment_changes.get(cell.config_id, ()),
                                    reference="the reference" if report.live_reference else "the golden",
                                    verbose=verbose)
    lines += _missing(report) + _stale(report) + _leftovers(report) + _warnings(report) + weights_warnings(report)
    lines += resolved_limitation_lines(report)
    lines += _calibrated(report) + _moved(report) + _artifacts(report) + _cache(report, verbose=verbose)
    lines += _oracle_summary(report) + _not_compared(report, verbose=verbose)
    lines += _upstream_findings(report, verbose=verbose) + _environment_changes(report, verbose=verbose)
    lines += ["", summary_line(report)]
    return printable_lines(lines)


def _missing(report: RunReport) -> list[str]:
    missing = list(dict.fromkeys(cell.config_id for cell in report.cells if cell.verdict is Verdict.MISSING))
    if not missing:
        return []
    record = report.hints.get("record", "harness record")
    return ["", f"Missing goldens ({counted(len(missing), 'config')}; every other cell was judged; exit 2):",
            *(f"  {config_id}" for config_id in missing),
            f"  record them: {record} " + " ".join(f"--config {config_id}" for config_id in missing)]


def _calibrated(report: RunReport) -> list[str]:
    """Each low-precision config's tolerance, and how it was derived (it differs per golden)."""
    tolerances = {cell.config_id: cell.tolerance for cell in report.cells
                  if cell.tolerance is not None and cell.tolerance.derivation}
    if not tolerances:
        return []
    return ["", "Tolerances not from the table (float16/bfloat16: calibrated on the float64 oracle, per golden):",
            *(f"  {config_id}: {tolerance.describe()}" for config_id, tolerance in tolerances.items())]


def _artifacts(report: RunReport) -> list[str]:
    """Exported backends whose stored artifact or fresh export moved (failing cells say it in their details)."""
    changed = [cell for cell in report.cells if cell.artifact_check and cell.artifact_check.changed]
    if not changed:
        return []
    lines = ["", "Stored artifacts against fresh exports (which of exporter and runtime moved since recording):"]
    for cell in changed:
        check = cell.artifact_check
        assert check is not None
        lines.append(f"  {cell.config_id} x {cell.backend}: {check.cause.value}: {check.summary}")
        lines += [f"    structure: {line}" for line in check.structure_diff]
    return lines


def _cache(report: RunReport, *, verbose: bool) -> list[str]:
    """Which cells' exports came from the export cache, and any entry that was discarded and rebuilt."""
    sourced = [cell for cell in report.cells if cell.artifact_source]
    if not sourced or report.replay:
        return []
    hits = [cell for cell in sourced if cell.artifact_source == "cache"]
    rebuilt = [cell for cell in sourced if "discarded" in cell.artifact_source]
    unusable = any(warning.startswith("export cache off") for warning in report.warnings)
    off = "export cache off (see the warning above)" if unusable else "export cache off (--no-cache)"
    where = f"export cache {report.cache_dir}" if report.cache_dir else off
    lines = ["", f"{where}: {counted(len(hits), 'cell')} loaded from it, {len(sourced) - len(hits)} exported now"]
    lines += [f"  rebuilt {cell.config_id} x {cell.backend}: {cell.artifact_source}" for cell in rebuilt]
    if verbose:
        lines += [f"  {cell.config_id} x {cell.backend}: {cell.artifact_source}" for cell in sourced
                  if cell not in rebuilt]
    return lines


def _leftovers(report: RunReport) -> list[str]:
    if not report.leftovers:
        return []
    return ["", f"Files no manifest refers to in {report.golden_dir} (temporary or orphaned, as an interrupted "
                f"record leaves them; the next record removes them):",
            *(f"  {path}" for path in report.leftovers)]


def changed_parameters_text(change: WeightsChange) -> str:
    """Which parameters changed: the first few by name, then how many more; or why none can be named."""
    if not change.named:
        return "the golden predates per-parameter sha256 (harness.golden/3), so no parameter can be named"
    if not change.parameters:
        return "no parameter's sha256 differs from the golden's: their order changed"
    more = len(change.parameters) - NAMED_PARAMETERS
    return ", ".join(change.parameters[:NAMED_PARAMETERS]) + (f" and {more} more" if more > 0 else "")


def weights_warnings(report: RunReport) -> list[str]:
    """One warning line per config whose weights are not the golden's though its cells pass (a change of weights
    small enough for the tolerance is still a change of model); failing cells say it in their details."""
    passing: dict[str, list[CellResult]] = defaultdict(list)
    for cell in report.cells:
        if cell.weights_changed is not None and not cell.verdict.failing:
            passing[cell.config_id].append(cell)
    lines = []
    for config_id, cells in passing.items():
        change = cells[0].weights_changed
        assert change is not None
        backends = ", ".join(cell.backend for cell in cells)
        lines.append(f"Warning: {config_id}: weights differ from the golden's, yet it passes on {backends}; "
                     f"changed: {changed_parameters_text(change)}")
    return ["", *lines] if lines else []


def _warnings(report: RunReport) -> list[str]:
    return ["", *(f"Warning: {warning}" for warning in report.warnings)] if report.warnings else []


def _stale(report: RunReport) -> list[str]:
    if not report.stale:
        return []
    prune = report.hints.get("prune", "harness prune")
    return ["", f"Stale goldens ({counted(len(report.stale), 'golden')} in {report.golden_dir} used by no config "
                f"of the suite; not failing):", *(f"  {config_id}" for config_id in report.stale),
            f"  list their files: {prune}; delete them: {prune} --yes"]


def _header(report: RunReport) -> list[str]:
    packages = report.environment.packages
    versions = ", ".join(f"{name} {packages.get(name, '?')}" for name in ("torch", "onnxruntime", "onnx", "numpy"))
    return [
        f"harness: {counted(len(report.config_ids), 'config')} x {counted(len(report.backends), 'backend')}; "
        f"suite {report.suite}; "
        + ("reference: eager CPU computed in this run" if report.live_reference else f"golden {report.golden_dir}")
        + ("; replaying the stored artifacts" if report.replay else ""),
        f"  {versions}; torch threads {report.environment.torch_threads}; {report.environment.cpu}",
    ]


def _table(report: RunReport) -> list[str]:
    by_key = {(cell.config_id, cell.backend): cell for cell in report.cells}
    header = ["config", *report.backends]
    rows = [
        [config_id, *(cell_text(by_key[(config_id, b)]) if (config_id, b) in by_key else "-" for b in report.backends)]
        for config_id in report.config_ids
    ]
    return text_table(header, rows)


def failure_lines(cell: CellResult, environment_changes: tuple[str, ...] = (), *,
                  reference: str = "the golden", verbose: bool = False) -> list[str]:
    """Everything a user needs to act on one failing cell, every line printable; `reference` names what it was
    compared with; `verbose`: the whole upstream error behind an ERROR, not only the lines that explain it."""
    return printable_lines(_failure_lines(cell, environment_changes, reference=reference, verbose=verbose))


def _failure_lines(cell: CellResult, environment_changes: tuple[str, ...] = (), *,
                   reference: str = "the golden", verbose: bool = False) -> list[str]:
    tolerance = cell.tolerance.describe() if cell.tolerance else "-"
    cause = f"; cause: {cell.cause.value}" if cell.cause else ""
    if cell.cause is Cause.WEIGHTS and cell.weights_changed:
        cause += f" ({changed_parameters_text(cell.weights_changed)})"
    argmax = ""
    if cell.argmax_changed is not None and cell.verdict is Verdict.DRIFT:
        argmax = ("; argmax unchanged" if cell.argmax_changed == 0
                  else f"; argmax changed at {cell.argmax_changed} positions")
    lines = [f"  {cell.config_id} x {cell.backend}: {cell.verdict.value} (tolerance {tolerance}){cause}{argmax}"]
    if cell.reason:
        lines.append(f"    {cell.reason}")
    lines += detail_lines(cell, verbose=verbose)
    if cell.weights_changed and cell.cause is not Cause.WEIGHTS:  # the inputs changed first, or not a drift
        lines.append(f"    weights differ from the golden's: {changed_parameters_text(cell.weights_changed)}")
    if environment_changes:
        lines.append(f"    environment since the golden: {'; '.join(environment_changes)}")
    lines += [f"    invariant broken: {violation}" for violation in cell.invariant_violations]
    lines += [f"    {line}" for line in cell.analysis]
    if cell.past and cell.past.status is not PastStatus.NEW:
        lines.append(f"    own fingerprint: {cell.past.summary}")
    if cell.runtime_finding:
        lines.append(f"    same export, two runtimes: {cell.runtime_finding}")
    if cell.artifact_check and cell.artifact_check.changed:
        lines.append(f"    artifact: {cell.artifact_check.cause.value}: {cell.artifact_check.summary}")
        lines += [f"      structure: {line}" for line in cell.artifact_check.structure_diff]
    if cell.oracle and not cell.golden_oracle:  # a user's model: today's code gives the reference (no oracle)
        lines.append(f"    {cell.oracle.reference}: this result is {_distance(cell.oracle)} from it")
    elif cell.oracle and cell.golden_oracle:
        label = "float64 oracle" if cell.oracle.reference == ORACLE else cell.oracle.reference
        # The reference is computed from today's weights and inputs: after they changed it cannot say who moved.
        verdict = (f": computed from today's {cell.cause.value.split()[0]}, so it cannot say which side moved"
                   if cell.cause in (Cause.WEIGHTS, Cause.INPUTS) else
                   _who_moved(cell.oracle, cell.golden_oracle, reference))
        lines.append(f"    {label}: this result is {_distance(cell.oracle)} from it, "
                     f"{reference} {_distance(cell.golden_oracle)}{verdict}")
    lines += [f"    {line}" for tensor in cell.tensors for line in _tensor_lines(tensor, reference=reference)]
    if cell.repeat:
        lines.append("    two runs of the same prepared model differ:")
        lines += [f"      {line}" for tensor in cell.repeat if not tensor.passed for line in _tensor_lines(tensor)]
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
               f"{_ulps(tensor.max_ulps)} ulps")
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


def _ulps(ulps: int) -> str:
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


def _moved(report: RunReport) -> list[str]:
    """Cells whose backend moved since the golden was recorded, though the verdict may still pass."""
    moved = [cell for cell in report.cells if cell.past and cell.past.status is PastStatus.MOVED
             and not cell.verdict.failing]
    if not moved:
        return []
    lines = ["", f"Moved since the goldens were recorded, still within tolerance ({counted(len(moved), 'cell')}):"]
    lines += [f"  {cell.config_id} x {cell.backend}: {cell.past.summary}" for cell in moved if cell.past]
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


def _distance(distance: OracleDistance) -> str:
    return f"{distance.max_abs:.1e} ({distance.max_ulps} ulps)"


def _oracle_summary(report: RunReport) -> list[str]:
    """Per backend, the worst distance to the float64 oracle over every compared config; then, for the configs
    no oracle covers (users' models, gradients, training), the worst distance to float64 eager torch."""
    lines = []
    for reference in (ORACLE, FLOAT64_EAGER):
        worst: dict[str, tuple[OracleDistance, str]] = {}
        for cell in report.cells:
            distance = cell.oracle
            if distance and distance.reference == reference and (
                    cell.backend not in worst or distance.max_abs > worst[cell.backend][0].max_abs):
                worst[cell.backend] = (distance, cell.config_id)
        if worst:
            heading = ("the float64 NumPy oracle" if reference == ORACLE else
                       "float64 eager torch, where no oracle applies (users' models, gradients, training)")
            lines += ["", f"Distance to {heading} (worst config per backend):"]
            lines += [f"  {backend}: {_distance(distance)} at {config_id}"
                      for backend, (distance, config_id) in worst.items()]
    return lines


def _not_compared(report: RunReport, *, verbose: bool = False) -> list[str]:
    lines = []
    unsupported = [cell for cell in report.cells if cell.verdict is Verdict.UNSUPPORTED]
    if unsupported:
        lines += ["", f"Unsupported ({counted(len(unsupported), 'cell')}; known limitations, or recorded with a "
                      "user's model's golden; tried and confirmed):"]
        forward_only: dict[str, list[str]] = defaultdict(list)  # one line per forward-only backend, not per cell
        for cell in unsupported:
            if NO_AUTOGRAD in cell.reason:
                forward_only[cell.backend].append(cell.config_id)
                continue
            reason = f"{cell.verdict.value} ({cell.reason})" if cell.limitation else cell.reason
            lines.append(f"  {cell.config_id} x {cell.backend}: {reason}")
            if cell.limitation or verbose:  # a built-in known limitation's reason says enough (-v: the error)
                lines += detail_lines(cell, verbose=verbose, indent="    ")
        lines += [f"  {backend}: {NO_AUTOGRAD} (it computes the forward pass only): "
                  f"{counted(len(ids), 'gradient/training config')}, {', '.join(ids)}"
                  for backend, ids in forward_only.items()]
    slow = [cell for cell in report.cells if cell.verdict is Verdict.SLOW]
    if slow:
        lines += ["", f"Left out as slow ({counted(len(slow), 'cell')}; run with --all to include them):"]
        lines += _slow_lines(report, slow)
    if report.unavailable:
        lines += ["", "Backends unavailable here:"]
        lines += [f"  {name}: {reason}" for name, reason in report.unavailable.items()]
    return lines


def _slow_lines(report: RunReport, slow: list[CellResult]) -> list[str]:
    """Per backend, its slow configs; a backend slow on most configs names the ones it does run instead."""
    by_backend: dict[str, list[str]] = defaultdict(list)
    for cell in slow:
        by_backend[cell.backend].append(cell.config_id)
    lines = []
    for backend, ids in by_backend.items():
        ran = [config_id for config_id in report.config_ids if config_id not in ids]
        listed = ("every config" if not ran else f"every config but {', '.join(ran)}"
                  if len(ids) > len(report.config_ids) / 2 else ", ".join(ids))
        lines.append(f"  {backend} ({counted(len(ids), 'config')}): {listed}")
    return lines


def _upstream_findings(report: RunReport, *, verbose: bool) -> list[str]:
    """Distinct upstream warnings per backend: one summary line, every one of them under -v."""
    counts = report.upstream_counts()
    if not counts:
        return []
    backends = list(dict.fromkeys(backend for backend, _ in counts))
    if not verbose:
        return ["", f"Upstream findings: {counted(len(counts), 'distinct warning')} from torch / onnx / onnxruntime "
                    f"while preparing {', '.join(backends)} "
                    "(-v lists them; so does the JSON report, under upstream_findings)"]
    lines = ["", "Upstream findings (warnings raised by torch / onnx / onnxruntime while preparing):"]
    for (backend, note), count in counts.items():
        lines.append(f"  {backend} ({counted(count, 'cell')}): {_shorten(note, 160)}")
    return lines


def _environment_changes(report: RunReport, *, verbose: bool) -> list[str]:
    """What changed since the goldens that can change bits; under -v also the rest (platform, python)."""
    sections = [("Environment now vs. when the goldens were recorded (what can change bits):",
                 report.environment_changes)]
    if verbose:
        sections.append(("Other environment differences (context):", report.environment_context))
    lines: list[str] = []
    for title, changes_by_config in sections:
        grouped: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for config_id, changes in changes_by_config.items():
            grouped[changes].append(config_id)
        if grouped:
            lines += ["", title]
            lines += [f"  {counted(len(ids), 'golden')}: " + "; ".join(changes) for changes, ids in grouped.items()]
    return lines


def summary_line(report: RunReport) -> str:
    counts = ", ".join(f"{report.count(verdict)} {verdict.value}" for verdict in Verdict if report.count(verdict))
    status = "FAILED" if report.failures else "OK"
    return (f"{status}: {counted(len(report.cells), 'cell')}: {counts or 'none'}; "
            f"{report.wall_seconds:.1f} s; exit {report.exit_code}")


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
