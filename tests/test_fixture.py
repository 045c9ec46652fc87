"""The rnn_golden fixture's life cycle, driven directly (no pytest inner run): record, pass, drift,
attribution when the model is given, thread counts, and one golden per name per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.errors import HarnessError
from harness.session.fixture import FixtureGoldens, produced_from_model, produced_from_outputs


def seeded_gru(seed: int = 7) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.GRU(input_size=3, hidden_size=6, num_layers=2).eval()


INPUTS = torch.linspace(-1, 1, 4 * 2 * 3).reshape(4, 2, 3)


def test_missing_then_recorded_then_passing_then_drift(tmp_path: Path) -> None:
    produced = produced_from_model(seeded_gru(), INPUTS, threads=1)
    missing = FixtureGoldens(update=False, force=False, threads=1).check(tmp_path, "gru", produced, test_id="t")
    assert not missing.passed and "record it with pytest --harness-update" in missing.lines[0]
    recorded = FixtureGoldens(update=True, force=False, threads=1).check(tmp_path, "gru", produced, test_id="t")
    assert recorded.passed and recorded.recorded
    again = FixtureGoldens(update=False, force=False, threads=1).check(tmp_path, "gru", produced, test_id="t")
    assert again.passed and not again.recorded and "matches" in again.lines[0]


@pytest.mark.parametrize(("change", "cause"), [("inputs", "inputs changed"), ("weights", "weights changed")])
def test_with_the_model_a_drift_names_its_first_changed_link(tmp_path: Path, change: str, cause: str) -> None:
    FixtureGoldens(update=True, force=False, threads=1).check(
        tmp_path, "gru", produced_from_model(seeded_gru(), INPUTS, threads=1), test_id="t")
    model, inputs = (seeded_gru(), INPUTS * 1.01) if change == "inputs" else (seeded_gru(seed=8), INPUTS)
    result = FixtureGoldens(update=False, force=False, threads=1).check(
        tmp_path, "gru", produced_from_model(model, inputs, threads=1), test_id="t")
    assert not result.passed
    assert result.lines[0].endswith(f"DRIFT (tolerance atol=2e-06 rtol=1e-05); cause: {cause}")


def test_same_model_and_inputs_with_other_outputs_is_compute(tmp_path: Path) -> None:
    good = produced_from_model(seeded_gru(), INPUTS, threads=1)
    FixtureGoldens(update=True, force=False, threads=1).check(tmp_path, "gru", good, test_id="t")
    tensors = {name: array + array.dtype.type(1e-3) for name, array in good.tensors.items()}
    moved = type(good)(tensors=tensors, torch_threads=1, weights_sha256=good.weights_sha256,
                       inputs_sha256=good.inputs_sha256)
    result = FixtureGoldens(update=False, force=False, threads=1).check(tmp_path, "gru", moved, test_id="t")
    assert "cause: compute changed (same inputs and weights)" in result.lines[0]


def test_outputs_alone_give_no_attribution(tmp_path: Path) -> None:
    with torch.no_grad():
        outputs = seeded_gru()(INPUTS)
    FixtureGoldens(update=True, force=False, threads=1).check(tmp_path, "gru", produced_from_outputs(outputs),
                                                              test_id="t")
    with torch.no_grad():
        other = seeded_gru(seed=8)(INPUTS)
    result = FixtureGoldens(update=False, force=False, threads=1).check(tmp_path, "gru", produced_from_outputs(other),
                                                                        test_id="t")
    assert not result.passed and "cause:" not in result.lines[0]


def test_the_recorded_thread_count_is_the_real_one(tmp_path: Path) -> None:
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with torch.no_grad():
            outputs = seeded_gru()(INPUTS)
        FixtureGoldens(update=True, force=False, threads=1).check(tmp_path, "given", produced_from_outputs(outputs),
                                                                  test_id="t")
        FixtureGoldens(update=True, force=False, threads=1).check(
            tmp_path, "run", produced_from_model(seeded_gru(), INPUTS, threads=1), test_id="t")
        assert torch.get_num_threads() == 2  # pinning restores the caller's setting
    finally:
        torch.set_num_threads(saved)
    given = json.loads((tmp_path / "given.json").read_text())["environment"]["torch_threads"]
    pinned = json.loads((tmp_path / "run.json").read_text())["environment"]["torch_threads"]
    assert (given, pinned) == (2, 1)


def test_two_tests_claiming_one_golden_name_is_an_error_naming_both(tmp_path: Path) -> None:
    goldens = FixtureGoldens(update=True, force=False, threads=1)
    produced = produced_from_model(seeded_gru(), INPUTS, threads=1)
    goldens.check(tmp_path, "shared", produced, test_id="tests/test_a.py::test_one")
    goldens.check(tmp_path, "shared", produced, test_id="tests/test_a.py::test_one")  # the same test again: fine
    with pytest.raises(HarnessError, match=r"shared\.json is used by two tests: tests/test_a\.py::test_one and "
                                           r"tests/test_b\.py::test_two"):
        goldens.check(tmp_path, "shared", produced, test_id="tests/test_b.py::test_two")
