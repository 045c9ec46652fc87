"""The terminal report: a config x backend verdict table, then details for every failure."""

from __future__ import annotations

from collections import defaultdict

from harness.judging.compare import FLOAT64_EAGER, ORACLE, OracleDistance
from harness.judging.results import CellResult, RunReport
from harness.reports.cell_details import _failure_lines, distance_text
from harness.reports.cell_details import cell_text as cell_text  # re-exported: the report files import it from here
from harness.reports.cell_details import failure_lines as failure_lines
from harness.reports.cell_details import tensor_lines as tensor_lines
from harness.reports.findings import accept_command, changed_parameters_text, findings
from harness.reports.relations import relation_lines
from harness.reports.summary import (
    DEFAULT_WIDTH,
    backend_summary_lines,
    folded_table,
    shortened,
    slow_line,
    unsupported_group_lines,
)
from harness.reports.text import counted, printable_lines
from harness.reports.upstream_errors import detail_lines, resolved_limitation_lines
from harness.verdicts import NO_AUTOGRAD, PastStatus, Verdict

LEGEND = ("  each cell: verdict vs the golden, max abs error/max ulps; then vs the backend's own recorded "
          "fingerprint: (=) bitwise unchanged, (+Nu) moved by N ulps, (?) none recorded")
REPLAY_LEGEND = ("  each cell: the stored artifact run now vs the golden, max abs error/max ulps; then vs what it "
                 "computed when recorded: (=) bitwise unchanged, (+Nu) moved by N ulps (the runtime moved)")
# CellResult.artifact_source, as harness.session.artifacts.obtain writes it
CACHE_EARLIER = "cache"  # an entry an earlier run (or another process) wrote
CACHE_THIS_RUN = "cache (exported earlier in this run)"  # another cell of this run made the same export
CHECK_LEGEND = "  each cell: verdict vs eager CPU computed in this run (the reference), max abs error/max ulps"


def report_lines(report: RunReport, *, verbose: bool = False, table: bool = False,
                 width: int = DEFAULT_WIDTH) -> list[str]:
    """The terminal report, every line printable (text from goldens and upstream errors escaped there). A passing
    run fits a screen: one line per backend, unsupported cells grouped by reason, the environment and the summary.
    `table` adds the config x backend table folded to `width`; `verbose` (-v) adds every detail: the table, each
    failing cell of a finding, every unsupported cell, the calibrations and the oracle distances."""
    failing = bool(report.failures)
    lines = _header(report, width)
    bad_input = any(cell.verdict.bad_input for cell in report.cells)  # a corrupt golden: show what was judged
    if verbose or table or bad_input:
        legend = REPLAY_LEGEND if report.replay else CHECK_LEGEND if report.live_reference else LEGEND
        lines += ["", *folded_table(report, width=width), legend]
        lines += [f"  {name} settings: " + ", ".join(f"{key}={value}" for key, value in settings.items())
                  for name, settings in report.backend_settings.items()]
    lines += ["", *backend_summary_lines(report, width)]
    lines += _failures(report, verbose=verbose)
    lines += _missing(report) + _stale(report) + _leftovers(report) + _warnings(report) + weights_warnings(report)
    lines += resolved_limitation_lines(report) + relation_lines(report, verbose=verbose, table=table, width=width)
    if verbose or failing:
        lines += _calibrated(report)
    lines += _moved(report, verbose=verbose) + _artifacts(report) + _cache(report, verbose=verbose, width=width)
    if verbose or failing:
        lines += _oracle_summary(report)
    if verbose:
        lines += _not_compared(report, verbose=verbose)
    else:
        lines += unsupported_group_lines(report, width=width) + _slow_and_unavailable(report)
    lines += _upstream_findings(report, verbose=verbose, width=width) + _environment_changes(report, verbose=verbose)
    lines += ["", summary_line(report)]
    return printable_lines(lines)


def _failures(report: RunReport, *, verbose: bool) -> list[str]:
    """The failing cells grouped by cause: each finding lists its cells, then the details of its first cell (of
    every cell with -v); then the command that accepts them all."""
    found = findings(report)
    if not found:
        return []
    cells = sum(len(finding.cells) for finding in found)
    reference = "the reference" if report.live_reference else "the golden"
    lines = ["", f"Failures ({counted(cells, 'cell')}, {counted(len(found), 'finding')}; one finding per cause):"]
    for number, finding in enumerate(found, 1):
        lines.append(f"[{number}] {finding.heading(full=verbose)}")
        shown = finding.cells if verbose else finding.cells[:1]
        if len(finding.cells) > 1 and not verbose:
            lines.append(f"  the details of {shown[0].config_id} x {shown[0].backend} (those of all "
                         f"{counted(len(finding.cells), 'cell')}: -v, or the HTML report):")
        for cell in shown:
            lines += _failure_lines(cell, report.environment_changes.get(cell.config_id, ()),
                                    reference=reference, verbose=verbose)
    accept = accept_command(report)
    if accept:
        lines += ["", f"Accept these results (re-record the failing configs' goldens): {accept}"]
    return lines


