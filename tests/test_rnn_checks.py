"""RNN-aware checks (harness.judging.rnn_checks), pure: error by time step and growth, error by layer and
direction, the documented invariants between output and h_n, argmax changes, named exporter pitfalls."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from harness.judging.oracle import Variant
from harness.judging.rnn_checks import (
    argmax_changes,
    check_invariants,
    growth_line,
    named_pitfall,
    state_error_line,
    step_errors,
)
from harness.model.axes import expected_shapes
from harness.model.config import RnnConfig

Outputs = dict[str, np.ndarray]
CONFIGS = [
    RnnConfig(),
    RnnConfig(batch_first=True),
    RnnConfig(bidirectional=True),
    RnnConfig(cell="gru", num_layers=2, bidirectional=True, batch_first=True),
    RnnConfig(cell="lstm", proj_size=4, num_layers=2, bidirectional=True),
]


def consistent_outputs(config: RnnConfig, seed: int = 0) -> Outputs:
    """Random outputs of the documented shapes whose last layer's h_n is what `output` says it is."""
    rng = np.random.default_rng(seed)
    outputs = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in expected_shapes(config).items()}
    by_step = outputs["output"].transpose(1, 0, 2) if config.batch_first else outputs["output"]
    features, directions = config.output_features, config.num_directions
    outputs["h_n"][-directions] = by_step[-1, :, :features]
    if config.bidirectional:
        outputs["h_n"][-1] = by_step[0, :, features:]
    return outputs


# -- invariants ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", CONFIGS, ids=lambda config: config.id)
def test_consistent_outputs_break_no_invariant(config: RnnConfig) -> None:
    assert check_invariants(config, consistent_outputs(config)) == ()


@pytest.mark.parametrize("config", CONFIGS, ids=lambda config: config.id)
def test_a_last_step_that_is_not_h_n_is_named(config: RnnConfig) -> None:
    outputs = consistent_outputs(config)
    outputs["h_n"][-config.num_directions, 0, 0] += np.float32(0.25)
    assert check_invariants(config, outputs) == ("output[last step] (forward) != h_n[last layer] (max diff 2.5e-01)",)


@pytest.mark.parametrize("config", [c for c in CONFIGS if c.bidirectional], ids=lambda config: config.id)
def test_a_reverse_first_step_that_is_not_h_n_is_named(config: RnnConfig) -> None:
    outputs = consistent_outputs(config)
    outputs["h_n"][-1, 4, 1] += np.float32(0.5)
    assert check_invariants(config, outputs) == (
        "output[first step] (reverse) != h_n[last layer, reverse] (max diff 5.0e-01)",)
    outputs["h_n"][-2, 0, 0] += np.float32(0.25)
    assert len(check_invariants(config, outputs)) == 2


def test_earlier_layers_are_not_constrained() -> None:
    config = RnnConfig(num_layers=2)
    outputs = consistent_outputs(config)
    outputs["h_n"][0] = 7.0
    assert check_invariants(config, outputs) == ()


def test_missing_or_misshapen_outputs_are_named_before_any_value_is_read() -> None:
    config = RnnConfig()
    assert check_invariants(config, {"output": np.zeros((5, 3, 8), np.float32)}) == (
        "output has shape (5, 3, 8), the documentation says (3, 5, 8)",
        "h_n has shape none, the documentation says (1, 5, 8)",
    )
    lstm = RnnConfig(cell="lstm")
    outputs = consistent_outputs(lstm)
    del outputs["c_n"]
    assert check_invariants(lstm, outputs) == ("c_n has shape none, the documentation says (1, 5, 8)",)


# -- error along the sequence ----------------------------------------------------------------------------


def test_step_errors_are_per_time_step_in_either_layout() -> None:
    expected = np.zeros((3, 5, 8), np.float16)
    actual = expected.copy()
    actual[2, 4, 7] = 0.5
    actual[0, 1, 1] = -0.25
    assert step_errors(RnnConfig(), expected, actual).tolist() == [0.25, 0.0, 0.5]
    batch_major = np.ascontiguousarray(actual.transpose(1, 0, 2))  # (batch, seq, features)
    errors = step_errors(RnnConfig(batch_first=True), np.zeros_like(batch_major), batch_major)
    assert errors.tolist() == [0.25, 0.0, 0.5] and errors.dtype == np.float64


def test_growth_line_lists_a_short_sequence() -> None:
    assert growth_line(np.array([1e-3, 0.0, 2.5e-7])) == "error by time step: 1.0e-03, 0.0e+00, 2.5e-07"


def test_growth_line_of_a_growing_error() -> None:
    errors = np.array([1e-7] * 6 + [1e-5, 2e-5])  # quarters of two steps: 1e-7, then 1.5e-5
    assert growth_line(errors) == (
        "error by time step: first quarter mean 1.0e-07, last quarter mean 1.5e-05, max 2.0e-05 at step 7; "
        "grows along the sequence (x150): the signature of a recurrence bug")


