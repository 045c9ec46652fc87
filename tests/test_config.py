from __future__ import annotations

import pytest

from harness.errors import ConfigError
from harness.model.config import RnnConfig


def test_reference_config_is_the_notebook_case() -> None:
    config = RnnConfig()
    assert (config.cell, config.input_size, config.hidden_size, config.seed) == ("rnn_tanh", 4, 8, 0)
    assert (config.batch_first, config.input, config.seq_len, config.batch) == (False, "hello", 3, 5)
    assert config.id == "rnn-h8-s0"


def test_id_names_every_non_default_axis() -> None:
    config = RnnConfig(cell="lstm", num_layers=2, bidirectional=True, batch_first=True, bias=False,
                       dropout=0.5, proj_size=4, dtype="float64", seed=3, initial_state="random",
                       input="random", seq_len=20, batch=2, input_size=6)
    assert config.id == "lstm-i6-h8-l2-bi-bf-nobias-do0.5-p4-f64-h0rand-t20b2-s3"


def test_content_hash_is_stable_and_sensitive() -> None:
    assert RnnConfig().content_hash == RnnConfig().content_hash
    assert RnnConfig().content_hash != RnnConfig(seed=1).content_hash
    assert len(RnnConfig().content_hash) == 64


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cell": "gru", "proj_size": 4}, "proj_size is an LSTM feature"),
        ({"cell": "lstm", "proj_size": 8}, "proj_size must be in [1, hidden_size=8)"),
        ({"dropout": 0.5}, "dropout acts between layers"),
        ({"dropout": 1.0, "num_layers": 2}, "dropout must be in [0, 1)"),
        ({"cell": "transformer"}, "cell must be one of"),
        ({"dtype": "int8"}, "dtype must be one of"),
        ({"hidden_size": 0}, "hidden_size must be at least 1"),
        ({"input_size": 5}, "input 'hello' is one-hot over h/e/l/o"),
        ({"seq_len": 7}, "fixed 3 x 5 notebook batch"),
        ({"seed": -1}, "seed must be in 0..2\\^63-1"),
    ],
)
def test_impossible_combinations_are_refused_with_a_reason(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        RnnConfig(**fields)  # type: ignore[arg-type]


def test_from_dict_rejects_unknown_keys_and_wrong_types() -> None:
    with pytest.raises(ConfigError, match="unknown config key"):
        RnnConfig.from_dict({"cell": "gru", "hiden_size": 8})
    with pytest.raises(ConfigError, match="'hidden_size' must be int"):
        RnnConfig.from_dict({"hidden_size": "8"})
    with pytest.raises(ConfigError, match="'bidirectional' must be bool"):
        RnnConfig.from_dict({"bidirectional": 1})


def test_round_trip_through_dict() -> None:
    config = RnnConfig(cell="gru", num_layers=3, dropout=0.25)
    assert RnnConfig.from_dict(config.to_dict()) == config


def test_a_model_id_never_repeats_the_cell_its_factory_already_names() -> None:
    """`wlm_harness:build_lstm` with an LSTM is `wlm-harness.build-lstm-...`, not `...-build-lstm-lstm-...`;
    another cell from the same factory still says which."""
    assert RnnConfig(model="wlm_harness:build_lstm", cell="lstm", hidden_size=16, num_layers=2).id == (
        "wlm-harness.build-lstm-h16-l2-s0")
    assert RnnConfig(model="wlm_harness:build_lstm", cell="gru").id == "wlm-harness.build-lstm-gru-h8-s0"
    assert RnnConfig(model="hello_char_model:build", cell="lstm", hidden_size=16, num_layers=2).id == (
        "hello-char-model.build-lstm-h16-l2-s0")