def _slow_and_unavailable(report: RunReport) -> list[str]:
    lines = slow_line(report)
    lines += [f"Unavailable here: {name}: {reason}" for name, reason in report.unavailable.items()]
    return ["", *lines] if lines else []


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


def _cache(report: RunReport, *, verbose: bool, width: int = DEFAULT_WIDTH) -> list[str]:
    """Which cells' exports came from the export cache (written by an earlier run, or shared with a cell of this
    run exporting the same model), and any entry that was discarded and rebuilt."""
    sourced = [cell for cell in report.cells if cell.artifact_source]
    if not sourced or report.replay:
        return []
    earlier = [cell for cell in sourced if cell.artifact_source == CACHE_EARLIER]
    shared = [cell for cell in sourced if cell.artifact_source == CACHE_THIS_RUN]
    rebuilt = [cell for cell in sourced if "discarded" in cell.artifact_source]
    unusable = any(warning.startswith("export cache off") for warning in report.warnings)
    off = "export cache off (see the warning above)" if unusable else "export cache off (--no-cache)"
    where = f"export cache {report.cache_dir}" if report.cache_dir else off
    exported = len(sourced) - len(earlier) - len(shared)
    counts = f"{counted(len(earlier), 'cell')} loaded from earlier runs, {exported} exported now" + (
        f", {len(shared)} sharing an export made in this run" if shared else "")
    line = f"{where}: {counts}"
    if len(line) > width and report.cache_dir:  # the directory on a line of its own, with -v
        line = f"export cache: {counts}" + (f"\n  (in {report.cache_dir})" if verbose else "")
    lines = ["", *line.split("\n")]
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


def _header(report: RunReport, width: int) -> list[str]:
    """What ran against what, and the versions; the golden directory on a line of its own when one is too wide."""
    packages = report.environment.packages
    versions = ", ".join(f"{name} {packages.get(name, '?')}" for name in ("torch", "onnxruntime", "onnx", "numpy"))
    what = (f"harness: {counted(len(report.config_ids), 'config')} x {counted(len(report.backends), 'backend')}; "
            f"suite {report.suite}")
    against = (("reference: eager CPU computed in this run" if report.live_reference else f"golden {report.golden_dir}")
               + ("; replaying the stored artifacts" if report.replay else ""))
    lines = [f"{what}; {against}"] if len(what) + 2 + len(against) <= width else [what, f"  {against}"]
    return [*lines, f"  {versions}; torch threads {report.environment.torch_threads}; {report.environment.cpu}"]


def _moved(report: RunReport, *, verbose: bool) -> list[str]:
    """Cells whose backend moved since the golden was recorded, though the verdict may still pass: counted in one
    line, listed with -v."""
    moved = [cell for cell in report.cells if cell.past and cell.past.status is PastStatus.MOVED
             and not cell.verdict.failing]
    if not moved:
        return []
    heading = f"Moved since the goldens were recorded, still within tolerance ({counted(len(moved), 'cell')})"
    if not verbose:
        backends = ", ".join(dict.fromkeys(cell.backend for cell in moved))
        return ["", f"{heading}: {backends} (-v lists them)"]
    return ["", f"{heading}:", *(f"  {cell.config_id} x {cell.backend}: {cell.past.summary}"
                                 for cell in moved if cell.past)]


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
            lines += [f"  {backend}: {distance_text(distance)} at {config_id}"
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


def _upstream_findings(report: RunReport, *, verbose: bool, width: int) -> list[str]:
    """Distinct upstream warnings per backend: one summary line within the width, every one of them under -v."""
    counts = report.upstream_counts()
    if not counts:
        return []
    backends = list(dict.fromkeys(backend for backend, _ in counts))
    if not verbose:
        line = ""
        for preparing in (", ".join(backends), counted(len(backends), "backend")):  # named, when they fit
            line = (f"Upstream findings: {counted(len(counts), 'distinct warning')} from torch / onnx / onnxruntime "
                    f"while preparing {preparing} (-v lists them)")
            if len(line) <= width:
                break
        return ["", line]
    lines = ["", "Upstream findings (warnings raised by torch / onnx / onnxruntime while preparing):"]
    for (backend, note), count in counts.items():
        lines.append(f"  {backend} ({counted(count, 'cell')}): {shortened(note, 160)}")
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
