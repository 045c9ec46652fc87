"""Input kinds end to end: seeded Gaussian inputs, variable-length packed sequences (valid steps compared,
padded steps zero, ONNX sequence_lens), and models exported at one shape and run at another."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest

from harness.backends import get_backend, register_backend, unregister_backend
from harness.backends.wrappers import flat_module_for
from harness.model.case import Case, build_case
from harness.model.config import RnnConfig
from harness.model.inputs import build_inputs
from harness.model.suite import load_suite
from harness.store.golden import GoldenStore
from tests.conftest import COMMITTED_GOLDEN, CliResult
from tests.doubles import EditingBackend

Cli = Callable[..., CliResult]
Outputs = dict[str, np.ndarray]
SORTED, UNSORTED = "rnn-h8-gauss-t6b4-len6_5_3_2-s0", "gru-h8-gauss-t6b4-len3_6_2_5-s0"
RESHAPED, BATCH_ONE = "rnn-h8-gauss-t7b4-xt5b3-s0", "lstm-h8-gauss-t5b4-xt5b1-s0"


def config(config_id: str) -> RnnConfig:
    return load_suite().select([config_id])[0]


def padded(config: RnnConfig) -> np.ndarray:
    return np.arange(config.seq_len)[:, None] >= np.array(config.lengths)[None, :]


def leak_into_padding(case: Case, outputs: Outputs) -> Outputs:
    """A runtime that ignores the lengths past each sequence's end: nonzero outputs at the padded steps."""
    output = outputs["output"].copy()
    output[padded(case.config)] += np.float32(1e-3)
    return {**outputs, "output": output}


def move_a_valid_step(case: Case, outputs: Outputs) -> Outputs:
    output = outputs["output"].copy()
    output[0, 0, 0] += np.float32(1e-3)
    return {**outputs, "output": output}


@pytest.fixture(autouse=True)
def packed_doubles() -> Iterator[None]:
    doubles = {"test-leaky-padding": leak_into_padding, "test-moved-step": move_a_valid_step}
    for name, edit in doubles.items():
        register_backend(name, lambda name=name, edit=edit: EditingBackend(name, edit))  # type: ignore[misc]
    yield
    for name in doubles:
        unregister_backend(name)


def test_gaussian_inputs_are_seeded_standard_normal_values() -> None:
    gaussian = RnnConfig(input="gaussian", seq_len=50, batch=40)
    inputs = build_inputs(gaussian)["input"]
    assert inputs.shape == (50, 40, 4) and inputs.dtype == np.float32
    assert np.array_equal(inputs, build_inputs(gaussian)["input"])
    assert not np.array_equal(inputs, build_inputs(RnnConfig(input="gaussian", seq_len=50, batch=40, seed=1))["input"])
    assert abs(inputs.mean()) < 0.1 and abs(inputs.std() - 1.0) < 0.1  # 8000 draws of N(0, 1)
    assert len(np.unique(inputs)) == inputs.size  # real values, not one-hot
    assert gaussian.id == "rnn-h8-gauss-t50b40-s0"


def test_packed_goldens_are_zero_at_padded_steps_and_match_the_oracle_on_valid_ones() -> None:
    for config_id in (SORTED, UNSORTED):
        golden = GoldenStore(COMMITTED_GOLDEN).load(config_id)
        output = golden.tensors["output"]
        assert not output[padded(golden.config)].any()
        assert np.abs(output[~padded(golden.config)]).min() > 0


def test_sorted_and_unsorted_lengths_take_both_packing_paths() -> None:
    assert flat_module_for(build_case(config(SORTED))).enforce_sorted is True
    assert flat_module_for(build_case(config(UNSORTED))).enforce_sorted is False


def test_the_legacy_onnx_export_feeds_the_lengths_to_sequence_lens() -> None:
    for config_id, extra_op in ((SORTED, None), (UNSORTED, "TopK")):  # unsorted: sorted inside the graph
        golden = GoldenStore(COMMITTED_GOLDEN).load(config_id)
        data = GoldenStore(COMMITTED_GOLDEN).artifact_bytes(golden, "onnxruntime-legacy")
        graph = onnx.load_model(io.BytesIO(data)).graph
        recurrent = [node for node in graph.node if node.op_type in ("RNN", "GRU", "LSTM")]
        assert recurrent and all(len(node.input) > 4 and node.input[4] for node in recurrent)
        assert [value.name for value in graph.input] == ["input", "lengths"]
        if extra_op:
            assert extra_op in {node.op_type for node in graph.node}


