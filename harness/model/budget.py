"""How much memory a config needs, estimated before anything is built, so a suite that asks for
terabytes is refused with the estimate instead of failing in an allocation (or swapping for an hour).

The estimate is deliberately generous (every backend, two runs, the float64 oracle): it only has to
keep a hostile or mistyped suite out, never to bound an honest one tightly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.errors import HarnessError
from harness.model.config import RnnConfig

DEFAULT_MAX_MEMORY = 4 * 1024**3  # 4 GiB: the largest default config needs a few MB
_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
_ITEMSIZE = {"float32": 4, "float64": 8}
# Copies alive at once: the module, its exports (legacy, dynamo, TorchScript), two runs per backend,
# the golden and backend tensors, and the float64 oracle with its per-step gate activations.
_COPIES = 16
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


@dataclass(frozen=True, kw_only=True)
class MemoryEstimate:
    weights: int
    activations: int
    sequence: int

    @property
    def total(self) -> int:
        return _COPIES * (self.weights + self.activations + self.sequence)


def estimate(config: RnnConfig) -> MemoryEstimate:
    """Bytes for the weights, the per-step activations of every layer, and the input sequence."""
    item = _ITEMSIZE.get(config.dtype, 8)
    gates = _GATES.get(config.cell, 4) * config.hidden_size
    directions = config.num_directions
    per_layer_extra = directions * config.proj_size * config.hidden_size * item  # the projection matrices
    first = directions * gates * (config.input_size + config.output_features + 2) * item
    later = directions * gates * (directions * config.output_features + config.output_features + 2) * item
    weights = first + (config.num_layers - 1) * later + config.num_layers * per_layer_extra
    steps = config.seq_len * config.batch
    activations = config.num_layers * directions * steps * (gates + config.hidden_size) * item
    sequence = steps * config.input_size * item
    return MemoryEstimate(weights=weights, activations=activations, sequence=sequence)


def check_budget(config: RnnConfig, budget: int) -> None:
    """HarnessError with the estimate when the config needs more than budget bytes."""
    needed = estimate(config)
    if needed.total > budget:
        raise HarnessError(
            f"config {config.id} needs an estimated {human_bytes(needed.total)} (weights "
            f"{human_bytes(needed.weights)}, activations {human_bytes(needed.activations)}, sequence "
            f"{human_bytes(needed.sequence)}, x{_COPIES} copies), above --max-memory {human_bytes(budget)}")


def parse_bytes(text: str) -> int:
    """'4G', '512M', '1.5G', '1000000' -> bytes; HarnessError otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not match:
        raise HarnessError(f"--max-memory must look like 4G, 512M or a byte count, got {text!r}")
    value = int(float(match[1]) * _UNITS[match[2].upper()])
    if value <= 0:
        raise HarnessError(f"--max-memory must be positive, got {text!r}")
    return value


def human_bytes(count: int) -> str:
    """'512 B', '1.5 GiB', ... and, past a thousand PiB, the power of two (no float overflow)."""
    if count >= 1024**6:
        return f"2^{count.bit_length() - 1} B"
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} PiB"
