"""The torch-compile backend: a real inductor compile of the GRU reference that is detected as compiled, a fallback
(allow_rnn off) that is detected as not compiled and never passes, the budget that kills the whole worker, and the
detection rules on made-up counters. Compiles are slow: one real compile, in a module fixture; the rest is cheap."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from harness.backends import get_backend
from harness.backends.capture import captured_upstream_messages
from harness.backends.compile_worker import compile_and_run
from harness.backends.torch_compile import (
    ALLOW_RNN_ENV,
    BUDGET_ENV,
    COMPILE_SETTINGS,
    CompiledRuns,
    CompileFacts,
    TorchCompileBackend,
    budget_seconds,
    not_compiled_reason,
)
from harness.errors import ConfigError
from harness.model.case import build_case
from harness.model.config import RnnConfig
from harness.model.hashing import arrays_sha256
from tests.conftest import CliResult

GRU = RnnConfig(cell="gru")
COMPILED = CompileFacts(unique_graphs=1, graph_breaks=(), ops=("torch.zeros", "torch.gru", "_operator.getitem"),
                        compile_seconds=1.0, warnings=(), inputs_sha256="", weights_sha256="")


@dataclasses.dataclass(frozen=True)
class Compiled:
    backend: TorchCompileBackend
    model: CompiledRuns
    allow_rnn_before: bool
    allow_rnn_after: bool


@pytest.fixture(scope="module")
def compiled_gru() -> Iterator[Compiled]:
    """The GRU reference compiled once for the module (the fastest of the three kinds to compile)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(ALLOW_RNN_ENV, raising=False)
        patch.delenv(BUDGET_ENV, raising=False)
        backend = TorchCompileBackend()
        before = torch._dynamo.config.allow_rnn
        with captured_upstream_messages():
            model = backend.prepare(build_case(GRU))
        yield Compiled(backend, model, before, torch._dynamo.config.allow_rnn)


def _eager(config: RnnConfig) -> dict[str, np.ndarray]:
    case = build_case(config)
    return get_backend("eager").prepare(case).run(case.inputs)


def test_the_gru_reference_is_compiled_with_its_recurrence_inside_the_graph(compiled_gru: Compiled) -> None:
    facts = compiled_gru.model.facts
    assert facts.unique_graphs >= 1
    assert facts.graph_breaks == ()
    assert "torch.gru" in facts.ops
    assert not_compiled_reason(facts) is None
    assert compiled_gru.backend.settings() == {"backend": "inductor", "mode": None, "fullgraph": False,
                                               "dynamic": False, "allow_rnn": True}


def test_compiled_outputs_are_within_1e_6_of_eager(compiled_gru: Compiled) -> None:
    eager = _eager(GRU)
    for run in compiled_gru.model.runs:
        assert list(run) == list(eager)
        for name, expected in eager.items():
            assert run[name].dtype == expected.dtype and run[name].shape == expected.shape
            assert np.abs(run[name] - expected).max() <= 1e-6, name


def test_run_returns_the_workers_first_run_then_its_second(compiled_gru: Compiled) -> None:
    model = compiled_gru.model
    case = build_case(GRU)
    first, second = model.run(case.inputs), model.run(case.inputs)
    for name in case.output_names:
        assert first[name].tobytes() == model.runs[0][name].tobytes()
        assert second[name].tobytes() == model.runs[1][name].tobytes()
    with pytest.raises(RuntimeError, match="no run is left"):
        model.run(case.inputs)


def test_the_parents_allow_rnn_is_unchanged_by_prepare(compiled_gru: Compiled) -> None:
    assert compiled_gru.allow_rnn_after == compiled_gru.allow_rnn_before


def test_run_hands_out_two_distinct_runs_in_order_and_only_for_the_case_inputs() -> None:
    inputs = {"x": np.arange(3, dtype=np.float32)}
    runs = ({"output": np.array([1.0], dtype=np.float32)}, {"output": np.array([2.0], dtype=np.float32)})
    model = CompiledRuns(runs=runs, inputs_sha256=arrays_sha256(inputs), facts=COMPILED)
    with pytest.raises(ValueError, match="these inputs differ"):
        model.run({"x": np.arange(3, dtype=np.float32) + 1})
    assert model.run(inputs)["output"][0] == 1.0
    assert model.run(inputs)["output"][0] == 2.0
    with pytest.raises(RuntimeError, match="ran 2 times in its worker; no run is left"):
        model.run(inputs)


