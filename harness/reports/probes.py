"""Reports of determinism probes: a probe x (config, backend) table, failures, JSON."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from typing import Any

from harness.judging.results import PROBES, ProbeResult
from harness.reports.text import json_safe, printable_lines, text_table
from harness.reports.upstream_errors import explaining_lines
from harness.verdicts import ProbeVerdict

SCHEMA = "harness.probes/1"


def probe_lines(results: tuple[ProbeResult, ...]) -> list[str]:
    """The probe report, every line printable (details carry upstream error text)."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for result in results:
        rows.setdefault((result.config_id, result.backend), {})[result.probe] = result.verdict.value
    header = ["config", "backend", *PROBES]
    table = [[config_id, backend, *(verdicts.get(probe, "") for probe in PROBES)]
             for (config_id, backend), verdicts in rows.items()]
    lines = ["Determinism probes (each must be bitwise; n/a = the setting does not reach that backend):", ""]
    lines += text_table(header, table)
    lines += failure_lines(results)
    differs = [result for result in results if result.verdict is ProbeVerdict.DIFFERS and not result.failing]
    if differs:
        lines += ["", "Settings that change bits (the harness pins them: torch threads, ORT threads and "
                      "ORT_ENABLE_ALL; --strict-settings makes these fail):"]
        lines += [f"  {r.config_id} x {r.backend}: {r.detail}" for r in differs]
    unsupported = {(r.config_id, r.backend): r.detail for r in results if r.verdict is ProbeVerdict.UNSUPPORTED}
    if unsupported:
        lines += ["", "Not probed (known limitations):"]
        lines += [f"  {config_id} x {backend}: {detail}" for (config_id, backend), detail in unsupported.items()]
    lines += ["", probe_summary(results)]
    return printable_lines(lines)


def failure_lines(results: tuple[ProbeResult, ...]) -> list[str]:
    """One line per failing cell (config x backend): its failing probes that say the same thing share the line
    (a backend that cannot prepare fails every probe with one error: it is said once)."""
    grouped: dict[tuple[str, str], dict[tuple[str, str], list[str]]] = {}
    details: dict[tuple[str, str], str] = {}
    for result in results:
        if result.failing:
            cell = grouped.setdefault((result.config_id, result.backend), {})
            cell.setdefault((result.verdict.value, result.detail), []).append(result.probe)
            if result.reason_detail:
                details[(result.config_id, result.backend)] = result.reason_detail
    if not grouped:
        return []
    lines = ["", f"Probe failures ({len(grouped)} cells):"]
    for (config_id, backend), outcomes in grouped.items():
        parts = [f"{'probe' if len(probes) == 1 else 'probes'} {', '.join(probes)}: {verdict}: {detail}"
                 for (verdict, detail), probes in outcomes.items()]
        lines.append(f"  {config_id} x {backend}: " + "; ".join(parts))
        # where the upstream error is (TorchScript's source line and marker); the whole error is in the JSON
        lines += [f"      {line}" for line in explaining_lines(details.get((config_id, backend), ""))]
    return lines


def probe_summary(results: tuple[ProbeResult, ...]) -> str:
    counts = Counter(result.verdict.value for result in results)
    status = "FAILED" if any(result.failing for result in results) else "OK"
    return f"{status}: {len(results)} probes: " + ", ".join(f"{count} {verdict}" for verdict, count in counts.items())


def probe_documents(results: tuple[ProbeResult, ...]) -> list[dict[str, Any]]:
    return [{**dataclasses.asdict(result), "verdict": result.verdict.value, "failing": result.failing}
            for result in results]


def probes_json(results: tuple[ProbeResult, ...]) -> str:
    """The probe results as a `harness.probes/1` document."""
    document = {"schema": SCHEMA, "probes": probe_documents(results)}
    return json.dumps(json_safe(document), indent=2, allow_nan=False) + "\n"
