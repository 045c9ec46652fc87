"""An independent float64 oracle: the RNN, LSTM (with projections) and GRU recurrences in NumPy,
written from the equations in the PyTorch documentation and fed the module's own weights.

It shares no code with any backend, so when two backends disagree it says which one moved away
from the mathematics. Gate orders are PyTorch's: LSTM (i, f, g, o), GRU (r, z, n).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from harness.model.config import RnnConfig

Weights = dict[str, np.ndarray]
Array = np.ndarray


@dataclass(frozen=True, kw_only=True)
class Variant:
    """A deliberate departure from PyTorch's equations, to test whether a backend made it.

    lstm_gate_blocks: which of PyTorch's (i, f, g, o) weight blocks each gate reads; (0, 2, 3, 1) is
    what ONNX (order i, o, f, c) computes from PyTorch-ordered weights left unreordered.
    gru_linear_before_reset: False applies r before the hidden linear map, as ONNX GRU with
    linear_before_reset=0 does.
    """

    lstm_gate_blocks: tuple[int, int, int, int] = (0, 1, 2, 3)
    gru_linear_before_reset: bool = True


PYTORCH = Variant()


def oracle_outputs(
    config: RnnConfig, weights: Weights, inputs: dict[str, Array], variant: Variant = PYTORCH
) -> dict[str, Array]:
    """Named float64 outputs (output, h_n[, c_n]) for the config, in the config's layout."""
    weights = {name: _permuted(name, np.asarray(value, dtype=np.float64), variant, config)
               for name, value in weights.items()}
    x = np.asarray(inputs["input"], dtype=np.float64)
    sequence = x.transpose(1, 0, 2) if config.batch_first else x
    batch = sequence.shape[1]
    directions = config.num_directions
    h0 = _initial(inputs.get("h0"), (config.num_layers * directions, batch, config.output_features))
    c0 = _initial(inputs.get("c0"), (config.num_layers * directions, batch, config.hidden_size))
    h_n, c_n = [], []
    steps_total = sequence.shape[0]
    lengths = np.array(config.lengths) if config.lengths else np.full(batch, steps_total)
    valid = np.arange(steps_total)[:, None] < lengths[None, :]  # (seq, batch): packed sequences stop early
    layer_input = sequence
    for layer in range(config.num_layers):
        direction_outputs = []
        for direction in range(directions):
            index = layer * directions + direction
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            steps, mask = (layer_input[::-1], valid[::-1]) if direction else (layer_input, valid)
            outputs, h_last, c_last = _run_direction(config, weights, suffix, steps, mask, h0[index], c0[index],
                                                     variant)
            direction_outputs.append(outputs[::-1] if direction else outputs)
            h_n.append(h_last)
            c_n.append(c_last)
        layer_input = np.concatenate(direction_outputs, axis=2)
    output = layer_input.transpose(1, 0, 2) if config.batch_first else layer_input
    result = {"output": output, "h_n": np.stack(h_n)}
    if config.cell == "lstm":
        result["c_n"] = np.stack(c_n)
    return result


def _permuted(name: str, value: Array, variant: Variant, config: RnnConfig) -> Array:
    if config.cell != "lstm" or variant.lstm_gate_blocks == PYTORCH.lstm_gate_blocks or "_hr" in name:
        return value
    blocks = np.split(value, 4, axis=0)
    return np.concatenate([blocks[i] for i in variant.lstm_gate_blocks], axis=0)


def _initial(given: Array | None, shape: tuple[int, ...]) -> Array:
    return np.zeros(shape) if given is None else np.asarray(given, dtype=np.float64)


def _run_direction(
    config: RnnConfig, weights: Weights, suffix: str, steps: Array, valid: Array, h: Array, c: Array,
    variant: Variant
) -> tuple[Array, Array, Array]:
    """One layer in one direction over the (already ordered) time steps. A batch element outside its valid
    steps keeps its state and outputs zeros, as a PackedSequence computes (the reverse direction of a
    shorter sequence therefore starts at its own last step)."""
    w_ih, w_hh = weights[f"weight_ih{suffix}"], weights[f"weight_hh{suffix}"]
    gates = 4 if config.cell == "lstm" else 3 if config.cell == "gru" else 1
    b_ih = weights.get(f"bias_ih{suffix}", np.zeros(gates * config.hidden_size))
    b_hh = weights.get(f"bias_hh{suffix}", np.zeros(gates * config.hidden_size))
    outputs = []
    for x_t, valid_t in zip(steps, valid, strict=True):
        input_part = x_t @ w_ih.T + b_ih
        hidden_part = h @ w_hh.T + b_hh
        c_next = c
        if config.cell == "lstm":
            h_next, c_next = _lstm_step(input_part + hidden_part, c, weights.get(f"weight_hr{suffix}"))
        elif config.cell == "gru":
            h_next = _gru_step(input_part, hidden_part, h, variant.gru_linear_before_reset, w_hh, b_hh)
        else:
            h_next = _ACTIVATIONS[config.cell](input_part + hidden_part)
        keep = valid_t[:, None]
        h, c = np.where(keep, h_next, h), np.where(keep, c_next, c)
        outputs.append(np.where(keep, h, 0.0))
    return np.stack(outputs), h, c


def _lstm_step(gates: Array, c: Array, w_hr: Array | None) -> tuple[Array, Array]:
    i, f, g, o = np.split(gates, 4, axis=-1)
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    h = _sigmoid(o) * np.tanh(c)
    return (h if w_hr is None else h @ w_hr.T), c


def _gru_step(
    input_part: Array, hidden_part: Array, h: Array, linear_before_reset: bool, w_hh: Array, b_hh: Array
) -> Array:
    i_r, i_z, i_n = np.split(input_part, 3, axis=-1)
    h_r, h_z, h_n = np.split(hidden_part, 3, axis=-1)
    r = _sigmoid(i_r + h_r)
    z = _sigmoid(i_z + h_z)
    if linear_before_reset:  # PyTorch: r multiplies (W_hn h + b_hn)
        n = np.tanh(i_n + r * h_n)
    else:  # ONNX linear_before_reset=0: W_hn (r * h) + b_hn
        w_hn, b_hn = np.split(w_hh, 3, axis=0)[2], np.split(b_hh, 3)[2]
        n = np.tanh(i_n + (r * h) @ w_hn.T + b_hn)
    return np.asarray((1.0 - z) * n + z * h)


def _sigmoid(x: Array) -> Array:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {"rnn_tanh": np.tanh, "rnn_relu": lambda x: np.maximum(x, 0.0)}
