"""A built case: the seeded module, its named inputs, and sha256 fingerprints of both.

Models are built exactly as the reference notebook does: ``torch.manual_seed(seed)`` immediately
before constructing the module (inside ``fork_rng`` so the caller's RNG state is untouched), then
``.eval()``, then the dtype. Inputs and random initial states come from local NumPy generators
keyed on the seed, never from torch's global RNG.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harness.model.axes import output_names
from harness.model.config import RnnConfig
from harness.model.hashing import arrays_sha256

HELLO_VOCABULARY = {"h": [1, 0, 0, 0], "e": [0, 1, 0, 0], "l": [0, 0, 1, 0], "o": [0, 0, 0, 1]}
HELLO_WORDS = ("hello", "olleh", "lleel")  # the notebook's three rows: (3, 5, 4), sequence-first

_INPUT_STREAM = 1
_STATE_STREAM = 2


@dataclass(frozen=True, kw_only=True)
class Case:
    """Everything a backend needs to run one config, plus what attribution needs to know."""

    config: RnnConfig
    module: torch.nn.Module
    inputs: dict[str, np.ndarray]
    weights_sha256: str
    inputs_sha256: str

    @property
    def input_names(self) -> list[str]:
        return list(self.inputs)

    @property
    def output_names(self) -> list[str]:
        return output_names(self.config)


def hello_batch() -> np.ndarray:
    """The notebook's x: float32 (3, 5, 4); dim 0 is the sequence, dim 1 the batch of 5."""
    rows = [[HELLO_VOCABULARY[letter] for letter in word] for word in HELLO_WORDS]
    return np.array(rows, dtype=np.float32)


def build_inputs(config: RnnConfig) -> dict[str, np.ndarray]:
    """Named inputs in the config's dtype and layout: input, then h0 (and c0) for random state."""
    dtype = np.dtype(config.dtype)
    if config.input == "hello":
        sequence_first = hello_batch()
    else:
        rng = np.random.default_rng([config.seed, _INPUT_STREAM])
        tokens = rng.integers(0, config.input_size, size=(config.seq_len, config.batch))
        sequence_first = np.eye(config.input_size, dtype=np.float32)[tokens]
    layout = sequence_first.transpose(1, 0, 2) if config.batch_first else sequence_first
    inputs = {"input": np.ascontiguousarray(layout, dtype=dtype)}
    if config.initial_state == "random":
        rng = np.random.default_rng([config.seed, _STATE_STREAM])
        layers = config.num_layers * config.num_directions
        h_shape = (layers, config.batch, config.output_features)
        inputs["h0"] = rng.standard_normal(h_shape).astype(dtype)
        if config.cell == "lstm":
            inputs["c0"] = rng.standard_normal((layers, config.batch, config.hidden_size)).astype(dtype)
    return inputs


def build_module(config: RnnConfig) -> torch.nn.Module:
    """The seeded torch.nn.RNN/LSTM/GRU, in eval mode and the config's dtype."""
    kwargs = dict(
        input_size=config.input_size,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        bias=config.bias,
        batch_first=config.batch_first,
        dropout=config.dropout,
        bidirectional=config.bidirectional,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        if config.cell == "lstm":
            module: torch.nn.Module = torch.nn.LSTM(proj_size=config.proj_size, **kwargs)
        elif config.cell == "gru":
            module = torch.nn.GRU(**kwargs)
        else:
            module = torch.nn.RNN(nonlinearity=config.cell.removeprefix("rnn_"), **kwargs)
    return module.eval().to(getattr(torch, config.dtype))


def build_case(config: RnnConfig) -> Case:
    module = build_module(config)
    inputs = build_inputs(config)
    return Case(
        config=config,
        module=module,
        inputs=inputs,
        weights_sha256=weights_sha256(module),
        inputs_sha256=arrays_sha256(inputs),
    )


def weights_sha256(module: torch.nn.Module) -> str:
    """sha256 over every parameter's name, shape, dtype and bytes, in state_dict order."""
    arrays = {name: tensor.detach().cpu().numpy() for name, tensor in module.state_dict().items()}
    return arrays_sha256(arrays)
