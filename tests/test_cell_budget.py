"""The per-cell time budget and the bounded worker: an endless ONNX Loop, a long training run and an
unbounded allocation each end as an ERROR naming the bound they hit, and the run goes on."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnx.parser
import pytest
from onnx import TensorProto, helper

from harness.backends import get_backend
from harness.backends.base import Artifact
from harness.backends.bounded import MemoryBoundExceeded
from harness.backends.deadline import CellBudgetExceeded, cell_budget, parse_budget, remaining
from harness.errors import ConfigError
from harness.session.stored_runs import run_in_worker
from tests.conftest import CliResult

Cli = Callable[..., CliResult]


def endless_loop_model() -> bytes:
    """y = x + 1 forever: a Loop with no trip count whose condition is always true (no static bound)."""
    body = helper.make_graph(
        [helper.make_node("Add", ["y_in", "one"], ["y_out"]), helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("y_in", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("y_out", TensorProto.FLOAT, [1])],
        [helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])])
    graph = helper.make_graph(
        [helper.make_node("Loop", ["", "cond", "x"], ["y"], body=body)], "endless",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [helper.make_tensor("cond", TensorProto.BOOL, [], [True])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def data_sized_bomb_model() -> bytes:
    """zeros of a shape read from the input's values: no static check can know its size (4 GiB here)."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["shape"], to=TensorProto.INT64),
         helper.make_node("ConstantOfShape", ["shape"], ["y"])], "bomb",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_the_budget_stops_python_level_work_and_nests() -> None:
    assert remaining() is None
    started = time.monotonic()
    with pytest.raises(CellBudgetExceeded, match=r"time budget of 0.3 s"), cell_budget(0.3):
        while True:
            sum(range(1000))
    assert time.monotonic() - started < 2
    with cell_budget(5):
        with cell_budget(60):  # the enclosing, shorter budget wins
            left = remaining()
            assert left is not None and left <= 5
        assert remaining() is not None
    assert remaining() is None


class Guard(Exception):
    """What a test's own hang guard raises (as tests/corpus/tools.time_limit does)."""


def test_an_alarm_set_before_the_budget_keeps_its_time_and_handler() -> None:
    def guard(signum: int, frame: object) -> None:
        raise Guard

    previous = signal.signal(signal.SIGALRM, guard)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(Guard), cell_budget(60):  # the guard's time comes first: its handler decides
            while True:
                sum(range(1000))
        signal.setitimer(signal.ITIMER_REAL, 5)
        with cell_budget(60):
            pass
        left = signal.getitimer(signal.ITIMER_REAL)[0]
        assert 4 < left <= 5  # re-armed on the way out, with the time it had left
        assert signal.getsignal(signal.SIGALRM) is guard
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize(("text", "seconds"), [("2.5", 2.5), (None, 600.0)])
def test_budgets_parse(text: str | None, seconds: float, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_CELL_BUDGET_S", raising=False)
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["0", "-1", "inf", "nan", "soon"])
def test_a_bad_budget_is_one_line(text: str) -> None:
    with pytest.raises(ConfigError, match="--cell-budget must be a positive number of seconds"):
        parse_budget(text)


def test_an_endless_onnx_loop_in_process_ends_at_the_budget() -> None:
    """onnxruntime holds the thread in C++: its own terminate flag ends the run, not the signal."""
    backend = get_backend("onnxruntime-legacy")
    model = backend.load(Artifact(kind="onnx", data=endless_loop_model(), producer={}), ["y"])
    started = time.monotonic()
    with pytest.raises(CellBudgetExceeded, match=r"time budget of 1 s"), cell_budget(1):
        model.run({"x": np.zeros(1, np.float32)})
    assert time.monotonic() - started < 5


def test_an_endless_loop_in_the_bounded_worker_is_killed_at_the_time_left() -> None:
    backend = get_backend("onnxruntime-legacy")
    artifact = Artifact(kind="onnx", data=endless_loop_model(), producer={})
    started = time.monotonic()
    with pytest.raises((TimeoutError, CellBudgetExceeded), match=r"budget of 3 s"), cell_budget(3):
        run_in_worker(backend, artifact, ["y"], {"x": np.zeros(1, np.float32)}, threads=1)  # type: ignore[arg-type]
    assert time.monotonic() - started < 10


def test_an_allocation_no_static_check_can_size_hits_the_workers_memory_bound() -> None:
    backend = get_backend("onnxruntime-legacy")
    artifact = Artifact(kind="onnx", data=data_sized_bomb_model(), producer={})
    with pytest.raises(MemoryBoundExceeded, match=r"exceeded its memory bound of 256 MiB"):
        run_in_worker(backend, artifact, ["y"], {"x": np.array([2**30], np.float32)},  # type: ignore[arg-type]
                      threads=1, memory_bytes=256 * 1024**2)


