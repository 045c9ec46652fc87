"""`harness probe --isa`: are the selected cells bitwise portable across CPU dispatch levels?

Each setting (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA or MKL_CBWR set to one value) is read once, when torch or
its libraries first load, so each runs in a fresh process (harness.session.isa_worker) of its own that computes
every selected cell, beside one baseline process with none set. Each process judges its cells against the golden
as `harness run` does; this one compares every setting's bits with the baseline's.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.errors import HarnessError
from harness.judging.compare import compare_outputs
from harness.model.dtypes import numpy_dtype
from harness.model.environment import Environment
from harness.model.tolerance import BITWISE
from harness.reports.isa import IsaCell, IsaOutcome, IsaReport, IsaSetting
from harness.verdicts import Verdict

if TYPE_CHECKING:
    from harness.session.core import Session

# Every variable that moves CPU dispatch in torch, oneDNN or MKL: cleared in every process but the one it probes.
DISPATCH_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_CBWR",
                      "MKL_ENABLE_INSTRUCTIONS")
STARTUP_SECONDS = 120.0  # a worker's interpreter, torch and the golden store, on a loaded machine
X86 = ("x86_64", "amd64", "i686", "x86")


def dispatch_settings(environment: Environment) -> tuple[IsaSetting, ...]:
    """The settings probed on a machine with this fingerprint, each unsupported one skipped with why."""
    flags = set(environment.cpu_flags)
    not_x86 = "" if environment.machine.lower() in X86 else f"an x86 level; this machine is {environment.machine}"

    def lacking(flag: str) -> str:
        return not_x86 or ("" if flag in flags else f"this CPU lacks {flag}")

    no_onednn = not_x86 or ("torch was built without oneDNN" if environment.onednn == "none" else "")
    no_mkl = not_x86 or ("torch was built without MKL" if environment.mkl == "none" else "")
    aten, onednn, mkl = "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR"
    return (
        IsaSetting(variable=aten, value="default"),
        IsaSetting(variable=aten, value="avx2", skipped=lacking("avx2")),
        IsaSetting(variable=aten, value="avx512", skipped=lacking("avx512f")),
        IsaSetting(variable=onednn, value="SSE41", skipped=no_onednn),
        IsaSetting(variable=onednn, value="AVX2", skipped=no_onednn or lacking("avx2")),
        IsaSetting(variable=onednn, value="AVX512_CORE", skipped=no_onednn or lacking("avx512f")),
        IsaSetting(variable=mkl, value="COMPATIBLE", skipped=no_mkl),
        IsaSetting(variable=mkl, value="AVX2", skipped=no_mkl or lacking("avx2")),
        IsaSetting(variable=mkl, value="AUTO", skipped=no_mkl),
    )


@dataclass(frozen=True, kw_only=True)
class WorkerRun:
    """What one worker process gave back: ATen's level there and one record per cell, or why it gave nothing."""

    setting: IsaSetting
    capability: str = "?"
    cells: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    outputs: dict[tuple[str, str], dict[str, np.ndarray]] = field(default_factory=dict)
    failure: str = ""


def run_isa_probe(session: Session) -> IsaReport:
    """Every selected config x runnable backend under every setting this machine supports, and the baseline."""
    configs = session.configs  # an unknown config, backend or model reference is one line, exit 2, before any process
    session.require_models()
    backends = session.runnable_backends()
    if not backends:
        raise HarnessError("harness probe --isa: no backend of this session can run here")
    environment = session.environment()
    baseline = IsaSetting(variable="")
    settings = dispatch_settings(environment)
    with tempfile.TemporaryDirectory(prefix="harness-isa-") as root:
        runs = _run_workers(session, [baseline, *(s for s in settings if not s.skipped)], Path(root))
    runs = [_unrealised(run) for run in runs]
    settings = tuple(next((run.setting for run in runs if run.setting.label == s.label), s) for s in settings)
    goldens = {config.id: _golden_capability(session, config.id) for config in configs}
    cells = tuple(_cell(config.id, backend.name, goldens[config.id], runs[0], runs[1:])
                  for config in configs for backend in backends)
    return IsaReport(
        machine={"cpu": environment.cpu, "machine": environment.machine, "cpu_capability": runs[0].capability,
                 "onednn": environment.onednn, "mkl": environment.mkl},
        settings=(baseline, *settings), cleared=_set_here(), cells=cells)


def _unrealised(run: WorkerRun) -> WorkerRun:
    """An ATEN_CPU_CAPABILITY level that torch did not take (it falls back to what the CPU has) is skipped, not run."""
    setting = run.setting
    if setting.variable != "ATEN_CPU_CAPABILITY" or run.failure or run.capability.lower() == setting.value:
        return run
    skipped = f"torch ran {run.capability} instead: this CPU or build does not offer it"
    return WorkerRun(setting=dataclasses.replace(setting, skipped=skipped), capability=run.capability)


def _golden_capability(session: Session, config_id: str) -> str:
    """The ATen level the config's golden was recorded under ("" without a readable golden: its run says why)."""
    try:
        golden = session.golden(session.config(config_id))
    except HarnessError:
        return ""
    return golden.environment.cpu_capability if golden is not None else ""


def _set_here() -> tuple[str, ...]:
    return tuple(f"{name}={os.environ[name]}" for name in DISPATCH_VARIABLES if name in os.environ)