def test_padded_steps_that_are_not_zero_break_an_invariant_and_valid_steps_are_compared(
        cli: Cli, golden_copy: Callable[..., Path], tmp_path: Path) -> None:
    golden = golden_copy(SORTED)
    report = tmp_path / "report.json"
    result = cli("run", "--config", SORTED, "--golden-dir", str(golden), "--backend", "test-leaky-padding",
                 "--backend", "test-moved-step", "--backend", "onnxruntime-legacy", "--json", str(report))
    assert result.exit_code == 1
    cells = {cell["backend"]: cell for cell in json.loads(report.read_text())["cells"]}
    leaky = cells["test-leaky-padding"]
    assert leaky["verdict"] == "INVARIANT"
    assert any("output at padded steps is not zero: max |x| 1.0e-03 (first at step 2, batch element 3 of length 2)"
               in line for line in leaky["invariant_violations"])
    # Compared on valid steps only, the leaked values are no drift: the invariant names them instead.
    assert all(tensor["status"] in ("identical", "close") for tensor in leaky["tensors"])
    assert cells["test-moved-step"]["verdict"] == "DRIFT"
    assert cells["onnxruntime-legacy"]["verdict"] == "close"


def test_onnx_reference_refuses_sequence_lens_it_would_ignore(cli: Cli, golden_copy: Callable[..., Path]) -> None:
    golden = GoldenStore(COMMITTED_GOLDEN).load(UNSORTED)
    artifact_bytes = GoldenStore(COMMITTED_GOLDEN).artifact_bytes(golden, "onnxruntime-legacy")
    from harness.backends.base import Artifact

    backend = get_backend("onnx-reference-legacy")
    with pytest.raises(NotImplementedError, match=r"GRU node .* has sequence_lens, which onnx.reference ignores"):
        backend.load(Artifact(kind="onnx", data=artifact_bytes, producer={}), ["output", "h_n"])  # type: ignore[attr-defined]
    result = cli("run", "--config", UNSORTED, "--golden-dir", str(golden_copy(UNSORTED)), "--backend",
                 "onnx-reference-legacy", "--backend", "onnx-reference-dynamo", "--backend", "torch-export",
                 "-v")  # -v: each unsupported cell with what this run observed
    assert result.exit_code == 0
    assert ("x onnx-reference-legacy: the reference evaluator's RNN/GRU/LSTM take sequence_lens and never read "
            "it") in result.out
    assert "x torch-export: torch.export cannot trace pack_padded_sequence" in result.out
    assert "(observed: TypeError: zeros()" in result.out


def test_a_batch_baked_in_at_export_is_named(cli: Cli, golden_copy: Callable[..., Path]) -> None:
    golden = golden_copy(RESHAPED, BATCH_ONE)
    result = cli("run", "--config", RESHAPED, "--config", BATCH_ONE, "--golden-dir", str(golden), "--backend", "torch",
                 "--backend", "onnx", "-v")  # -v: each unsupported cell with its whole reason
    assert result.exit_code == 0, result.out
    assert ("x torch-export: torch.export specialises a recurrence to the example's sequence length, and a batch of 1 "
            "to 1") in result.out
    assert ("shape baked in at export: torch-export exported at seq 5 x batch 1 keeps batch 1, and fails at seq 5 x "
            "batch 4 (AssertionError: Guard failed: x.size()[1] == 1)") in result.out
    # The dynamo exporter keeps the sequence length: a plain RNN silently returns 5 steps instead of 7.
    assert ("shape baked in at export: onnxruntime-dynamo exported at seq 5 x batch 3 keeps sequence length 5, and "
            "fails at seq 7 x batch 4 (output: (5, 4, 8) instead of (7, 4, 8))") in result.out
    for passing in ("torchscript-trace", "torchscript-script", "onnxruntime-legacy"):
        # traced, scripted or exported with dynamic axes: it runs anywhere (-v lists where its export came from)
        assert not re.search(rf"x {passing}: (?!exported$|cache)", result.out, re.MULTILINE), passing


def test_an_exporter_without_dynamic_axes_is_caught_baking_in_both_dimensions(
        cli: Cli, golden_copy: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("harness.backends.wrappers.dynamic_axes", lambda case: {})  # export at the example's shape
    golden = golden_copy(RESHAPED)
    result = cli("run", "--config", RESHAPED, "--golden-dir", str(golden), "--backend", "onnxruntime-legacy",
                 "--no-cache")
    assert result.exit_code == 1
    assert (f"{RESHAPED} x onnxruntime-legacy: SHAPE") in result.out
    assert ("shape baked in at export: onnxruntime-legacy exported at seq 5 x batch 3 keeps sequence length 5 and "
            "batch 3, and fails at seq 7 x batch 4 (InvalidArgument: [ONNXRuntimeError]") in result.out


def test_upstream_errors_reach_reasons_and_goldens_without_terminal_colour_codes() -> None:
    from harness.backends.capture import first_line

    assert first_line(RuntimeError("Failed \x1b[96mThis is step 1/3\x1b[0m of export\nmore")) == (
        "RuntimeError: Failed This is step 1/3 of export")
    for manifest in COMMITTED_GOLDEN.glob("*.json"):
        assert "\\u001b" not in manifest.read_text(encoding="utf-8"), manifest.name
