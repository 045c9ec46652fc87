"""The behavioural probes of a stored artifact (harness.judging.sensitivity) on tiny arrays, and the probe
input they run on (harness.model.inputs.probe_inputs)."""

from __future__ import annotations

import numpy as np

from harness.judging.sensitivity import (
    disagreeing_outputs,
    disagreement_reason,
    insensitive_outputs,
    insensitive_reason,
)
from harness.model.config import RnnConfig
from harness.model.inputs import build_inputs, probe_inputs


def test_an_output_that_stays_put_is_insensitive_and_one_that_moves_is_not() -> None:
    first = {"output": np.array([0.5, -0.25], np.float32), "h_n": np.array([1.0], np.float32)}
    probed = {"output": np.array([0.5, -0.25], np.float32), "h_n": np.array([0.75], np.float32)}
    assert insensitive_outputs(first, probed) == ("output",)
    assert insensitive_outputs(first, {**probed, "output": np.array([0.5, -0.2], np.float32)}) == ()


def test_a_move_below_a_millionth_of_the_scale_is_no_move() -> None:
    first = {"y": np.array([100.0, 0.0])}
    assert insensitive_outputs(first, {"y": np.array([100.0, 5e-5])}) == ("y",)
    assert insensitive_outputs(first, {"y": np.array([100.0, 2e-4])}) == ()


def test_integer_missing_or_reshaped_outputs_are_not_judged_insensitive() -> None:
    first = {"ids": np.array([1, 2]), "y": np.zeros(2), "z": np.zeros(3)}
    assert insensitive_outputs(first, {"ids": np.array([1, 2]), "z": np.zeros(4)}) == ()


def test_two_exports_that_differ_beyond_the_loose_tolerance_disagree() -> None:
    fresh = {"output": np.array([0.5, 0.25]), "h_n": np.array([1.0])}
    assert disagreeing_outputs({"output": np.array([0.5, 0.2501]), "h_n": np.array([1.0])}, fresh) == ()
    differing = disagreeing_outputs({"output": np.array([0.5, 0.9]), "h_n": np.array([1.0, 2.0])}, fresh)
    assert differing[0][0] == "output" and abs(differing[0][1] - 0.65) < 1e-12
    assert differing[1] == ("h_n", float("inf"))
    assert "output by 0.65" in disagreement_reason(differing)
    assert "outputs output, h_n stay put" in insensitive_reason(("output", "h_n"))


def test_probe_inputs_redraw_every_float_keep_integers_and_repeat() -> None:
    config = RnnConfig(cell="gru", input="gaussian", seq_len=6, batch=4, lengths=(3, 6, 2, 5),
                       initial_state="random")
    inputs = build_inputs(config)
    probe = probe_inputs(config, inputs)
    assert list(probe) == list(inputs)
    for name, array in inputs.items():
        assert probe[name].shape == array.shape and probe[name].dtype == array.dtype
    assert not np.any(probe["input"] == inputs["input"])
    assert np.array_equal(probe["lengths"], inputs["lengths"])
    assert all(np.array_equal(probe[name], again) for name, again in probe_inputs(config, inputs).items())