def test_the_bounded_worker_computes_what_the_process_does() -> None:
    backend = get_backend("onnxruntime-legacy")
    graph = helper.make_graph([helper.make_node("Tanh", ["x"], ["y"])], "tanh",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    inputs = {"x": np.array([0.5, -1.0, 2.0], np.float32)}
    runs = run_in_worker(backend, Artifact(kind="onnx", data=data, producer={}), ["y"], inputs,  # type: ignore[arg-type]
                         threads=1)
    here = backend.load(Artifact(kind="onnx", data=data, producer={}), ["y"]).run(inputs)
    assert runs.first["y"].tobytes() == runs.second["y"].tobytes() == here["y"].tobytes()
    onnx.checker.check_model(onnx.load_from_string(data))


TRAIN_SUITE = """[suite]
name = "budget"

[[case]]
cell = "gru"
hidden_size = 8
check = "train"
train_steps = 100000
learning_rate = 0.1

[[case]]
cell = "gru"
hidden_size = 8
"""


def test_a_training_run_past_the_budget_is_an_error_and_the_run_goes_on(cli: Cli, tmp_path: Path) -> None:
    """train_steps = 100000 would run for minutes: each of its cells is an ERROR naming the budget, its case
    is not built again for the next backend, and the other config is still judged."""
    suite = tmp_path / "suite.toml"
    suite.write_text(TRAIN_SUITE, encoding="utf-8")
    report = tmp_path / "r.json"
    started = time.monotonic()
    result = cli("check", "--suite", str(suite), "--backend", "eager,torchscript-script", "--cell-budget", "2",
                 "--json", str(report), "--no-cache")
    assert time.monotonic() - started < 30  # two cells of one over-budget case: the budget is paid once
    cells = {(cell["config"], cell["backend"]): cell for cell in json.loads(report.read_text())["cells"]}
    over = [cell for key, cell in cells.items() if "train" in key[0]]
    assert [cell["verdict"] for cell in over] == ["ERROR", "ERROR"]
    assert all("exceeded the per-cell time budget of 2 s" in cell["reason"] for cell in over)
    assert cells[("gru-h8-s0", "eager")]["verdict"] == "identical"
    assert result.exit_code == 1
    assert "Traceback" not in result.out + result.err


def rnn_with_an_endless_loop(data: bytes) -> bytes:
    """A real RNN export whose first output also waits for an endless Loop (adding 0 times its result): it
    passes every static check (a recurrence, outputs that depend on the input) but cannot be bounded."""
    model = onnx.load_from_string(data)
    graph = model.graph
    output = graph.output[0].name
    for node in graph.node:
        node.output[:] = [f"{name}__inner" if name == output else name for name in node.output]
    body = onnx.parser.parse_graph("""
        body (int64 i, bool cond_in, float[1] y_in) => (bool cond_out, float[1] y_out) {
            cond_out = Identity(cond_in)
            y_out = Identity(y_in)
        }""")
    graph.initializer.extend([helper.make_tensor("forever", TensorProto.BOOL, [], [True]),
                              helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])])
    graph.node.extend([helper.make_node("Loop", ["", "forever", "zero"], ["spun"], body=body),
                       helper.make_node("Mul", ["spun", "zero"], ["nothing"]),
                       helper.make_node("Add", [f"{output}__inner", "nothing"], [output])])
    return model.SerializeToString()


def test_a_stored_artifact_with_an_endless_loop_is_an_error_within_the_budget(tmp_path: Path) -> None:
    """From the CLI: the gate marks it unbounded, so it runs in the bounded worker, which the cell's budget
    kills; the cell is an ERROR naming the budget, exit 1, no traceback."""
    from tests.test_artifact_gates import CONFIG, golden_copy, plant

    copy = golden_copy(tmp_path)
    manifest = json.loads((copy / f"{CONFIG}.json").read_text())
    entry = manifest["artifacts"]["onnxruntime-legacy"]
    plant(copy, "onnxruntime-legacy", rnn_with_an_endless_loop((copy / "artifacts" / entry["file"]).read_bytes()))
    assert_replay_stopped_at_budget(copy, "onnxruntime-legacy", budget=3, within=30)


def assert_replay_stopped_at_budget(copy: Path, backend: str, *, budget: int, within: float) -> None:
    """`harness replay` of the planted golden: one ERROR cell naming the budget, exit 1, no traceback, in time."""
    from tests.test_artifact_gates import CONFIG, HARNESS

    started = time.monotonic()
    result = subprocess.run([*HARNESS, "replay", "--golden-dir", str(copy), "--config", CONFIG, "--backend",
                             backend, "--cell-budget", str(budget)], capture_output=True, text=True,
                            cwd=copy.parent, timeout=120, check=False)
    output = result.stdout + result.stderr
    assert time.monotonic() - started < within, output
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert f"budget of {budget} s" in output and "ERROR" in output, output


def endless_torchscript_archive() -> bytes:
    """A scripted LSTM whose forward then spins for ever: TorchScript runs the loop in C++, where no signal
    reaches it, so only a bounded worker can stop it."""
    import io
    import warnings

    import torch

    class Spinner(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = torch.nn.LSTM(4, 8)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            output, (h_n, c_n) = self.rnn(x)
            spins = 0
            while spins >= 0:
                spins = spins + 1
            return output, h_n, c_n

    buffer = io.BytesIO()
    with warnings.catch_warnings():  # torch 2.13 deprecates torch.jit.script; the attack still works
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(Spinner()), buffer)
    return buffer.getvalue()


def test_a_torchscript_archive_with_an_endless_loop_is_an_error_within_the_budget(tmp_path: Path) -> None:
    from harness.store.gates import verify_artifact
    from tests.test_artifact_gates import golden_copy, plant

    data = endless_torchscript_archive()
    facts = verify_artifact("torchscript", data, where="spinner.pt", built_in_rnn=True)
    assert not facts.bounded and "loop" in facts.unbounded_reason
    copy = golden_copy(tmp_path)
    plant(copy, "torchscript-script", data)
    assert_replay_stopped_at_budget(copy, "torchscript-script", budget=10, within=40)