def test_the_worker_compile_restores_allow_rnn_in_its_process() -> None:
    """compile_and_run patches allow_rnn for the compile only: here the patch is False inside, True around it."""
    case = build_case(GRU)
    # torch's own patch, not pytest's monkeypatch: undoing a monkeypatch deletes the config entry
    # (torch._dynamo.config.allow_rnn then "does not exist" for every later test in this process).
    with torch._dynamo.config.patch(allow_rnn=True), captured_upstream_messages():
        facts, runs = compile_and_run(case, {**COMPILE_SETTINGS, "allow_rnn": False})
        after = torch._dynamo.config.allow_rnn
        torch._dynamo.reset()
    assert after is True
    assert not_compiled_reason(facts) == "not compiled (graph break: Attempted to wrap RNN, GRU, or LSTM)"
    assert len(runs) == 2  # the eager fallback still ran: only the counters tell it was not compiled


@pytest.mark.parametrize(("facts", "reason"), [
    (COMPILED, None),
    (dataclasses.replace(COMPILED, ops=("torch.nn.modules.rnn.LSTM",)), None),
    (dataclasses.replace(COMPILED, ops=("torch.ops.aten.mkldnn_rnn_layer.default",)), None),
    (dataclasses.replace(COMPILED, graph_breaks=("Attempted to wrap RNN, GRU, or LSTM", "later")),
     "not compiled (graph break: Attempted to wrap RNN, GRU, or LSTM)"),
    (dataclasses.replace(COMPILED, unique_graphs=0), "not compiled (no graph captured)"),
    (dataclasses.replace(COMPILED, ops=("torch.zeros", "_operator.getitem")),
     "not compiled (the recurrence ran outside the compiled graph)"),
], ids=["compiled", "module-kept-whole", "aten-layer", "graph-break", "no-graph", "op-outside"])
def test_not_compiled_reason_reads_the_counters_and_the_graphs_ops(facts: CompileFacts, reason: str | None) -> None:
    assert not_compiled_reason(facts) == reason


def test_a_users_cell_loop_captured_whole_counts_as_compiled() -> None:
    """LSTMCell stepped in Python: Dynamo unrolls it into one graph of lstm_cell-style ops, no fused op.
    Compiled for a user's model; the built-in RNNs still demand the fused op in the graph."""
    unrolled = dataclasses.replace(COMPILED, ops=("torch._VF.lstm_cell", "torch.stack", "_operator.getitem"))
    assert not_compiled_reason(unrolled, fused_recurrence=False) is None
    assert not_compiled_reason(unrolled) == "not compiled (the recurrence ran outside the compiled graph)"
    broken = dataclasses.replace(unrolled, graph_breaks=("call_function print",))
    assert not_compiled_reason(broken, fused_recurrence=False) == "not compiled (graph break: call_function print)"
    assert not_compiled_reason(dataclasses.replace(unrolled, unique_graphs=0), fused_recurrence=False) == (
        "not compiled (no graph captured)")


def test_only_the_hello_reference_cell_of_each_kind_is_fast() -> None:
    backend = TorchCompileBackend()
    fast = [RnnConfig(), RnnConfig(cell="lstm"), RnnConfig(cell="gru")]
    assert [backend.is_slow(config) for config in fast] == [False, False, False]
    slow = [RnnConfig(cell="rnn_relu"), RnnConfig(cell="gru", seed=42), RnnConfig(cell="lstm", num_layers=2)]
    assert [backend.is_slow(config) for config in slow] == [True, True, True]


def test_the_environment_variables_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BUDGET_ENV, raising=False)
    assert budget_seconds() == 300.0
    monkeypatch.setenv(BUDGET_ENV, "2.5")
    assert budget_seconds() == 2.5
    for bad in ("0", "-1", "soon", "nan", "inf"):
        monkeypatch.setenv(BUDGET_ENV, bad)
        with pytest.raises(ConfigError, match=f"{BUDGET_ENV} must be a positive number of seconds"):
            budget_seconds()
    monkeypatch.setenv(ALLOW_RNN_ENV, "no")
    with pytest.raises(ConfigError, match=f"{ALLOW_RNN_ENV} must be 0 or 1"):
        TorchCompileBackend()


def _cell(report: Path) -> dict[str, object]:
    cell: dict[str, object] = json.loads(report.read_text(encoding="utf-8"))["cells"][0]
    return cell


