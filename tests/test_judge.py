"""Direct tests of judging one cell (harness.judging.judge) on the hello RNN's outputs, computed by the oracle."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from harness.judging.compare import compare_tensor
from harness.judging.judge import (
    CaseFacts,
    Execution,
    analysis_lines,
    attribute,
    changed_weights,
    compare_with_past,
    diagnose,
    judge_cell,
    verdict_of,
)
from harness.judging.oracle import Variant, oracle_outputs
from harness.judging.results import WeightsChange
from harness.model.config import RnnConfig
from harness.model.environment import current_environment
from harness.model.hashing import arrays_sha256
from harness.model.inputs import hello_batch
from harness.model.tolerance import Tolerance
from harness.store.golden import Golden
from harness.verdicts import Cause, PastStatus, TensorStatus, Verdict

Outputs = dict[str, np.ndarray]
CONFIG = RnnConfig()  # the hello RNN: output (3, 5, 8), h_n (1, 5, 8), float32
TOLERANCE = Tolerance(atol=2e-6, rtol=1e-5)
INPUTS = {"input": hello_batch()}
INPUTS_SHA, WEIGHTS_SHA = "inputs-of-the-golden", "weights-of-the-golden"
ENVIRONMENT = current_environment(torch_threads=1)


def rnn_weights(config: RnnConfig, gates: int = 1) -> dict[str, np.ndarray]:
    """Seeded state_dict-named weights of a one-layer RNN/GRU (gates blocks of hidden_size rows)."""
    rng = np.random.default_rng(7)
    rows, hidden = gates * config.hidden_size, config.hidden_size
    shapes = {"weight_ih_l0": (rows, config.input_size), "weight_hh_l0": (rows, hidden),
              "bias_ih_l0": (rows,), "bias_hh_l0": (rows,)}
    return {name: (0.5 * rng.standard_normal(shape)).astype(np.float32) for name, shape in shapes.items()}


WEIGHTS = rnn_weights(CONFIG)
ORACLE = oracle_outputs(CONFIG, WEIGHTS, INPUTS)
REFERENCE: Outputs = {name: array.astype(np.float32) for name, array in ORACLE.items()}


def facts(*, inputs_sha256: str = INPUTS_SHA, weights_sha256: str = WEIGHTS_SHA) -> CaseFacts:
    return CaseFacts(config=CONFIG, inputs_sha256=inputs_sha256, weights_sha256=weights_sha256, oracle=ORACLE,
                     variant_oracle=lambda variant: oracle_outputs(CONFIG, WEIGHTS, INPUTS, variant))


def golden(tensors: Outputs | None = None, *, fingerprints: dict[str, dict[str, Any]] | None = None,
           backend_tensors: dict[str, Outputs] | None = None) -> Golden:
    return Golden(config=CONFIG, tensors=REFERENCE if tensors is None else tensors, weights_sha256=WEIGHTS_SHA,
                  inputs_sha256=INPUTS_SHA, recorded_by="eager", recorded_at="2025-01-01T00:00:00+00:00",
                  environment=ENVIRONMENT, backend_fingerprints=fingerprints or {},
                  backend_tensors=backend_tensors or {})


def execution(first: Outputs, second: Outputs | None = None) -> Execution:
    second = {name: array.copy() for name, array in first.items()} if second is None else second
    return Execution(first=first, second=second, notes=("a warning",), prepare_seconds=0.5, run_seconds=0.25)


def moved(outputs: Outputs, name: str, index: tuple[int, ...], delta: float) -> Outputs:
    """A copy with one element moved by delta (in the tensor's dtype)."""
    copy = {key: array.copy() for key, array in outputs.items()}
    copy[name][index] += np.asarray(delta, dtype=copy[name].dtype)
    return copy


def nudged(outputs: Outputs, name: str, index: tuple[int, ...], steps: int) -> Outputs:
    """A copy with one element moved up by exactly `steps` ulps."""
    copy = {key: array.copy() for key, array in outputs.items()}
    for _ in range(steps):
        copy[name][index] = np.nextafter(copy[name][index], np.float32(np.inf))
    return copy


def judge(first: Outputs, second: Outputs | None = None, case: CaseFacts | None = None,
          stored: Golden | None = None) -> Any:
    return judge_cell(case or facts(), "eager", stored or golden(), execution(first, second), TOLERANCE)


def test_oracle_outputs_satisfy_the_invariants_so_identical_outputs_are_identical() -> None:
    """The golden itself, run again: IDENTICAL, no repeat differences, run facts carried through."""
    assert REFERENCE["output"].shape == (3, 5, 8) and REFERENCE["h_n"].shape == (1, 5, 8)
    cell = judge({name: array.copy() for name, array in REFERENCE.items()})
    assert cell.verdict is Verdict.IDENTICAL
    assert [t.status for t in cell.tensors] == [TensorStatus.IDENTICAL] * 2
    assert cell.repeat == () and cell.invariant_violations == () and cell.cause is None and cell.analysis == ()
    assert cell.argmax_changed == 0 and cell.outputs_sha256 == arrays_sha256(REFERENCE)
    assert (cell.notes, cell.prepare_seconds, cell.run_seconds) == (("a warning",), 0.5, 0.25)
    assert cell.oracle is not None and cell.golden_oracle is not None
    assert 0 < cell.oracle.max_abs < 1e-7 and cell.oracle == cell.golden_oracle  # float32 rounding of the oracle


def test_a_tiny_change_is_close_with_ulps() -> None:
    """1e-7 on one element of an early step (invariants untouched) is within tolerance but not bitwise."""
    cell = judge(moved(REFERENCE, "output", (0, 1, 2), 1e-7))
    assert cell.verdict is Verdict.CLOSE
    output = cell.tensors[0]
    assert output.status is TensorStatus.CLOSE and output.mismatched == 0
    assert cell.max_ulps > 0 and 0 < cell.max_abs < 2e-7
    assert cell.cause is None and cell.analysis == ()  # cause and analysis are for DRIFT only


@pytest.mark.parametrize(("inputs_sha256", "weights_sha256", "cause"), [
    (INPUTS_SHA, WEIGHTS_SHA, Cause.COMPUTE),
    (INPUTS_SHA, "other weights", Cause.WEIGHTS),
    ("other inputs", WEIGHTS_SHA, Cause.INPUTS),
    ("other inputs", "other weights", Cause.INPUTS),  # the first link that differs
])
def test_drift_is_attributed_to_the_first_link_that_differs(
    inputs_sha256: str, weights_sha256: str, cause: Cause
) -> None:
    case = facts(inputs_sha256=inputs_sha256, weights_sha256=weights_sha256)
    cell = judge(moved(REFERENCE, "output", (0, 1, 2), 1e-3), case=case)
    assert cell.verdict is Verdict.DRIFT and cell.cause is cause
    assert cell.tensors[0].mismatched == 1 and cell.tensors[0].worst_index == (0, 1, 2)
    assert attribute(case, golden()) is cause


def test_drift_analysis_gives_error_by_step_and_by_layer() -> None:
    """Three steps are too few for a growth verdict: the errors are listed; h_n is untouched."""
    cell = judge(moved(REFERENCE, "output", (0, 1, 2), 1e-3))
    assert cell.analysis[0].startswith("error by time step: 1.0e-03, 0.0e+00, 0.0e+00")
    assert cell.analysis[1] == "h_n error by layer/direction: layer 1 0.0e+00"
    assert len(cell.analysis) == 2  # rnn_tanh has no named exporter pitfall


def test_drift_that_moves_the_argmax_is_counted() -> None:
    index = (1, 3, int(REFERENCE["output"][1, 3].argmin()))
    cell = judge(moved(REFERENCE, "output", index, 10.0))
    assert cell.verdict is Verdict.DRIFT and cell.argmax_changed == 1


def test_analysis_names_the_gru_linear_before_reset_pitfall() -> None:
    """GRU outputs computed with linear_before_reset=0 (as some ONNX exports do) are named as such."""
    config = RnnConfig(cell="gru")
    weights = rnn_weights(config, gates=3)
    expected = {k: v.astype(np.float32) for k, v in oracle_outputs(config, weights, INPUTS).items()}
    onnx_like = oracle_outputs(config, weights, INPUTS, Variant(gru_linear_before_reset=False))
    actual = {k: v.astype(np.float32) for k, v in onnx_like.items()}
    assert np.abs(actual["output"] - expected["output"]).max() > 1e-3  # the variant really differs
    case = CaseFacts(config=config, inputs_sha256=INPUTS_SHA, weights_sha256=WEIGHTS_SHA,
                     oracle=oracle_outputs(config, weights, INPUTS),
                     variant_oracle=lambda variant: oracle_outputs(config, weights, INPUTS, variant))
    lines = analysis_lines(case, expected, actual)
    assert any(line.startswith("known exporter pitfall: GRU linear_before_reset") for line in lines)
    assert not any("pitfall" in line for line in analysis_lines(case, expected, moved(expected, "output",
                                                                                      (0, 0, 0), 1e-3)))


def test_transposed_output_is_shape_with_a_layout_diagnosis() -> None:
    swapped = {"output": REFERENCE["output"].transpose(1, 0, 2).copy(), "h_n": REFERENCE["h_n"].copy()}
    cell = judge(swapped)
    assert cell.verdict is Verdict.SHAPE
    output = cell.tensors[0]
    assert output.status is TensorStatus.SHAPE and (output.expected_shape, output.actual_shape) == ((3, 5, 8),
                                                                                                   (5, 3, 8))
    assert "golden.transpose(1, 0, 2) bitwise" in output.diagnosis
    assert "batch and sequence axes are swapped" in output.diagnosis
    assert "(seq, batch, directions*hidden) = (3, 5, 8)" in output.diagnosis
    assert cell.tensors[1].diagnosis == ""  # h_n is fine: no diagnosis
    assert cell.argmax_changed is None and cell.cause is Cause.COMPUTE  # same inputs and weights: the compute


def test_diagnose_leaves_value_comparisons_alone_and_explains_a_dtype_change() -> None:
    as_double = {"output": REFERENCE["output"].astype(np.float64), "h_n": REFERENCE["h_n"]}
    tensors = (compare_tensor("output", REFERENCE["output"], as_double["output"], TOLERANCE),
               compare_tensor("h_n", REFERENCE["h_n"], REFERENCE["h_n"], TOLERANCE))
    output, h_n = diagnose(tensors, REFERENCE, as_double, CONFIG)
    assert output.diagnosis == "dtype changed float32 -> float64 (same shape); values agree bitwise after casting"
    assert h_n is tensors[1]


def test_two_different_runs_are_nondeterministic() -> None:
    second = nudged(REFERENCE, "output", (0, 0, 0), 1)
    cell = judge({name: array.copy() for name, array in REFERENCE.items()}, second)
    assert cell.verdict is Verdict.NONDETERMINISTIC
    assert [(t.name, t.status, t.max_ulps) for t in cell.repeat if not t.passed] == [("output", TensorStatus.DRIFT,
                                                                                       1)]
    assert cell.cause is None


def test_h_n_inconsistent_with_output_breaks_the_invariant() -> None:
    """The golden matches the result (identical tensors), yet h_n is not output's last step."""
    broken = moved(REFERENCE, "h_n", (0, 2, 5), 1e-3)
    cell = judge(broken, stored=golden(broken))
    assert all(t.status is TensorStatus.IDENTICAL for t in cell.tensors)
    assert cell.verdict is Verdict.INVARIANT
    assert cell.invariant_violations == ("output[last step] (forward) != h_n[last layer] (max diff 1.0e-03)",)


def test_verdict_precedence_shape_then_nondeterminism_then_invariants_then_values() -> None:
    a = np.zeros((2, 2), dtype=np.float32)
    shape = compare_tensor("output", a, a.T.reshape(4), TOLERANCE)
    drift = compare_tensor("output", a, a + 1, TOLERANCE)
    close = compare_tensor("output", a, a + 1e-7, TOLERANCE)
    same = compare_tensor("output", a, a.copy(), TOLERANCE)
    assert (shape.status, drift.status, close.status, same.status) == (
        TensorStatus.SHAPE, TensorStatus.DRIFT, TensorStatus.CLOSE, TensorStatus.IDENTICAL)
    assert verdict_of([shape], [drift], ["broken"]) is Verdict.SHAPE
    assert verdict_of([drift], [drift], ["broken"]) is Verdict.NONDETERMINISTIC
    assert verdict_of([drift], [same], ["broken"]) is Verdict.INVARIANT
    assert verdict_of([close, drift], [same], []) is Verdict.DRIFT
    assert verdict_of([close, same], [same], []) is Verdict.CLOSE
    assert verdict_of([same, same], [same], []) is Verdict.IDENTICAL


def test_past_unchanged_when_the_backend_computes_its_recorded_bytes() -> None:
    stored = golden(fingerprints={"eager": {"status": "ok", "sha256": arrays_sha256(REFERENCE)}})
    past = compare_with_past("eager", stored, {name: array.copy() for name, array in REFERENCE.items()})
    assert past.status is PastStatus.UNCHANGED and past.max_ulps == 0


def test_past_moved_by_ulps_against_the_reference() -> None:
    stored = golden(fingerprints={"eager": {"status": "ok", "sha256": arrays_sha256(REFERENCE)}})
    past = compare_with_past("eager", stored, nudged(REFERENCE, "h_n", (0, 4, 7), 3))
    assert past.status is PastStatus.MOVED and past.max_ulps == 3
    assert 0 < past.max_abs < 1e-6 and past.summary.startswith("moved by 3 ulps (max abs ")


def test_past_moved_is_measured_against_the_backends_own_stored_outputs() -> None:
    """A backend that was 2 ulps off the reference and now computes the reference moved by 2 ulps."""
    own = nudged(REFERENCE, "output", (2, 0, 1), 2)
    stored = golden(fingerprints={"onnx": {"status": "ok", "sha256": arrays_sha256(own)}},
                    backend_tensors={"onnx": own})
    assert compare_with_past("onnx", stored, own).status is PastStatus.UNCHANGED
    past = compare_with_past("onnx", stored, {name: array.copy() for name, array in REFERENCE.items()})
    assert past.status is PastStatus.MOVED and past.max_ulps == 2


def test_past_moved_when_shapes_changed() -> None:
    stored = golden(fingerprints={"eager": {"status": "ok", "sha256": arrays_sha256(REFERENCE)}})
    swapped = {"output": REFERENCE["output"].transpose(1, 0, 2).copy(), "h_n": REFERENCE["h_n"]}
    past = compare_with_past("eager", stored, swapped)
    assert past.status is PastStatus.MOVED and "shapes changed" in past.summary


@pytest.mark.parametrize("fingerprints", [{}, {"eager": {"status": "error", "reason": "export failed"}},
                                          {"other": {"status": "ok", "sha256": arrays_sha256(REFERENCE)}}])
def test_past_is_new_without_a_usable_fingerprint_of_this_backend(fingerprints: dict[str, dict[str, Any]]) -> None:
    past = compare_with_past("eager", golden(fingerprints=fingerprints), REFERENCE)
    assert past.status is PastStatus.NEW


def test_judge_cell_carries_the_past_comparison() -> None:
    stored = golden(fingerprints={"eager": {"status": "ok", "sha256": arrays_sha256(REFERENCE)}})
    cell = judge(nudged(REFERENCE, "output", (0, 0, 0), 1), stored=stored)
    assert cell.verdict is Verdict.CLOSE
    assert cell.past is not None and cell.past.status is PastStatus.MOVED and cell.past.max_ulps == 1


def test_judge_cell_carries_where_the_artifact_came_from() -> None:
    ran = execution({name: array.copy() for name, array in REFERENCE.items()})
    cell = judge_cell(facts(), "onnxruntime-legacy", golden(), dataclasses.replace(ran, artifact_source="cache"),
                      TOLERANCE)
    assert cell.artifact_source == "cache"


def test_a_replay_without_weights_is_judged_without_oracle_or_pitfalls() -> None:
    """A replayed artifact's weights are out of reach: no oracle distance, no pitfall check (which needs the
    oracle's variants), and a GRU drift is still judged and analysed."""
    gru = RnnConfig(cell="gru")
    weights = rnn_weights(gru, gates=3)
    reference = {name: array.astype(np.float32) for name, array in oracle_outputs(gru, weights, INPUTS).items()}
    stored = dataclasses.replace(golden(reference), config=gru)
    blind = CaseFacts(config=gru, inputs_sha256=INPUTS_SHA, weights_sha256=WEIGHTS_SHA, oracle=None,
                      variant_oracle=None)
    cell = judge_cell(blind, "onnxruntime-legacy", stored, execution(moved(reference, "output", (0, 1, 3), 0.1)),
                      TOLERANCE)
    assert cell.verdict is Verdict.DRIFT and cell.oracle is None and cell.golden_oracle is None
    assert cell.analysis and not any("pitfall" in line for line in cell.analysis)


@dataclasses.dataclass(frozen=True)
class Weights:
    """A side of the weights comparison: the weights' sha256 and each parameter's (tiny handmade values)."""

    weights_sha256: str
    parameters_sha256: dict[str, str]


RECORDED = Weights("w0", {"gru.weight_hh_l0": "a", "gru.bias_hh_l0": "b", "head.weight": "c"})


def test_the_golden_weights_are_no_change_whatever_the_parameters_say() -> None:
    """weights_sha256 decides: equal means unchanged, even if per-parameter hashes disagree (or one side has none)."""
    assert changed_weights(Weights("w0", {"gru.weight_hh_l0": "z"}), RECORDED) is None
    assert changed_weights(Weights("w0", {}), RECORDED) is None


def test_changed_weights_name_exactly_the_parameters_whose_sha256_differs() -> None:
    now = Weights("w1", {"gru.weight_hh_l0": "A", "gru.bias_hh_l0": "b", "head.weight": "c"})
    assert changed_weights(now, RECORDED) == WeightsChange(parameters=("gru.weight_hh_l0",), named=True)


def test_parameters_only_one_side_has_are_changed_the_models_order_first() -> None:
    now = Weights("w1", {"extra.weight": "e", "head.weight": "C", "gru.weight_hh_l0": "a", "gru.bias_hh_l0": "b"})
    removed = Weights("w1", {"gru.weight_hh_l0": "a"})
    assert changed_weights(now, RECORDED) == WeightsChange(parameters=("extra.weight", "head.weight"))
    assert changed_weights(removed, RECORDED) == WeightsChange(parameters=("gru.bias_hh_l0", "head.weight"))


def test_same_parameters_in_another_order_name_none_but_are_named() -> None:
    reordered = Weights("w1", dict(reversed(list(RECORDED.parameters_sha256.items()))))
    assert changed_weights(reordered, RECORDED) == WeightsChange(parameters=(), named=True)


@pytest.mark.parametrize(("now", "recorded"), [
    pytest.param(Weights("w1", {"gru.weight_hh_l0": "A"}), Weights("w0", {}), id="golden-before-v3"),
    pytest.param(Weights("w1", {}), RECORDED, id="no-hashes-now"),
])
def test_without_per_parameter_hashes_on_a_side_no_parameter_is_named(now: Weights, recorded: Weights) -> None:
    assert changed_weights(now, recorded) == WeightsChange(parameters=(), named=False)


def test_judge_cell_names_changed_weights_on_a_passing_cell_without_a_cause() -> None:
    """Identical outputs from other weights (a change too small to show): the cell passes, and names them."""
    case = dataclasses.replace(facts(weights_sha256="other weights"), parameters_sha256={"weight_hh_l0": "new"})
    stored = dataclasses.replace(golden(), parameters_sha256={"weight_hh_l0": "old"})
    cell = judge_cell(case, "eager", stored, execution({n: a.copy() for n, a in REFERENCE.items()}), TOLERANCE)
    assert cell.verdict is Verdict.IDENTICAL and cell.cause is None
    assert cell.weights_changed == WeightsChange(parameters=("weight_hh_l0",))
    assert judge_cell(facts(), "eager", stored, execution(REFERENCE), TOLERANCE).weights_changed is None