def _cell(config_id: str, backend: str, golden_capability: str, baseline: WorkerRun,
          others: list[WorkerRun]) -> IsaCell:
    key = (config_id, backend)
    return IsaCell(config_id=config_id, backend=backend, golden_capability=golden_capability,
                   baseline=_outcome(baseline, key, None),
                   outcomes=tuple(_outcome(run, key, baseline) for run in others if not run.setting.skipped))


def _outcome(run: WorkerRun, key: tuple[str, str], baseline: WorkerRun | None) -> IsaOutcome:
    """One cell under one setting, its bits (and its seeded weights and inputs) compared with the baseline's."""
    record = run.cells.get(key)
    make = functools.partial(IsaOutcome, setting=run.setting, capability=run.capability)
    if record is None:
        return make(status="error", detail=run.failure or "the worker gave no result for it")
    if record["status"] != "computed":
        return make(status=record["status"], detail=record["detail"])
    judged = make(status="computed", verdict=Verdict(record["verdict"]), verdict_reason=record["verdict_reason"],
                  golden_ulps=record["golden_ulps"])
    if baseline is None:
        return dataclasses.replace(judged, bitwise=True)
    reference, seeded = baseline.outputs.get(key), baseline.cells.get(key, {})
    if reference is None:
        return judged
    judged = dataclasses.replace(judged, weights_differ=record["weights_sha256"] != seeded.get("weights_sha256"),
                                 inputs_differ=record["inputs_sha256"] != seeded.get("inputs_sha256"))
    comparisons = compare_outputs(reference, run.outputs[key], BITWISE)
    if all(comparison.passed for comparison in comparisons):
        return dataclasses.replace(judged, bitwise=True)
    return dataclasses.replace(
        judged, bitwise=False, max_ulps=max(c.max_ulps for c in comparisons),
        max_abs=max(c.max_abs for c in comparisons), mismatched=sum(c.mismatched for c in comparisons),
        total=sum(c.total for c in comparisons))


# The worker processes: one per setting, at most one per CPU at a time, each with a timeout.

def _run_workers(session: Session, settings: list[IsaSetting], root: Path) -> list[WorkerRun]:
    cells = len(session.configs) * len(session.runnable_backends())
    timeout = STARTUP_SECONDS + cells * session.settings.cell_budget
    command = [sys.executable, "-m", "harness.session.isa_worker", "--parent", str(os.getpid()),
               *_worker_flags(session)]
    directories = [root / str(index) for index in range(len(settings))]
    for directory in directories:
        directory.mkdir()
    with ThreadPoolExecutor(max_workers=max(1, min(len(settings), os.cpu_count() or 1))) as pool:
        # Each worker is started and awaited by one pool thread, which lives as long as it does: the kernel's
        # parent-death signal (backends.lifetime) fires when that thread ends.
        return list(pool.map(lambda setting, out: _run_worker(command, setting, out, timeout), settings, directories))


def _run_worker(command: list[str], setting: IsaSetting, out: Path, timeout: float) -> WorkerRun:
    environment = {name: value for name, value in os.environ.items() if name not in DISPATCH_VARIABLES}
    if setting.variable:
        environment[setting.variable] = setting.value
    try:
        done = subprocess.run([*command, "--out", str(out)], env=environment, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return WorkerRun(setting=setting, failure=f"its process ran past {timeout:g} s and was killed")
    capability, cells = _parse(done.stdout)
    outputs = {key: _load(out / record["file"], record["names"], record["dtypes"])
               for key, record in cells.items() if record["status"] == "computed"}
    failure = ""
    if done.returncode != 0:  # the cells it finished still count; the others say how it ended
        last = next((line for line in reversed(done.stderr.splitlines()) if line.strip()), "")
        failure = f"its process exited {done.returncode}: {last[:200]}"
    return WorkerRun(setting=setting, capability=capability, cells=cells, outputs=outputs, failure=failure)


def _parse(stdout: str) -> tuple[str, dict[tuple[str, str], dict[str, Any]]]:
    """The worker's capability line and cell records; other lines (a library printing) are not ours."""
    capability, cells = "?", {}
    for line in stdout.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "capability" in record:
            capability = str(record["capability"])
        elif isinstance(record, dict) and {"config", "backend", "status"} <= set(record):
            cells[(record["config"], record["backend"])] = record
    return capability, cells


def _load(path: Path, names: list[str], dtypes: list[str]) -> dict[str, np.ndarray]:
    """A worker's outputs by name (bfloat16 comes back from .npz as raw two-byte words: viewed as it was)."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = [archive[f"arr_{index}"] for index in range(len(names))]
    return {name: array.view(numpy_dtype(dtype)) if array.dtype.kind == "V" else array
            for name, array, dtype in zip(names, arrays, dtypes, strict=True)}


def _worker_flags(session: Session) -> list[str]:
    """`harness probe`'s options that give a worker this session's selection, goldens, cache and budgets."""
    settings = session.settings
    flags = ["--golden-dir", str(session.golden_dir), "--threads", str(settings.threads),
             "--max-memory", str(settings.max_memory), "--cell-budget", repr(settings.cell_budget)]
    flags += ["--suite", str(settings.suite)] if settings.suite else []
    flags += [flag for config in session.configs for flag in ("--config", config.id)]
    flags += [flag for backend in session.runnable_backends() for flag in ("--backend", backend.name)]
    flags += ["--all"] if settings.include_slow else []
    flags += ["--no-cache"] if not settings.cache else []
    flags += ["--cache-dir", str(settings.cache_dir)] if settings.cache_dir else []
    return flags
