"""`python -m harness.backends.compile_worker DIR`: torch.compile one case and run it twice, in a process of its own.

Reads DIR/request.json ({"config": RnnConfig fields, "settings": the backend's settings(), "threads": n}),
builds the case from the config (seeded: the parent's weights and inputs), compiles the flat wrapper with
inductor, runs the config's check twice (harness.backends.workloads), and writes DIR/outputs.npz (``run1_<name>``,
``run2_<name>``) and then DIR/result.json (CompileFacts): the parent reads the result only once it exists.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.backends.bounded import worker_parent
from harness.backends.lifetime import die_with_parent
from harness.backends.torch_compile import OUTPUTS, REQUEST, RESULT, CompileFacts
from harness.backends.workloads import run_check
from harness.backends.wrappers import flat_module_for
from harness.model.case import Case, build_case
from harness.model.config import RnnConfig


class GraphRecorder:
    """A torch.compile backend: notes what every graph Dynamo captured calls, then compiles it with inductor."""

    def __init__(self) -> None:
        self.ops: list[str] = []

    def __call__(self, graph_module: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Any:
        from torch._inductor.compile_fx import compile_fx

        for node in graph_module.graph.nodes:
            op = _called(graph_module, node)
            if op and op not in self.ops:
                self.ops.append(op)
        return compile_fx(graph_module, example_inputs)


def _called(graph_module: torch.fx.GraphModule, node: torch.fx.Node) -> str:
    """What a node calls, by qualified name ('torch.gru', 'torch.nn.modules.rnn.GRU'); '' for data nodes."""
    from torch.fx.node import _get_qualified_name

    if node.op == "call_function":
        return _get_qualified_name(node.target) if callable(node.target) else str(node.target)
    if node.op == "call_module":
        module = type(graph_module.get_submodule(str(node.target)))
        return f"{module.__module__}.{module.__qualname__}"
    return f"method {node.target}" if node.op == "call_method" else ""


def compile_and_run(case: Case, settings: dict[str, Any]) -> tuple[CompileFacts, list[dict[str, np.ndarray]]]:
    """Compile the case's module as settings say and run it twice; allow_rnn is set for this call only."""
    from torch._dynamo.utils import counters

    if settings["backend"] != "inductor" or settings["mode"] is not None:
        raise ValueError(f"the worker compiles with inductor and mode=None only, not {settings}")
    torch._dynamo.reset()  # nothing compiled before (the same process, a test) may be reused or counted
    counters.clear()
    recorder = GraphRecorder()
    compiled: torch.nn.Module = torch.compile(  # type: ignore[assignment]  # an OptimizedModule
        flat_module_for(case), backend=recorder, fullgraph=settings["fullgraph"], dynamic=settings["dynamic"])
    # Both runs inside the patch: a changed config between the calls could make the second one recompile.
    with torch._dynamo.config.patch(allow_rnn=settings["allow_rnn"]):
        started = time.perf_counter()
        if case.config.reshaped_at_export:  # compiled at the export shape first, then run at the config's
            with torch.no_grad():
                compiled(*(torch.from_numpy(array) for array in case.examples.values()))
        first = run_check(case.config, compiled, case.inputs, case.forward_names)
        seconds = time.perf_counter() - started
        breaks = [*counters["graph_break"], *counters["unimplemented"]]  # a skipped frame counts only there
        unique_graphs = counters["stats"]["unique_graphs"]
        second = run_check(case.config, compiled, case.inputs, case.forward_names)
    facts = CompileFacts(
        unique_graphs=unique_graphs, graph_breaks=tuple(dict.fromkeys(_first_line(reason) for reason in breaks)),
        ops=tuple(recorder.ops), compile_seconds=seconds, warnings=(),
        inputs_sha256=case.inputs_sha256, weights_sha256=case.weights_sha256)
    return facts, [{name: array.copy() for name, array in outputs.items()} for outputs in (first, second)]


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else "(no reason given)"


def main(argv: Sequence[str]) -> int:
    die_with_parent(worker_parent())  # a killed run must not leave a compile running
    # Inductor imported before warnings are recorded: the import warns about torch's own code
    # (torch.utils.mkldnn uses torch.jit.script_method), which says nothing about this case.
    from torch._inductor.async_compile import shutdown_compile_workers
    from torch._inductor.compile_fx import compile_fx  # noqa: F401

    workdir = Path(argv[0])
    request = json.loads((workdir / REQUEST).read_text(encoding="utf-8"))
    torch.set_num_threads(request["threads"])  # the parent's: kernels (and their bits) may depend on it
    case = build_case(RnnConfig.from_dict(request["config"]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        facts, runs = compile_and_run(case, request["settings"])
    seen = dict.fromkeys((warning.category.__name__, _first_line(str(warning.message))) for warning in caught)
    facts = dataclasses.replace(facts, warnings=tuple(seen))
    arrays: dict[str, Any] = {f"run{index}_{name}": array for index, outputs in enumerate(runs, start=1)
                              for name, array in outputs.items()}
    np.savez(workdir / OUTPUTS, **arrays)
    shutdown_compile_workers()  # inductor's compile processes must not outlive the worker
    partial = workdir / f"{RESULT}.partial"
    partial.write_text(json.dumps(facts.to_dict()), encoding="utf-8")
    partial.replace(workdir / RESULT)  # whole or absent: the parent reads it once the worker has exited
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
