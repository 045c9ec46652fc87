"""RNN-aware checks: error along the sequence, per layer and direction, the invariants every
backend's outputs must satisfy, the argmax a downstream head would read, and named exporter
pitfalls tested against oracle variants. Pure NumPy."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from harness.judging.oracle import Variant
from harness.model.axes import expected_shapes
from harness.model.config import RnnConfig

GROWTH_FACTOR = 10.0  # last-quarter error this many times the first quarter's: a recurrence bug
PITFALL_MATCH = 1e-5
NAMED_PITFALLS: dict[str, tuple[str, Variant]] = {
    "gru": ("GRU linear_before_reset (the exporter computed linear_before_reset=0; PyTorch issue 189225)",
            Variant(gru_linear_before_reset=False)),
    "lstm": ("LSTM gate order (PyTorch i,f,g,o weights read as ONNX i,o,f,c without reordering)",
             Variant(lstm_gate_blocks=(0, 2, 3, 1))),
}


def step_errors(config: RnnConfig, expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Max |error| at each time step of `output`."""
    error = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    by_step = error.transpose(1, 0, 2) if config.batch_first else error
    return np.asarray(by_step.reshape(by_step.shape[0], -1).max(axis=1))


def growth_line(errors: np.ndarray) -> str:
    """Whether error grows along the sequence (a recurrence bug) or stays flat (rounding)."""
    if errors.size < 4:
        return f"error by time step: {', '.join(f'{e:.1e}' for e in errors)}"
    quarter = max(1, errors.size // 4)
    first, last = float(errors[:quarter].mean()), float(errors[-quarter:].mean())
    if first == 0 < last:
        shape = "grows along the sequence (from exact at the start): the signature of a recurrence bug"
    elif first > 0 and last > GROWTH_FACTOR * first:
        shape = f"grows along the sequence (x{last / first:.0f}): the signature of a recurrence bug"
    else:
        shape = "does not grow along the sequence: rounding-like"
    return (f"error by time step: first quarter mean {first:.1e}, last quarter mean {last:.1e}, "
            f"max {errors.max():.1e} at step {int(errors.argmax())}; {shape}")


def state_error_line(config: RnnConfig, name: str, expected: np.ndarray, actual: np.ndarray) -> str:
    """Max |error| of h_n / c_n per layer (1-based) and direction."""
    error = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    parts = []
    for index in range(error.shape[0]):
        layer, direction = divmod(index, config.num_directions)
        label = f"layer {layer + 1}" + (" reverse" if direction else "")  # 1-based, as localisation says
        parts.append(f"{label} {error[index].max():.1e}")
    return f"{name} error by layer/direction: {', '.join(parts)}"


def check_invariants(config: RnnConfig, outputs: dict[str, np.ndarray]) -> tuple[str, ...]:
    """Violations of what the PyTorch documentation guarantees, checked without any golden: shapes, the
    last valid step's output equal to h_n, and (packed sequences) zeros at every padded step."""
    shapes = expected_shapes(config)
    if shapes is None:  # a user's model, gradients, training: nothing the documentation fixes
        return ()
    problems = [f"{name} has shape {outputs[name].shape if name in outputs else 'none'}, "
                f"the documentation says {shape}"
                for name, shape in shapes.items() if name not in outputs or outputs[name].shape != shape]
    if problems:
        return tuple(problems)
    output = outputs["output"].transpose(1, 0, 2) if config.batch_first else outputs["output"]
    features = config.output_features
    last_layer = outputs["h_n"][-config.num_directions:]
    lengths = np.array(config.lengths or [config.seq_len] * config.batch)
    last_steps = output[lengths - 1, np.arange(config.batch)]  # (batch, features): each sequence's last valid step
    forward = np.abs(last_steps[:, :features] - last_layer[0]).max()
    if forward > 0:
        problems.append(f"output[last step] (forward) != h_n[last layer] (max diff {forward:.1e})")
    if config.bidirectional:
        reverse = np.abs(output[0, :, features:] - last_layer[1]).max()
        if reverse > 0:
            problems.append(f"output[first step] (reverse) != h_n[last layer, reverse] (max diff {reverse:.1e})")
    valid = valid_steps_mask(config)
    if valid is not None:
        padded = ~valid  # (seq, batch)
        leaked = np.abs(output.astype(np.float64)[padded]).max() if padded.any() else 0.0
        if leaked > 0:
            step, element = np.argwhere(padded & (np.abs(output).max(axis=2) > 0))[0]
            problems.append(f"output at padded steps is not zero: max |x| {leaked:.1e} (first at step {step}, "
                            f"batch element {element} of length {lengths[element]})")
    return tuple(problems)


def valid_steps_mask(config: RnnConfig) -> np.ndarray | None:
    """For packed sequences, True at each (step, batch element) within its length, in the output's layout."""
    if not config.lengths or config.model or config.check != "forward":
        return None
    return np.arange(config.seq_len)[:, None] < np.array(config.lengths)[None, :]


def argmax_changes(config: RnnConfig, expected: np.ndarray, actual: np.ndarray) -> int:
    """Positions (step, batch) where the argmax over output features differs."""
    del config  # the feature axis is last in every layout
    return int(np.count_nonzero(expected.argmax(axis=-1) != actual.argmax(axis=-1)))


def named_pitfall(
    config: RnnConfig, actual: dict[str, np.ndarray], variant_oracle: Callable[[Variant], dict[str, np.ndarray]]
) -> str | None:
    """The named exporter pitfall whose oracle variant reproduces the actual outputs, if any."""
    if config.cell not in NAMED_PITFALLS:
        return None
    name, variant = NAMED_PITFALLS[config.cell]
    expected = variant_oracle(variant)
    comparable = [key for key in expected if key in actual and actual[key].shape == expected[key].shape]
    if comparable and all(np.abs(actual[key] - expected[key]).max() <= PITFALL_MATCH for key in comparable):
        return f"known exporter pitfall: {name}: the result matches that variant of the oracle within {PITFALL_MATCH}"
    return None
