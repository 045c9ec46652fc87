"""torch.compile (inductor, CPU) of the flat wrapper, compiled and run twice in a worker process that can be killed.

Dynamo graph-breaks around nn.RNN/LSTM/GRU unless ``torch._dynamo.config.allow_rnn`` is set, and then runs
them eagerly: a naive check would call that "identical". So a cell passes only when torch's own counters
say a graph was captured with no graph break, and the recurrent op is inside that graph (see
``not_compiled_reason``); ``torch._dynamo.explain``'s break count is not trusted (it was seen reporting 0
beside a break reason).

Compiles take from seconds to minutes and a long sequence can hang, so the worker
(``python -m harness.backends.compile_worker``) runs in its own session and the whole process group is
killed when it outlives its budget. It builds the case from the config itself (seeded: the same weights and
inputs, checked by sha256) and writes back both runs' outputs; ``run()`` hands them out in order.

Environment variables:
    HARNESS_COMPILE_BUDGET_S         seconds a cell's worker may take, compile and both runs (default 300).
    HARNESS_TORCH_COMPILE_ALLOW_RNN  "0" compiles without allow_rnn: the RNN graph-breaks and runs eagerly,
                                     and the cell must then be ERROR "not compiled (graph break: ...)",
                                     never a pass (a way to watch the detection work from the CLI).
"""

from __future__ import annotations

import builtins
import json
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.backends.base import Availability
from harness.backends.bounded import Bounds, run_bounded
from harness.backends.deadline import remaining, seconds_from_env
from harness.errors import ConfigError
from harness.model.config import RnnConfig
from harness.model.hashing import arrays_sha256

if TYPE_CHECKING:  # torch is imported by the worker: naming the backend needs none
    from harness.model.case import Case

BUDGET_ENV = "HARNESS_COMPILE_BUDGET_S"
ALLOW_RNN_ENV = "HARNESS_TORCH_COMPILE_ALLOW_RNN"
DEFAULT_BUDGET_S = 300.0
WORKER_MODULE = "harness.backends.compile_worker"
# What the worker passes to torch.compile; "allow_rnn" is patched into torch._dynamo.config for the compile.
# fullgraph=False on purpose: a fallback must be possible, so that it is detected rather than raised.
COMPILE_SETTINGS: dict[str, Any] = {"backend": "inductor", "mode": None, "fullgraph": False, "dynamic": False,
                                    "allow_rnn": True}
# The files of one worker's directory: the parent writes the request, the worker the rest (result last).
REQUEST, RESULT, OUTPUTS, LOG = "request.json", "result.json", "outputs.npz", "worker.log"
# Ops (last name part, overload dropped) or modules that compute a recurrence, as they appear in Dynamo's
# graph (torch.gru, torch.lstm, torch.rnn_tanh; the module torch.nn.RNN were it kept whole) or an aten graph.
RECURRENT_OPS = frozenset({"rnn_tanh", "rnn_relu", "lstm", "gru", "rnn", "mkldnn_rnn_layer"})
# A worker takes 8-10 s on a hello reference cell with inductor's on-disk cache warm, 22-27 s cold, and minutes
# on long sequences (GRU and RNN are unrolled step by step; rnn-h8-t200b2-s0 passes 300 s): only the hello
# reference cell of each kind runs by default, and the hello gradient of the plain RNN (a compiled backward:
# AOTAutograd and inductor, about 15 s cold).
_DEFAULT_CELLS = frozenset([*(RnnConfig(cell=cell) for cell in ("rnn_tanh", "lstm", "gru")), RnnConfig(check="grad")])


@dataclass(frozen=True, kw_only=True)
class CompileFacts:
    """What the worker saw while compiling: torch's counters after the first call, and the graphs' ops."""

    unique_graphs: int  # counters["stats"]["unique_graphs"]
    graph_breaks: tuple[str, ...]  # first lines of counters["graph_break"], then of counters["unimplemented"]
    ops: tuple[str, ...]  # targets called in the graphs handed to inductor, in order, once each
    compile_seconds: float  # the first call: Dynamo, inductor and one run
    warnings: tuple[tuple[str, str], ...]  # (category name, first line) of what torch warned in the worker
    inputs_sha256: str
    weights_sha256: str

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> CompileFacts:
        return cls(**{**fields, "graph_breaks": tuple(fields["graph_breaks"]), "ops": tuple(fields["ops"]),
                      "warnings": tuple((category, text) for category, text in fields["warnings"])})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def not_compiled_reason(facts: CompileFacts, *, fused_recurrence: bool = True) -> str | None:
    """Why the model was not compiled, or None when a graph was captured and nothing broke (no graph break,
    no skipped frame). With `fused_recurrence` (the built-in RNNs), the fused recurrent op must also be inside
    a graph; a user's model may step LSTMCell/GRUCell in a Python loop, which Dynamo unrolls into its graph."""
    if facts.graph_breaks:
        return f"not compiled (graph break: {facts.graph_breaks[0]})"
    if facts.unique_graphs < 1:
        return "not compiled (no graph captured)"
    if fused_recurrence and not any(_op_name(op) in RECURRENT_OPS for op in facts.ops):
        return "not compiled (the recurrence ran outside the compiled graph)"
    return None


def _op_name(op: str) -> str:
    """'torch.gru' -> 'gru', 'torch.ops.aten.lstm.input' -> 'lstm', 'torch.nn.modules.rnn.GRU' -> 'gru'."""
    parts = op.lower().removeprefix("torch.ops.").split(".")
    return parts[1] if parts[0] == "aten" and len(parts) > 1 else parts[-1]


