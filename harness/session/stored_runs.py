"""Running a stored artifact (from the golden directory) under bounds.

An artifact that its gate proved bounded (harness.store.gates: no unbounded loop, every static size in
bounds) runs in this process, under the cell's time budget. One that no static check can bound runs in a
bounded worker (harness.backends.bounded): killed past the time left to the cell, its address space capped,
so an endless Loop or an allocation bomb is an ERROR naming the bound and the run goes on.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.backends.artifact_worker import ARTIFACT, INPUTS, OUTPUTS, PROBE, REQUEST, RESULT
from harness.backends.base import Artifact, ArtifactBackend
from harness.backends.bounded import Bounds, run_bounded
from harness.backends.deadline import DEFAULT_CELL_BUDGET_S, remaining

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
