"""`python -m harness.session.isa_worker`: one fresh interpreter of `harness probe --isa`, started with one CPU-dispatch
setting (or none) already in its environment, so that torch reads it when it is first imported.

It takes `harness probe`'s own options. For every selected config x backend it writes the outputs to
<out>/<n>.npz (arr_0, arr_1, ... in output order) and judges the cell against the golden as `harness run` does;
it prints one JSON line for the process ({"capability": ATen's dispatch level}) and one per cell:
{"config", "backend", "status": computed|unsupported|error, "detail", "weights_sha256", "inputs_sha256", "file",
"names", "dtypes", "verdict", "verdict_reason", "golden_ulps"}.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.backends.base import NoAutogradError
from harness.backends.capture import first_line
from harness.backends.deadline import cell_budget
from harness.backends.lifetime import die_with_parent
from harness.judging.compare import compare_outputs
from harness.judging.judge import valid_steps_only
from harness.model.config import RnnConfig
from harness.model.tolerance import Tolerance
from harness.options import add_cli_options
from harness.session.core import Session
from harness.session.execution import execute
from harness.session.settings import settings_from
from harness.verdicts import Verdict


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.session.isa_worker")
    parser.add_argument("--parent", type=int, default=os.getppid(),
                        help="the probing process's pid (default: this process's parent now)")
    parser.add_argument("--out", type=Path, required=True, help="directory for the outputs' .npz files")
    add_cli_options(parser, "probe")
    args = parser.parse_args(argv)
    die_with_parent(args.parent)  # a killed probe leaves no process computing on
    import torch

    session = Session(settings_from(vars(args)))
    print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability()}), flush=True)
    count = 0
    for config in session.configs:
        for backend in session.runnable_backends():
            count += 1
            record = cell_record(session, config, backend.name, args.out / f"{count}.npz")
            print(json.dumps({"config": config.id, "backend": backend.name, **record}), flush=True)
    return 0


def cell_record(session: Session, config: RnnConfig, name: str, path: Path) -> dict[str, Any]:
    """One cell: its outputs written to path, and its verdict against the golden; a backend failure is a record."""
    backend = session.backend(name)
    if backend.is_slow(config) and not session.settings.include_slow:
        return {"status": "unsupported", "detail": "left out (slow); run with --all"}
    with cell_budget(session.settings.cell_budget):  # one budget for the cell: computing and judging it
        try:
            with session.pinned():
                outputs = execute(session.prepared(config).case, backend, session.cache).first
        except NoAutogradError as error:
            return {"status": "unsupported", "detail": str(error)}
        except Exception as error:  # a backend failure is this cell's result under this setting
            known = backend.known_limitation(config)
            return ({"status": "unsupported", "detail": known} if known else
                    {"status": "error", "detail": first_line(error)})
        np.savez(path, *outputs.values())
        cell = session.judge(config, name)
    case = session.prepared(config).case
    distances = [tensor.max_ulps for tensor in cell.tensors if tensor.total]
    verdict, reason = cell.verdict, cell.reason
    if not verdict.failing and cell.tolerance is not None and not _within(session, config, outputs, cell.tolerance):
        # The judged runs passed, but the run whose bits are compared does not: the backend is not deterministic.
        verdict, reason = Verdict.NONDETERMINISTIC, "the probe's own run fails the golden while the judged runs pass"
    return {"status": "computed", "detail": "", "weights_sha256": case.weights_sha256,
            "inputs_sha256": case.inputs_sha256, "file": path.name, "names": list(outputs),
            "dtypes": [array.dtype.name for array in outputs.values()], "verdict": verdict.value,
            "verdict_reason": reason, "golden_ulps": max(distances) if distances else None}


def _within(session: Session, config: RnnConfig, outputs: dict[str, np.ndarray], tolerance: Tolerance) -> bool:
    """Whether these outputs pass the config's golden under the cell's tolerance (True without a golden)."""
    golden = session.golden(config)
    if golden is None:
        return True
    expected, actual = valid_steps_only(config, golden.tensors), valid_steps_only(config, outputs)
    return all(comparison.passed for comparison in compare_outputs(expected, actual, tolerance))


if __name__ == "__main__":
    raise SystemExit(main())