def budget_seconds() -> float:
    """The worker's budget: HARNESS_COMPILE_BUDGET_S when set (a positive number), else 300 s."""
    return seconds_from_env(BUDGET_ENV, DEFAULT_BUDGET_S)


def _allow_rnn() -> bool:
    text = os.environ.get(ALLOW_RNN_ENV, "1")
    if text not in ("0", "1"):
        raise ConfigError(f"{ALLOW_RNN_ENV} must be 0 or 1, got {text!r}")
    return text == "1"


class CompiledRuns:
    """The worker's two runs of the compiled model: run() returns run 1, then run 2, for the case's inputs."""

    runs_check = True  # the worker ran the config's check (forward, grad or train) itself

    def __init__(self, *, runs: tuple[dict[str, np.ndarray], ...], inputs_sha256: str, facts: CompileFacts) -> None:
        self.runs = runs
        self.inputs_sha256 = inputs_sha256
        self.facts = facts
        self._calls = 0

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if arrays_sha256(inputs) != self.inputs_sha256:
            raise ValueError("the compiled model ran in its worker on the case's inputs only; these inputs differ")
        if self._calls >= len(self.runs):
            raise RuntimeError(f"the compiled model ran {len(self.runs)} times in its worker; no run is left")
        outputs = self.runs[self._calls]
        self._calls += 1
        return {name: array.copy() for name, array in outputs.items()}


class TorchCompileBackend:
    """``torch.compile`` with inductor on the CPU, RNNs allowed into the graph, in a killable worker."""

    name = "torch-compile"
    runs_case_inputs_only = True  # compiled and run in a worker on the case's inputs: no other shape is asked
    device = "cpu"
    uses_torch_kernels = True

    def __init__(self) -> None:
        self.allow_rnn = _allow_rnn()
        self.description = ("torch.compile(backend='inductor', mode=None, fullgraph=False, dynamic=False) with "
                            f"allow_rnn={self.allow_rnn}, compiled and run in a worker process, CPU")
        self.worker: tuple[str, ...] = ("-m", WORKER_MODULE)  # python's arguments before the directory
        self.worker_pid: int | None = None  # the last worker started: tests check it is gone

    def settings(self) -> dict[str, Any]:
        """The compile settings, as goldens and reports record them."""
        return {**COMPILE_SETTINGS, "allow_rnn": self.allow_rnn}

    def availability(self) -> Availability:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            return Availability(available=False, reason="package torch is not installed")
        return Availability(available=True)

    def known_limitation(self, config: RnnConfig) -> str | None:
        if config.lengths:
            return "Dynamo skips pack_padded_sequence: the packed recurrence falls back to eager (a graph break)"
        if config.cell == "lstm" and config.check == "train" and not config.loss:  # a user's loss: as recorded
            # Measured on torch 2.13 CPU: a loss on `output` alone (h_n, c_n unused) fails in the compiled backward.
            return ("inductor's LSTM backward fails when h_n and c_n get no gradient (a loss on the output alone, "
                    "as in training): TypeError for aten.mkldnn_rnn_layer")
        return None

    def is_slow(self, config: RnnConfig) -> bool:
        return config not in _DEFAULT_CELLS

    def prepare(self, case: Case) -> CompiledRuns:
        """Compile and run the case twice in a worker; raises TimeoutError past the budget, RuntimeError when
        the worker fails or the recurrence was not compiled ("not compiled (...)")."""
        import torch

        request = {"config": case.config.to_dict(), "settings": self.settings(), "threads": torch.get_num_threads()}
        with tempfile.TemporaryDirectory(prefix="harness-compile-") as name:
            workdir = Path(name)
            (workdir / REQUEST).write_text(json.dumps(request), encoding="utf-8")
            self._run_worker(workdir, budget_seconds())
            facts = CompileFacts.from_dict(json.loads((workdir / RESULT).read_text(encoding="utf-8")))
            with np.load(workdir / OUTPUTS) as saved:
                runs = tuple({name: saved[f"run{index}_{name}"] for name in case.output_names} for index in (1, 2))
        if (facts.inputs_sha256, facts.weights_sha256) != (case.inputs_sha256, case.weights_sha256):
            raise RuntimeError("the compile worker built another case than this one (inputs or weights differ)")
        for category, text in facts.warnings:  # raised again here, so the session notes them as for any backend
            warnings.warn(text, _warning_category(category), stacklevel=2)
        reason = not_compiled_reason(facts, fused_recurrence=not case.config.model)
        if reason:
            raise RuntimeError(reason)
        return CompiledRuns(runs=runs, inputs_sha256=arrays_sha256(case.inputs), facts=facts)

    def _run_worker(self, workdir: Path, budget: float) -> None:
        """Run the worker on workdir within the budget (and the cell's, when shorter); past it, its whole
        process group (inductor's compile workers included) is killed."""
        left = remaining()
        run_bounded(self.worker, workdir, Bounds(seconds=budget if left is None else min(budget, left)),
                    task="compile", worker="the compile worker", on_start=self._started)

    def _started(self, pid: int) -> None:
        self.worker_pid = pid


def _warning_category(name: str) -> type[Warning]:
    category = getattr(builtins, name, None)
    return category if isinstance(category, type) and issubclass(category, Warning) else UserWarning
