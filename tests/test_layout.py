"""Layout diagnosis: each usual explanation is named, with proof, and a wrong one is not."""

from __future__ import annotations

import numpy as np

from harness.judging.layout import diagnose_layout
from harness.model.axes import tensor_axes
from harness.model.config import RnnConfig
from tests.test_case import notebook_outputs

RNG = np.random.default_rng(0)


def test_the_notebook_mislabel_is_explained_as_a_seq_batch_swap() -> None:
    """The notebook calls its (3, 5, 8) output "batch, seq, hidden"; it is (seq, batch, hidden).

    A consumer that follows the comment and hands back batch-major data gets exactly this diagnosis.
    """
    output, _ = notebook_outputs()
    as_the_comment_says = np.ascontiguousarray(output.transpose(1, 0, 2))  # (batch=5, seq=3, hidden)
    sentence = diagnose_layout("output", output, as_the_comment_says, tensor_axes(RnnConfig())["output"])
    assert sentence is not None
    assert sentence.startswith("output == golden.transpose(1, 0, 2) bitwise: the batch and sequence axes are swapped")
    assert "golden axes are (seq, batch, directions*hidden) = (3, 5, 8)" in sentence


def test_missing_leading_axis_from_unbatched_input() -> None:
    h_n = RNG.standard_normal((2, 1, 8)).astype(np.float32)  # two layers, a batch of one
    sentence = diagnose_layout("h_n", h_n, h_n[:, 0, :], ("layers*directions", "batch", "hidden"))
    assert sentence is not None and "lost axis 1 (batch) of size 1" in sentence and "unbatched" in sentence
    assert "gained an axis of size 1" in (diagnose_layout("h_n", h_n[:, 0, :], h_n) or "")


def test_directions_stacked_instead_of_concatenated() -> None:
    concatenated = RNG.standard_normal((3, 5, 16)).astype(np.float32)
    stacked = concatenated.reshape(3, 5, 2, 8)
    assert "stacked on a new axis" in (diagnose_layout("output", concatenated, stacked) or "")
    assert "concatenated on the last axis" in (diagnose_layout("output", stacked, concatenated) or "")


def test_projection_changes_the_last_dimension() -> None:
    expected = RNG.standard_normal((3, 5, 4)).astype(np.float32)
    actual = RNG.standard_normal((3, 5, 8)).astype(np.float32)
    sentence = diagnose_layout("output", expected, actual, ("seq", "batch", "directions*proj"))
    assert sentence is not None and "only the last dimension (directions*proj) changed, 4 -> 8" in sentence
    assert "proj_size" in sentence


def test_dtype_change_is_named_with_value_agreement() -> None:
    expected = RNG.standard_normal((2, 3)).astype(np.float32)
    assert diagnose_layout("h_n", expected, expected.astype(np.float64)) == (
        "dtype changed float32 -> float64 (same shape); values agree bitwise after casting")


def test_a_transposed_shape_with_other_values_is_not_called_a_swap() -> None:
    expected = RNG.standard_normal((3, 5, 8)).astype(np.float32)
    unrelated = RNG.standard_normal((5, 3, 8)).astype(np.float32)
    assert diagnose_layout("output", expected, unrelated) is None


def test_flipping_batch_first_against_a_golden_recorded_without_it_is_diagnosed_as_a_swap() -> None:
    import dataclasses

    from harness.backends import get_backend
    from harness.model.case import build_case
    from harness.model.tolerance import TolerancePolicy
    from harness.session.core import Session
    from harness.session.execution import case_facts, judged_cell
    from harness.session.settings import Settings

    recorded_without = Session(Settings(live_reference=True)).golden(RnnConfig(cell="gru"))
    assert recorded_without is not None
    flipped = build_case(dataclasses.replace(RnnConfig(cell="gru"), batch_first=True))
    tolerance = TolerancePolicy().for_cell("eager", "float32")
    with Session().pinned():  # the golden was computed with one thread, and GRU bits depend on it
        cell = judged_cell(flipped, case_facts(flipped), get_backend("eager"), recorded_without, tolerance,
                           include_slow=False)
    output = next(t for t in cell.tensors if t.name == "output")
    assert cell.verdict.value == "SHAPE"
    assert (output.expected_shape, output.actual_shape) == ((3, 5, 8), (5, 3, 8))
    assert output.diagnosis.startswith("output == golden.transpose(1, 0, 2) bitwise: the batch and sequence axes "
                                       "are swapped, as when batch_first changes")
    assert next(t for t in cell.tensors if t.name == "h_n").status.value == "identical"
