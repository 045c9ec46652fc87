from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import SuiteError, UnknownNameError
from harness.model.suite import REFERENCE_CONFIG, load_suite
from tests.conftest import write_suite


def test_default_suite_starts_with_the_reference_case_and_covers_every_axis() -> None:
    suite = load_suite()
    configs = suite.configs
    assert configs[0] == REFERENCE_CONFIG
    assert len(configs) >= 41
    assert {c.cell for c in configs} == {"rnn_tanh", "rnn_relu", "lstm", "gru"}
    assert {c.dtype for c in configs} == {"float32", "float64", "float16", "bfloat16"}
    assert {c.initial_state for c in configs} == {"zeros", "random"}
    assert {c.input for c in configs} == {"hello", "random", "gaussian"}
    assert {c.check for c in configs} == {"forward", "grad", "train"}
    for cell in ("rnn_tanh", "lstm", "gru"):  # each input kind and check, for each cell
        of_cell = [c for c in configs if c.cell == cell]
        assert any(c.input == "gaussian" and not c.lengths and not c.reshaped_at_export for c in of_cell)
        assert any(c.lengths for c in of_cell) and any(c.reshaped_at_export for c in of_cell)
        assert any(c.check == "grad" for c in of_cell)
        assert any(c.check == "train" and 10 <= c.train_steps <= 30 for c in of_cell)
    packed = [list(c.lengths) for c in configs if c.lengths]
    assert any(lengths == sorted(lengths, reverse=True) for lengths in packed)
    assert any(lengths != sorted(lengths, reverse=True) for lengths in packed)
    assert any(c.bidirectional for c in configs) and any(c.batch_first for c in configs)
    assert any(not c.bias for c in configs) and any(c.dropout for c in configs)
    assert any(c.proj_size for c in configs) and any(c.num_layers >= 3 for c in configs)
    assert len({c.seed for c in configs}) >= 3
    assert max(c.seq_len for c in configs) >= 200
    assert max(c.hidden_size for c in configs) >= 128
    assert len(set(suite.ids())) == len(configs)


def test_select_keeps_suite_order_and_names_unknown_ids() -> None:
    suite = load_suite()
    assert [c.id for c in suite.select(["gru-h8-s0", "rnn-h8-s0"])] == ["rnn-h8-s0", "gru-h8-s0"]
    with pytest.raises(UnknownNameError, match="unknown config 'nope'"):
        suite.select(["nope"])


def test_malformed_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[[case]]\ncell = \n", encoding="utf-8")
    with pytest.raises(SuiteError, match=f"{path}: not valid TOML"):
        load_suite(path)


def test_impossible_case_names_file_and_case_number(tmp_path: Path) -> None:
    path = write_suite(tmp_path / "suite.toml", 'cell = "gru"\nproj_size = 4')
    with pytest.raises(SuiteError, match=r"suite.toml: case 2: .*proj_size is an LSTM feature"):
        load_suite(path)


def test_a_user_suite_may_hold_any_configs(tmp_path: Path) -> None:
    path = tmp_path / "suite.toml"
    path.write_text('[[case]]\ncell = "gru"\n', encoding="utf-8")
    assert load_suite(path).ids() == ["gru-h8-s0"]


def test_a_suite_that_asks_for_the_reference_case_must_start_with_it(tmp_path: Path) -> None:
    path = tmp_path / "suite.toml"
    path.write_text('[suite]\nrequire_reference_case = true\n\n[[case]]\ncell = "gru"\n', encoding="utf-8")
    with pytest.raises(SuiteError, match="case 1 must be the reference notebook case"):
        load_suite(path)


def test_the_default_suite_file_asks_for_the_reference_case() -> None:
    from harness.model.suite import default_suite_path

    assert "require_reference_case = true" in default_suite_path().read_text(encoding="utf-8")


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    path = write_suite(tmp_path / "suite.toml", 'cell = "gru"', 'cell = "gru"\nseed = 0')
    with pytest.raises(SuiteError, match="case 3: duplicate id 'gru-h8-s0' \\(first at case 2\\)"):
        load_suite(path)


def test_missing_suite_file(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="cannot read suite"):
        load_suite(tmp_path / "absent.toml")
