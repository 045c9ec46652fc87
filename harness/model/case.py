"""A built case: the seeded module, its named inputs, and sha256 fingerprints of both.

Models are built exactly as the reference notebook does: ``torch.manual_seed(seed)`` immediately
before constructing the module (inside ``fork_rng`` so the caller's RNG state is untouched), then
``.eval()``, then the dtype. Inputs and random initial states come from local NumPy generators
keyed on the seed, never from torch's global RNG (harness.model.inputs, which needs no torch).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harness.model.axes import output_names
from harness.model.config import RnnConfig
from harness.model.hashing import arrays_sha256
from harness.model.inputs import build_inputs


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
    from harness.model.tensors import to_numpy

    arrays = {name: to_numpy(tensor) for name, tensor in module.state_dict().items()}
    return arrays_sha256(arrays)
