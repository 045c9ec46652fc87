"""Running a model twice, timed, and a stored artifact (from the golden directory) under bounds.

An artifact that its gate proved bounded (harness.store.gates: no unbounded loop, every static size in
bounds) runs in this process, under the cell's time budget. One that no static check can bound runs in a
bounded worker (harness.backends.bounded): killed past the time left to the cell, its address space capped,
so an endless Loop or an allocation bomb is an ERROR naming the bound and the run goes on.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.backends.artifact_worker import ARTIFACT, INPUTS, OUTPUTS, PROBE, REQUEST, RESULT
from harness.backends.base import Artifact, ArtifactBackend, PreparedModel
from harness.backends.bounded import Bounds, run_bounded
from harness.backends.capture import captured_upstream_messages
from harness.backends.deadline import DEFAULT_CELL_BUDGET_S, remaining
from harness.judging.judge import Execution

Outputs = dict[str, np.ndarray]
WORKER_MODULE = "harness.backends.artifact_worker"
DEFAULT_MEMORY_BOUND = 1024**3  # what an unbounded artifact's run may map beyond the worker's imports


@dataclass(frozen=True, kw_only=True)
class WorkerRuns:
    """Two runs of a stored artifact in its bounded worker, timed there."""

    first: Outputs
    second: Outputs
    notes: tuple[str, ...]
    prepare_seconds: float
    run_seconds: float
    probed: Outputs | None = None  # the outputs on the probe input, when one was given


def run_in_worker(backend: ArtifactBackend, artifact: Artifact, output_names: Sequence[str], inputs: Outputs, *,
                  threads: int, memory_bytes: int = DEFAULT_MEMORY_BOUND, probe: Outputs | None = None) -> WorkerRuns:
    """Load and run the artifact twice in a bounded worker (and once on `probe` when given): TimeoutError past
    the time left to the cell (or the default cell budget outside one), MemoryBoundExceeded past memory_bytes,
    RuntimeError otherwise."""
    left = remaining()
    bounds = Bounds(seconds=DEFAULT_CELL_BUDGET_S if left is None else left, memory_bytes=memory_bytes)
    with tempfile.TemporaryDirectory(prefix="harness-replay-") as name:
        workdir = Path(name)
        request = {"backend": backend.name, "kind": artifact.kind, "output_names": list(output_names),
                   "threads": threads}
        (workdir / REQUEST).write_text(json.dumps(request), encoding="utf-8")
        (workdir / ARTIFACT).write_bytes(artifact.data)
        arrays: dict[str, Any] = dict(inputs)
        np.savez(workdir / INPUTS, **arrays)
        if probe is not None:
            probe_arrays: dict[str, Any] = dict(probe)
            np.savez(workdir / PROBE, **probe_arrays)
        run_bounded(("-m", WORKER_MODULE), workdir, bounds, task=f"the stored {artifact.kind} artifact's run",
                    worker="its bounded worker")
        result = json.loads((workdir / RESULT).read_text(encoding="utf-8"))
        with np.load(workdir / OUTPUTS, allow_pickle=False) as saved:
            runs = [{name: saved[f"run{index}_{name}"] for name in output_names} for index in (1, 2)]
            probed = {name: saved[f"probe_{name}"] for name in output_names} if probe is not None else None
    return WorkerRuns(first=runs[0], second=runs[1], notes=tuple(map(str, result["notes"])),
                      prepare_seconds=float(result["prepare_seconds"]), run_seconds=float(result["run_seconds"]),
                      probed=probed)


def timed_execution(prepare: Callable[[], PreparedModel], inputs: Outputs) -> Execution:
    """Prepare a model and run it twice on the inputs, timed; upstream warnings become notes (a run and a
    replay of a stored artifact alike)."""
    with captured_upstream_messages() as upstream:
        prepare_started = time.perf_counter()
        model = prepare()
        run_started = time.perf_counter()
        first = model.run(inputs)
        run_seconds = time.perf_counter() - run_started
        second = model.run(inputs)
    return Execution(first=first, second=second, notes=tuple(upstream),
                     prepare_seconds=run_started - prepare_started, run_seconds=run_seconds)


def run_stored(backend: ArtifactBackend, artifact: Artifact, output_names: Sequence[str], inputs: Outputs, *,
               bounded: bool, threads: int, probe: Outputs | None = None) -> tuple[Execution, Outputs | None]:
    """A stored artifact loaded and run twice, and once more on `probe` (whose outputs come second): here when
    its gate proved it bounded, else in a bounded worker that the cell's time left and a memory bound limit.
    Replay and a run's check of the stored artifact both go through here."""
    if not bounded:
        runs = run_in_worker(backend, artifact, output_names, inputs, threads=threads, probe=probe)
        return Execution(first=runs.first, second=runs.second, notes=runs.notes,
                         prepare_seconds=runs.prepare_seconds, run_seconds=runs.run_seconds), runs.probed
    loaded: list[PreparedModel] = []

    def prepare() -> PreparedModel:
        loaded.append(backend.load(artifact, output_names))
        return loaded[0]

    execution = timed_execution(prepare, inputs)
    with captured_upstream_messages():
        probed = loaded[0].run(probe) if probe is not None else None
    return execution, probed