@pytest.mark.parametrize(("errors", "summary"), [
    ([2e-7, 1e-7, 1e-7, 1e-7], "first quarter mean 2.0e-07, last quarter mean 1.0e-07, max 2.0e-07 at step 0"),
    ([1e-7, 1e-7, 1e-7, 1e-7], "first quarter mean 1.0e-07, last quarter mean 1.0e-07, max 1.0e-07 at step 0"),
    ([1.0, 1.0, 3.0, 10.0], "first quarter mean 1.0e+00, last quarter mean 1.0e+01, max 1.0e+01 at step 3"),  # x10
    ([1.0, 0.0, 0.0, 2.0], "first quarter mean 1.0e+00, last quarter mean 2.0e+00, max 2.0e+00 at step 3"),
    ([0.0, 0.0, 0.0, 0.0, 0.0], "first quarter mean 0.0e+00, last quarter mean 0.0e+00, max 0.0e+00 at step 0"),
])
def test_growth_line_of_an_error_that_does_not_grow(errors: list[float], summary: str) -> None:
    assert growth_line(np.array(errors)) == (
        f"error by time step: {summary}; does not grow along the sequence: rounding-like")


def test_growth_line_quarters_are_a_quarter_of_the_steps() -> None:
    errors = np.array([1e-7, 3e-7] + [0.0] * 8 + [4e-6, 6e-6])  # 12 steps: quarters of 3
    assert growth_line(errors).startswith(
        "error by time step: first quarter mean 1.3e-07, last quarter mean 3.3e-06, max 6.0e-06 at step 11; grows "
        "along the sequence (x25)")


# -- error by layer and direction ------------------------------------------------------------------------


def test_state_error_line_names_every_layer_and_direction() -> None:
    config = RnnConfig(num_layers=2, bidirectional=True)
    expected = np.zeros((4, 5, 8), np.float32)
    actual = expected.copy()
    actual[0, 1, 2] = 1e-3
    actual[3, 4, 7] = -0.5
    assert state_error_line(config, "h_n", expected, actual) == (
        "h_n error by layer/direction: layer 1 1.0e-03, layer 1 reverse 0.0e+00, layer 2 0.0e+00, "
        "layer 2 reverse 5.0e-01")
    assert state_error_line(RnnConfig(num_layers=2), "c_n", expected[:2], actual[:2]) == (
        "c_n error by layer/direction: layer 1 1.0e-03, layer 2 0.0e+00")


# -- argmax ----------------------------------------------------------------------------------------------


def test_argmax_changes_count_positions_whose_largest_feature_moved() -> None:
    expected = np.zeros((3, 5, 8), np.float32)
    expected[..., 2] = 1.0
    actual = expected.copy()
    actual[0, 0, 5] = 2.0
    actual[2, 4, 2] = -1.0  # the argmax of (2, 4) falls back to feature 0
    actual[1, 1, 3] = 0.5  # not enough to move it
    assert argmax_changes(RnnConfig(), expected, actual) == 2
    assert argmax_changes(RnnConfig(), expected, expected.copy()) == 0


# -- named pitfalls --------------------------------------------------------------------------------------


def oracle_of(outputs: Outputs, seen: list[Variant]) -> Callable[[Variant], Outputs]:
    def variant_oracle(variant: Variant) -> Outputs:
        seen.append(variant)
        return outputs
    return variant_oracle


def test_a_gru_matching_the_linear_before_reset_variant_is_named() -> None:
    actual = {"output": np.zeros((3, 5, 8)), "h_n": np.zeros((1, 5, 8))}
    variant = {"output": np.full((3, 5, 8), 1e-5), "h_n": np.zeros((1, 5, 8)),  # exactly PITFALL_MATCH away
               "c_n": np.zeros((1, 5, 8)), "extra": np.zeros(2)}  # not in the result / another shape: ignored
    actual["extra"] = np.zeros(3)
    seen: list[Variant] = []
    assert named_pitfall(RnnConfig(cell="gru"), actual, oracle_of(variant, seen)) == (
        "known exporter pitfall: GRU linear_before_reset (the exporter computed linear_before_reset=0; PyTorch "
        "issue 189225): the result matches that variant of the oracle within 1e-05")
    assert seen == [Variant(gru_linear_before_reset=False)]


def test_an_lstm_matching_the_gate_order_variant_is_named() -> None:
    outputs = {"output": np.ones((3, 5, 8)), "h_n": np.ones((1, 5, 8)), "c_n": np.ones((1, 5, 8))}
    seen: list[Variant] = []
    sentence = named_pitfall(RnnConfig(cell="lstm"), outputs, oracle_of(outputs, seen))
    assert sentence is not None and sentence.startswith("known exporter pitfall: LSTM gate order (PyTorch i,f,g,o")
    assert seen == [Variant(lstm_gate_blocks=(0, 2, 3, 1))]


def test_no_pitfall_when_the_variant_differs_or_nothing_compares() -> None:
    actual = {"output": np.zeros((3, 5, 8)), "h_n": np.zeros((1, 5, 8))}
    far = {"output": np.full((3, 5, 8), 2e-5), "h_n": np.zeros((1, 5, 8))}
    assert named_pitfall(RnnConfig(cell="gru"), actual, oracle_of(far, [])) is None
    assert named_pitfall(RnnConfig(cell="gru"), actual, oracle_of({"output": np.zeros(3)}, [])) is None
    assert named_pitfall(RnnConfig(cell="gru"), actual, oracle_of({}, [])) is None


@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu"])
def test_plain_rnns_have_no_named_pitfall_and_no_variant_is_computed(cell: str) -> None:
    seen: list[Variant] = []
    assert named_pitfall(RnnConfig(cell=cell), {}, oracle_of({}, seen)) is None  # type: ignore[arg-type]
    assert seen == []
