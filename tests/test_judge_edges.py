"""Edges of judging one cell (harness.judging.judge), pure: hand-made outputs, no torch and no oracle run."""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.judging.compare import compare_outputs
from harness.judging.judge import CaseFacts, Execution, analysis_lines, compare_with_past, diagnose, judge_cell
from harness.judging.oracle import Variant
from harness.model.config import RnnConfig
from harness.model.environment import current_environment
from harness.model.hashing import arrays_sha256
from harness.model.tolerance import Tolerance
from harness.store.golden import Golden
from harness.verdicts import PastStatus, TensorStatus, Verdict

Outputs = dict[str, np.ndarray]
TOLERANCE = Tolerance(atol=2e-6, rtol=1e-5)
ENVIRONMENT = current_environment(torch_threads=1)


def zeros(config: RnnConfig) -> Outputs:
    """All-zero outputs of the hello shapes: they satisfy every invariant."""
    outputs = {"output": np.zeros((3, 5, 8), np.float32), "h_n": np.zeros((1, 5, 8), np.float32)}
    if config.cell == "lstm":
        outputs["c_n"] = np.zeros((1, 5, 8), np.float32)
    return outputs


def facts(config: RnnConfig) -> CaseFacts:
    def no_variant(variant: Variant) -> Outputs:
        return {}
    oracle = {name: array.astype(np.float64) for name, array in zeros(config).items()}
    return CaseFacts(config=config, inputs_sha256="i", weights_sha256="w", oracle=oracle, variant_oracle=no_variant)


def golden(config: RnnConfig, tensors: Outputs, fingerprints: dict[str, dict[str, Any]] | None = None) -> Golden:
    return Golden(config=config, tensors=tensors, weights_sha256="w", inputs_sha256="i", recorded_by="eager",
                  recorded_at="2026-01-01T00:00:00+00:00", environment=ENVIRONMENT,
                  backend_fingerprints=fingerprints or {})


def test_a_cell_result_names_its_config_backend_and_tolerance() -> None:
    config = RnnConfig()
    execution = Execution(first=zeros(config), second=zeros(config), notes=(), prepare_seconds=0.0, run_seconds=0.0)
    cell = judge_cell(facts(config), "onnxruntime-legacy", golden(config, zeros(config)), execution, TOLERANCE)
    assert (cell.config_id, cell.backend, cell.tolerance, cell.verdict) == (
        "rnn-h8-s0", "onnxruntime-legacy", TOLERANCE, Verdict.IDENTICAL)
    assert cell.argmax_changed == 0 and cell.past is not None and cell.past.status is PastStatus.NEW


def test_lstm_drift_analysis_covers_c_n_and_skips_a_state_whose_shape_changed() -> None:
    config = RnnConfig(cell="lstm")
    expected, actual = zeros(config), zeros(config)
    actual["c_n"][0, 2, 3] = 0.25
    assert analysis_lines(facts(config), expected, actual) == (
        "error by time step: 0.0e+00, 0.0e+00, 0.0e+00",
        "h_n error by layer/direction: layer 1 0.0e+00",
        "c_n error by layer/direction: layer 1 2.5e-01",
    )
    actual["h_n"] = np.zeros((5, 8), np.float32)
    assert [line.split(" ")[0] for line in analysis_lines(facts(config), expected, actual)] == ["error", "c_n"]


def test_diagnose_explains_each_shape_change_by_its_own_name_and_axes() -> None:
    rng = np.random.default_rng(3)
    expected = {"output": rng.standard_normal((3, 5, 8)).astype(np.float32),
                "extra": rng.standard_normal((2, 1, 4)).astype(np.float32),  # a name without documented axes
                "h_n": np.zeros((1, 5, 8), np.float32)}
    actual = {"output": expected["output"].transpose(1, 0, 2).copy(), "extra": expected["extra"][:, 0, :].copy(),
              "h_n": np.zeros(7, np.float32)}  # no explanation fits
    output, extra, h_n = diagnose(compare_outputs(expected, actual, TOLERANCE), expected, actual, RnnConfig())
    assert output.diagnosis.startswith("output == golden.transpose(1, 0, 2) bitwise: the batch and sequence axes are "
                                       "swapped, as when batch_first changes; golden axes are (seq, batch, ")
    assert extra.diagnosis == ("extra lost axis 1 of size 1: as when unbatched input (no batch axis) replaces a batch "
                               "of one, or the reverse")
    assert (h_n.status, h_n.diagnosis) == (TensorStatus.SHAPE, "")


def test_past_summaries() -> None:
    config = RnnConfig()
    outputs = zeros(config)
    recorded = {"eager": {"status": "ok", "sha256": arrays_sha256(outputs)}}
    assert compare_with_past("eager", golden(config, outputs), outputs).summary == (
        "no fingerprint of this backend in the golden")
    assert compare_with_past("eager", golden(config, outputs, recorded), outputs).summary == (
        "bitwise unchanged since the golden was recorded")
    swapped = {"output": np.zeros((5, 3, 8), np.float32), "h_n": outputs["h_n"]}
    assert compare_with_past("eager", golden(config, outputs, recorded), swapped).summary == (
        "moved: shapes changed since the golden was recorded")
    moved = {"output": np.full((3, 5, 8), 0.5, np.float32), "h_n": outputs["h_n"]}
    past = compare_with_past("eager", golden(config, outputs, recorded), moved)
    assert (past.status, past.max_abs, past.max_ulps) == (PastStatus.MOVED, 0.5, 0x3F000000)
    assert past.summary == f"moved by {0x3F000000} ulps (max abs 5.0e-01) since the golden was recorded"


def test_past_of_zero_size_tensors_moved_by_nothing() -> None:
    """The fingerprint differs (another backend's bytes), yet there are no elements to have moved."""
    config = RnnConfig()
    empty = {"output": np.zeros((0, 8), np.float32)}
    past = compare_with_past("eager", golden(config, empty, {"eager": {"status": "ok", "sha256": "0" * 64}}), empty)
    assert (past.status, past.max_ulps, past.max_abs) == (PastStatus.MOVED, 0, 0.0)
    assert past.summary == "moved by 0 ulps (max abs 0.0e+00) since the golden was recorded"