def test_a_fallback_is_detected_and_the_cell_never_passes(
    monkeypatch: pytest.MonkeyPatch, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    monkeypatch.setenv(ALLOW_RNN_ENV, "0")
    backend = TorchCompileBackend()
    assert backend.settings()["allow_rnn"] is False
    with pytest.raises(RuntimeError) as raised, captured_upstream_messages():
        backend.prepare(build_case(GRU))
    assert str(raised.value).startswith("not compiled (graph break: ")
    assert "RNN, GRU, or LSTM" in str(raised.value)
    report = tmp_path / "r.json"
    result = cli("run", "--backend", "torch-compile", "--config", "gru-h8-s0", "--json", str(report))
    assert result.exit_code == 1, result.out + result.err
    cell = _cell(report)
    assert cell["verdict"] == "ERROR"
    assert str(cell["reason"]).startswith("RuntimeError: not compiled (graph break: ")


def test_past_its_budget_the_worker_is_killed_and_the_cell_is_an_error(
    monkeypatch: pytest.MonkeyPatch, cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    monkeypatch.setenv(BUDGET_ENV, "1")  # the worker cannot even import torch in 1 s
    backend = TorchCompileBackend()
    with pytest.raises(TimeoutError, match=r"^compile exceeded its budget of 1 s \(killed\)$"):
        backend.prepare(build_case(GRU))
    assert backend.worker_pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(backend.worker_pid, 0)
    report = tmp_path / "r.json"
    result = cli("run", "--backend", "torch-compile", "--config", "gru-h8-s0", "--json", str(report))
    assert result.exit_code == 1, result.out + result.err
    assert _cell(report)["verdict"] == "ERROR"
    assert _cell(report)["reason"] == "TimeoutError: compile exceeded its budget of 1 s (killed)"


def _alive(pid: int) -> bool:
    """True while pid runs; a zombie (killed, not yet reaped by whoever adopted it) is not alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_the_budget_kills_the_workers_own_children_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A hung compile leaves compiler processes behind: the whole process group goes, not just the worker."""
    pid_file = tmp_path / "grandchild.pid"
    hanging = ("import subprocess, sys, time, pathlib; "
               "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
               f"pathlib.Path({str(pid_file)!r}).write_text(str(child.pid)); time.sleep(120)")
    monkeypatch.setenv(BUDGET_ENV, "3")
    backend = TorchCompileBackend()
    backend.worker = ("-c", hanging)
    with pytest.raises(TimeoutError, match="budget of 3 s"):
        backend.prepare(build_case(GRU))
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5  # SIGKILL is delivered asynchronously: give the kernel a moment
    while (survived := _alive(grandchild)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if survived:  # the test failed: leave no sleeper behind
        os.kill(grandchild, signal.SIGKILL)
    assert not survived


def test_a_failing_worker_is_an_error_with_its_last_line() -> None:
    backend = TorchCompileBackend()
    backend.worker = ("-c", "import sys; print('compiling'); sys.exit('inductor fell over')")
    with pytest.raises(RuntimeError, match=r"^the compile worker exited with 1: inductor fell over$"):
        backend.prepare(build_case(GRU))


def _scripted_worker(tmp_path: Path, facts: CompileFacts, outputs: dict[str, np.ndarray]) -> tuple[str, ...]:
    """A stand-in worker that writes the given facts and outputs (as both runs) the way the real one does."""
    template = tmp_path / "template.npz"
    arrays: dict[str, Any] = {f"run{index}_{name}": array for index in (1, 2) for name, array in outputs.items()}
    np.savez(template, **arrays)
    code = ("import pathlib, shutil, sys; workdir = pathlib.Path(sys.argv[1]); "
            f"shutil.copy({str(template)!r}, workdir / 'outputs.npz'); "
            f"(workdir / 'result.json').write_text({json.dumps(facts.to_dict())!r})")
    return ("-c", code)


def test_the_workers_warnings_become_notes_and_another_case_is_refused(tmp_path: Path) -> None:
    case = build_case(GRU)
    eager = _eager(GRU)
    facts = dataclasses.replace(COMPILED, inputs_sha256=case.inputs_sha256, weights_sha256=case.weights_sha256,
                                warnings=(("FutureWarning", "inductor: something will change"),))
    backend = TorchCompileBackend()
    backend.worker = _scripted_worker(tmp_path, facts, eager)
    with captured_upstream_messages() as notes:
        model = backend.prepare(case)
    assert notes == ["FutureWarning: inductor: something will change"]
    assert model.facts == facts
    assert all(model.run(case.inputs)[name].tobytes() == eager[name].tobytes() for name in eager)
    backend.worker = _scripted_worker(tmp_path, dataclasses.replace(facts, weights_sha256="0" * 64), eager)
    with pytest.raises(RuntimeError, match="built another case than this one"), captured_upstream_messages():
        backend.prepare(case)


def test_goldens_and_reports_record_the_compile_settings() -> None:
    """The committed goldens keep torch.compile's settings with its fingerprint (the three cells it runs)."""
    from harness.store.golden import GoldenStore
    from tests.conftest import COMMITTED_GOLDEN

    fingerprint = GoldenStore(COMMITTED_GOLDEN).load("gru-h8-s0").backend_fingerprints["torch-compile"]
    assert fingerprint["status"] == "ok"
    assert fingerprint["settings"] == {"backend": "inductor", "mode": None, "fullgraph": False, "dynamic": False,
                                       "allow_rnn": True}
