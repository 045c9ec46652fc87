"""Judging packed sequences and training runs, pure (arrays in, findings out; no torch): valid steps only,
zeros at padded steps, the last valid step against h_n, and where two loss curves part."""

from __future__ import annotations

import numpy as np
import pytest

from harness.judging.judge import CaseFacts, Execution, judge_cell, training_lines, valid_steps_only
from harness.judging.oracle import oracle_outputs
from harness.judging.rnn_checks import check_invariants, valid_steps_mask
from harness.model.config import RnnConfig
from harness.model.environment import current_environment
from harness.model.tolerance import BITWISE, Tolerance
from harness.store.golden import Golden
from harness.verdicts import Verdict

Outputs = dict[str, np.ndarray]
PACKED = RnnConfig(input="gaussian", seq_len=4, batch=3, lengths=(4, 1, 3))
BI_PACKED = RnnConfig(cell="gru", input="gaussian", seq_len=4, batch=3, lengths=(2, 4, 3), bidirectional=True)
TRAIN = RnnConfig(check="train", train_steps=5)
TOLERANCE = Tolerance(atol=1e-6, rtol=0.0)


def weights(config: RnnConfig) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    gates = 3 if config.cell == "gru" else 1
    rows, hidden = gates * config.hidden_size, config.hidden_size
    found = {}
    for suffix in ["_l0", *(["_l0_reverse"] if config.bidirectional else [])]:
        shapes = {"weight_ih": (rows, config.input_size), "weight_hh": (rows, hidden), "bias_ih": (rows,),
                  "bias_hh": (rows,)}
        found.update({name + suffix: 0.5 * rng.standard_normal(shape) for name, shape in shapes.items()})
    return found


def packed_outputs(config: RnnConfig) -> Outputs:
    inputs = {"input": np.random.default_rng(5).standard_normal((config.seq_len, config.batch, config.input_size))}
    return {name: array.astype(np.float32) for name, array in oracle_outputs(config, weights(config), inputs).items()}


def golden_of(config: RnnConfig, tensors: Outputs) -> Golden:
    return Golden(config=config, tensors=tensors, weights_sha256="w", inputs_sha256="i", recorded_by="eager",
                  recorded_at="2025-01-01T00:00:00+00:00", environment=current_environment(torch_threads=1))


def judged(config: RnnConfig, expected: Outputs, actual: Outputs, second: Outputs | None = None) -> object:
    facts = CaseFacts(config=config, inputs_sha256="i", weights_sha256="w", oracle=None, variant_oracle=None)
    execution = Execution(first=actual, second=actual if second is None else second, notes=(), prepare_seconds=0.0,
                          run_seconds=0.0)
    return judge_cell(facts, "b", golden_of(config, expected), execution, TOLERANCE)


def test_the_mask_marks_each_sequences_valid_steps() -> None:
    assert valid_steps_mask(PACKED).tolist() == [[True, True, True], [True, False, True], [True, False, True],
                                                 [True, False, False]]
    assert valid_steps_mask(RnnConfig()) is None
    assert valid_steps_mask(RnnConfig(input="gaussian", seq_len=2, batch=1, lengths=(2,), check="grad")) is None


@pytest.mark.parametrize("config", [PACKED, BI_PACKED], ids=["forward", "bidirectional"])
def test_oracle_outputs_of_packed_sequences_keep_every_invariant(config: RnnConfig) -> None:
    outputs = packed_outputs(config)
    assert check_invariants(config, outputs) == ()
    assert not outputs["output"][~valid_steps_mask(config)].any()  # type: ignore[operator]
    assert np.abs(outputs["output"][valid_steps_mask(config)]).min() > 0


def test_a_nonzero_padded_step_is_named_with_its_step_and_element() -> None:
    outputs = packed_outputs(PACKED)
    outputs["output"][3, 2, 5] = np.float32(-2.5e-3)  # element 2 has length 3: step 3 is padding
    assert check_invariants(PACKED, outputs) == (
        "output at padded steps is not zero: max |x| 2.5e-03 (first at step 3, batch element 2 of length 3)",)


