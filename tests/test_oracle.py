"""The NumPy float64 oracle agrees with eager float64 on every default config (to 1e-12)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from harness.backends.wrappers import flat_module_for
from harness.judging.oracle import oracle_outputs
from harness.model.case import build_case
from harness.model.config import RnnConfig
from harness.model.suite import load_suite

# The oracle covers the forward pass of bare RNN stacks (gradients and training have none).
DEFAULT_CONFIGS = [config for config in load_suite().configs if config.check == "forward" and config.plain_rnn]


def eager_and_oracle(config: RnnConfig) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    case = build_case(dataclasses.replace(config, dtype="float64"))
    args = [torch.from_numpy(array) for array in case.inputs.values()]
    with torch.no_grad():
        if config.lengths:  # packed: the wrapper every backend runs (pack, run, pad back with zeros)
            outputs = flat_module_for(case)(*args)
            eager = dict(zip(case.forward_names, outputs, strict=True))
        elif config.cell == "lstm":
            state = (args[1], args[2]) if len(args) == 3 else None
            output, (h_n, c_n) = case.module(args[0], state)
            eager = {"output": output, "h_n": h_n, "c_n": c_n}
        else:
            output, h_n = case.module(*args)
            eager = {"output": output, "h_n": h_n}
    weights = {name: tensor.numpy() for name, tensor in case.module.state_dict().items()}
    return {k: v.numpy() for k, v in eager.items()}, oracle_outputs(case.config, weights, case.inputs)


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN:UserWarning")
@pytest.mark.parametrize("config", DEFAULT_CONFIGS, ids=lambda config: config.id)
def test_oracle_matches_eager_float64(config: RnnConfig) -> None:
    eager, oracle = eager_and_oracle(config)
    assert list(oracle) == list(eager)
    for name in eager:
        assert oracle[name].shape == eager[name].shape, name
        assert np.max(np.abs(oracle[name] - eager[name])) <= 1e-12, name


def test_oracle_sees_a_gate_order_mistake() -> None:
    """Swapping two LSTM gates (the PyTorch i,f,g,o vs ONNX i,o,f,c pitfall) is far outside 1e-12."""
    config = RnnConfig(cell="lstm")
    case = build_case(dataclasses.replace(config, dtype="float64"))
    weights = {name: tensor.numpy().copy() for name, tensor in case.module.state_dict().items()}
    reference = oracle_outputs(config, weights, case.inputs)
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        i, f, g, o = np.split(weights[name], 4, axis=0)
        weights[name] = np.concatenate([i, o, f, g], axis=0)
    swapped = oracle_outputs(config, weights, case.inputs)
    assert np.max(np.abs(swapped["output"] - reference["output"])) > 1e-3
