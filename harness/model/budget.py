"""How much memory a config needs, estimated before anything is built, so a suite that asks for
terabytes is refused with the estimate instead of failing in an allocation (or swapping for an hour).

The estimate is deliberately generous (every backend, two runs, the float64 oracle, the export shape and the
training run): it only has to keep a hostile or mistyped suite out, never to bound an honest one tightly. It
also sizes `-j`: the workers' configs must fit in memory together (jobs_cap).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from harness.errors import HarnessError
from harness.model.config import RnnConfig

DEFAULT_MAX_MEMORY = 4 * 1024**3  # 4 GiB: the largest default config needs a few MB
_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
_ITEMSIZE = {"float32": 4, "float64": 8}
# Copies alive at once: the module, its exports (legacy, dynamo, TorchScript), two runs per backend,
# the golden and backend tensors, and the float64 oracle with its per-step gate activations.
_COPIES = 16
_DRAWN_ITEMSIZE = 8
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


@dataclass(frozen=True, kw_only=True)
class MemoryEstimate:
    """Bytes of one config's largest things, each counted _COPIES times (see `total`)."""

    weights: int
    activations: int  # per-step activations of every layer, at the larger of the run and export shapes
    sequence: int  # the inputs as drawn (float64 or int64 before the cast), at the larger shape
    training: int = 0  # "grad"/"train": gradients, the weights saved to restore them, autograd's saved steps

    @property
    def total(self) -> int:
        return _COPIES * (self.weights + self.activations + self.sequence + self.training)

    def describe(self) -> str:
        parts = [f"weights {human_bytes(self.weights)}", f"activations {human_bytes(self.activations)}",
                 f"sequence {human_bytes(self.sequence)}"]
        if self.training:
            parts.append(f"gradients and training state {human_bytes(self.training)}")
        return f"{human_bytes(self.total)} ({', '.join(parts)}, x{_COPIES} copies)"


def estimate(config: RnnConfig) -> MemoryEstimate:
    """Bytes for the weights, the per-step activations of every layer and the input sequence, at the larger of
    the shape the config runs at and the shape it is exported at (export_seq_len / export_batch); for the grad
    and train checks also the gradients, the saved weights and what autograd keeps for the backward pass."""
    item = _ITEMSIZE.get(config.dtype, 8)
    gates = _GATES.get(config.cell, 4) * config.hidden_size
    directions = config.num_directions
    per_layer_extra = directions * config.proj_size * config.hidden_size * item  # the projection matrices
    first = directions * gates * (config.input_size + config.output_features + 2) * item
    later = directions * gates * (directions * config.output_features + config.output_features + 2) * item
    weights = first + (config.num_layers - 1) * later + config.num_layers * per_layer_extra
    export_seq_len, export_batch = config.export_shape
    steps = max(config.seq_len * config.batch, export_seq_len * export_batch)
    activations = config.num_layers * directions * steps * (gates + config.hidden_size) * item
    # Inputs are drawn in float64 (or as int64 tokens, then one-hot) before the cast to the config's dtype.
    sequence = steps * (config.input_size + 1) * _DRAWN_ITEMSIZE
    training = 0
    if config.check in ("grad", "train"):
        # gradients of every weight (and input), the weights saved to restore after training, the activations
        # autograd keeps for the backward pass, and one loss per training step
        training = 2 * weights + activations + sequence + config.train_steps * _DRAWN_ITEMSIZE
    return MemoryEstimate(weights=weights, activations=activations, sequence=sequence, training=training)


def check_budget(config: RnnConfig, budget: int) -> None:
    """HarnessError with the estimate when the config needs more than budget bytes."""
    needed = estimate(config)
    if needed.total > budget:
        raise HarnessError(f"config {config.id} needs an estimated {needed.describe()}, above --max-memory "
                           f"{human_bytes(budget)}")


# One -j worker's own footprint before any config: a Python with torch, onnxruntime and a Session loaded
# (about 310 MiB measured on Linux with torch 2.13; rounded up).
WORKER_BYTES = 400 * 1024**2


@dataclass(frozen=True, kw_only=True)
class JobsCap:
    jobs: int
    reason: str = ""  # one line saying why -j was lowered; "" when it was not


def jobs_cap(asked: int, needs: Sequence[int], *, cpus: int, available: int | None, budget: int) -> JobsCap:
    """How many -j workers to start: at most `asked`, at most `cpus`, and no more than the largest configs'
    estimated needs (bytes, one per config) fit together within --max-memory (`budget`) and, each with a
    worker's own footprint, within the memory the machine has available (None: unknown, not checked)."""
    jobs = max(1, min(asked, cpus))
    reason = f"-j {asked} capped to {jobs}: {cpus} CPUs" if jobs < asked else ""
    largest = sorted(needs, reverse=True)
    for count in range(min(jobs, len(largest)), 1, -1):
        together = sum(largest[:count])
        with_workers = together + count * WORKER_BYTES
        if together > budget:
            why = (f"the {count} largest configs need an estimated {human_bytes(together)} together, above "
                   f"--max-memory {human_bytes(budget)}")
        elif available is not None and with_workers > available:
            why = (f"{count} workers with their configs need an estimated {human_bytes(with_workers)}, above "
                   f"the {human_bytes(available)} this machine has available")
        else:
            break
        jobs, reason = count - 1, f"-j {asked} capped to {count - 1}: {why}"
    return JobsCap(jobs=jobs, reason=reason)


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