def test_the_last_valid_step_of_each_sequence_must_equal_h_n() -> None:
    outputs = packed_outputs(PACKED)
    outputs["h_n"][0, 1, 0] += np.float32(1e-3)  # element 1 (length 1): its h_n is output[0, 1]
    assert check_invariants(PACKED, outputs) == (
        "output[last step] (forward) != h_n[last layer] (max diff 1.0e-03)",)
    reverse = packed_outputs(BI_PACKED)
    reverse["h_n"][1, 0, 0] += np.float32(1e-3)  # the reverse direction ends at step 0 for every element
    assert check_invariants(BI_PACKED, reverse) == (
        "output[first step] (reverse) != h_n[last layer, reverse] (max diff 1.0e-03)",)


def test_padded_steps_are_zeroed_before_comparing_and_nothing_else_is() -> None:
    outputs = packed_outputs(PACKED)
    leaked = {**outputs, "output": outputs["output"] + np.float32(1.0)}
    compared = valid_steps_only(PACKED, leaked)
    assert not compared["output"][~valid_steps_mask(PACKED)].any()  # type: ignore[operator]
    assert np.array_equal(compared["output"][valid_steps_mask(PACKED)], leaked["output"][valid_steps_mask(PACKED)])
    assert compared["h_n"] is leaked["h_n"] and compared["output"].dtype == np.float32
    assert valid_steps_only(RnnConfig(), leaked) is leaked
    assert valid_steps_only(PACKED, {"output": np.zeros((2, 3, 8))})["output"].shape == (2, 3, 8)  # other shape


def test_padding_that_leaks_is_an_invariant_failure_not_drift() -> None:
    expected = packed_outputs(PACKED)
    leaked = {name: array.copy() for name, array in expected.items()}
    leaked["output"][1:, 1] = np.float32(0.5)
    cell = judged(PACKED, expected, leaked)
    assert cell.verdict is Verdict.INVARIANT  # type: ignore[attr-defined]
    assert all(tensor.passed for tensor in cell.tensors)  # type: ignore[attr-defined]
    moved = {name: array.copy() for name, array in expected.items()}
    moved["output"][0, 0] += np.float32(1e-3)  # a valid step, not the last of its sequence
    assert judged(PACKED, expected, moved).verdict is Verdict.DRIFT  # type: ignore[attr-defined]


def losses(*values: float) -> Outputs:
    return {"loss": np.array(values, dtype=np.float32)}


def test_identical_loss_curves_say_so() -> None:
    assert training_lines(TRAIN, losses(1, 2, 3), losses(1, 2, 3), TOLERANCE, "two runs") == (
        "loss curves (two runs): identical over all 3 steps",)


def test_the_first_diverging_step_and_the_largest_gap_are_named() -> None:
    line = training_lines(TRAIN, losses(1.0, 0.9, 0.8, 0.7, 0.6), losses(1.0, 0.9, 0.8000001, 0.70001, 0.6001),
                          TOLERANCE, "golden vs this run")
    assert line == ("loss curves (golden vs this run): first diverge at step 3 of 5 (|d loss| 6.0e-08), beyond "
                    "tolerance from step 4; largest |d loss| 1.0e-04 at step 5",)
    within = training_lines(TRAIN, losses(1.0, 0.5), losses(1.0, 0.5000001), Tolerance(atol=0.0, rtol=1e-6), "x")
    assert within == ("loss curves (x): first diverge at step 2 of 2 (|d loss| 1.2e-07), within tolerance "
                      "throughout; largest |d loss| 1.2e-07 at step 2",)
    relative = training_lines(TRAIN, losses(100.0, 100.0), losses(100.0, 100.001), Tolerance(atol=0.0, rtol=1e-4),
                              "x")
    assert "within tolerance throughout" in relative[0]  # rtol scales with the golden's loss


