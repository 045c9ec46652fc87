"""What the PyTorch documentation defines for a config's outputs: their names, shapes and axis meanings.

Pure: a config in, names and tuples out (no torch), so judging and reports can use it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from harness.model.config import RnnConfig

NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")  # a tensor name a golden can hold


def output_names(config: RnnConfig) -> list[str]:
    return ["output", "h_n", "c_n"] if config.cell == "lstm" else ["output", "h_n"]


def check_output_names(config: RnnConfig, forward: Sequence[str], inputs: Sequence[str],
                       parameters: Sequence[str]) -> list[str]:
    """What a check computes: the forward outputs; the loss and its gradient with respect to every floating
    input and parameter ("grad.<name>"); or the loss at every training step and the final weights."""
    if config.check == "grad":
        differentiable = [name for name in inputs if name != "lengths"]  # lengths are integers
        return ["loss", *(f"grad.{name}" for name in [*differentiable, *parameters])]
    if config.check == "train":
        return ["loss", *(f"weight.{name}" for name in parameters)]
    return list(forward)


def tensor_axes(config: RnnConfig) -> dict[str, tuple[str, ...]]:
    """The meaning of each output axis, as the PyTorch documentation defines it for this config (none for a
    user's model, gradients or training)."""
    if config.model or config.check != "forward":
        return {}
    features = "directions*proj" if config.proj_size else "directions*hidden"
    output = ("batch", "seq", features) if config.batch_first else ("seq", "batch", features)
    state = ("layers*directions", "batch", "proj" if config.proj_size else "hidden")
    axes: dict[str, tuple[str, ...]] = {"output": output, "h_n": state}
    if config.cell == "lstm":
        axes["c_n"] = ("layers*directions", "batch", "hidden")
    return axes


def expected_shapes(config: RnnConfig) -> dict[str, tuple[int, ...]] | None:
    """The shape of each output for this config, from the PyTorch documentation; None where the config alone
    does not fix them (a user's model, gradients, training: the golden's manifest declares them)."""
    if config.model or config.check != "forward":
        return None
    seq, batch = config.seq_len, config.batch
    output = (batch, seq) if config.batch_first else (seq, batch)
    layers = config.num_layers * config.num_directions
    shapes: dict[str, tuple[int, ...]] = {"output": (*output, config.num_directions * config.output_features),
                                          "h_n": (layers, batch, config.output_features)}
    if config.cell == "lstm":
        shapes["c_n"] = (layers, batch, config.hidden_size)
    return shapes