def test_loss_curves_only_for_training_runs_with_comparable_losses() -> None:
    assert training_lines(RnnConfig(check="grad"), losses(1.0), losses(2.0), BITWISE, "x") == ()
    assert training_lines(TRAIN, losses(1.0, 2.0), losses(1.0), BITWISE, "x") == ()
    assert training_lines(TRAIN, {}, losses(1.0), BITWISE, "x") == ()


def test_a_training_run_that_drifts_or_repeats_differently_explains_itself() -> None:
    expected = {**losses(1.0, 0.9, 0.8, 0.7, 0.6), "weight.w": np.ones(3, dtype=np.float32)}
    drifted = {**losses(1.0, 0.9, 0.8, 0.7, 0.5), "weight.w": np.ones(3, dtype=np.float32)}
    cell = judged(TRAIN, expected, drifted)
    assert cell.verdict is Verdict.DRIFT  # type: ignore[attr-defined]
    assert cell.analysis == ("loss curves (golden vs this run): first diverge at step 5 of 5 (|d loss| 1.0e-01), "  # type: ignore[attr-defined]
                             "beyond tolerance from step 5; largest |d loss| 1.0e-01 at step 5",)
    second = {**losses(1.0, 0.9, 0.8, 0.70000006, 0.6), "weight.w": np.ones(3, dtype=np.float32)}
    noisy = judged(TRAIN, expected, expected, second)
    assert noisy.verdict is Verdict.NONDETERMINISTIC  # type: ignore[attr-defined]
    assert noisy.analysis[0].startswith("loss curves (two runs): first diverge at step 4 of 5")  # type: ignore[attr-defined]
    assert judged(TRAIN, expected, expected).analysis == ()  # type: ignore[attr-defined]


def test_lengths_that_fill_the_sequence_leave_no_padding_to_check() -> None:
    full = RnnConfig(input="gaussian", seq_len=4, batch=3, lengths=(4, 4, 4))
    assert check_invariants(full, packed_outputs(full)) == ()


def test_a_gap_exactly_at_the_tolerance_is_within_it() -> None:
    line = training_lines(TRAIN, losses(1.0, 1.0), losses(1.0, 1.5), Tolerance(atol=0.5, rtol=0.0), "x")
    assert "within tolerance throughout" in line[0]


def test_drift_analysis_uses_the_cells_tolerance_for_the_loss_curves() -> None:
    expected = losses(1.0, 0.9, 0.8, 0.7, 0.6)
    drifted = losses(1.0, 0.9, 0.8000001, 0.7, 0.5)  # step 3 differs within 1e-6, step 5 beyond it
    assert judged(TRAIN, expected, drifted).analysis == (  # type: ignore[attr-defined]
        "loss curves (golden vs this run): first diverge at step 3 of 5 (|d loss| 6.0e-08), beyond tolerance "
        "from step 5; largest |d loss| 1.0e-01 at step 5",)


def test_the_reference_distance_says_what_it_is_measured_against() -> None:
    from harness.judging.compare import FLOAT64_EAGER, ORACLE

    expected = losses(1.0, 0.9)
    facts = CaseFacts(config=TRAIN, inputs_sha256="i", weights_sha256="w", oracle=losses(1.0, 0.95),
                      variant_oracle=None, reference=FLOAT64_EAGER)
    execution = Execution(first=expected, second=expected, notes=(), prepare_seconds=0.0, run_seconds=0.0)
    cell = judge_cell(facts, "b", golden_of(TRAIN, expected), execution, TOLERANCE)
    assert cell.oracle.reference == FLOAT64_EAGER and cell.golden_oracle.reference == FLOAT64_EAGER  # type: ignore[union-attr]
    assert cell.oracle.max_abs == pytest.approx(0.05, abs=1e-6)  # type: ignore[union-attr]
    plain = CaseFacts(config=TRAIN, inputs_sha256="i", weights_sha256="w", oracle=losses(1.0, 0.95),
                      variant_oracle=None)
    assert judge_cell(plain, "b", golden_of(TRAIN, expected), execution, TOLERANCE).oracle.reference == ORACLE  # type: ignore[union-attr]
