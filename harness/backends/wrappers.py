"""Thin modules that give every RNN the same flat signature: inputs in case order, outputs as a tuple.

TorchScript cannot script ``nn.RNN`` itself in torch 2.13 (the result has no ``forward``), and the ONNX
exporters want flat tuples; these wrappers serve eager, TorchScript and both ONNX exporters alike.
"""


import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from harness.model.case import Case, flatten_returned, regroup


class Stateless(torch.nn.Module):
    """RNN or GRU called as in the notebook: ``rnn(x)``."""

    def __init__(self, rnn: torch.nn.Module) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        output, h_n = self.rnn(x)
        return output, h_n


class WithHidden(torch.nn.Module):
    """RNN or GRU with an explicit initial hidden state."""

    def __init__(self, rnn: torch.nn.Module) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x: Tensor, h0: Tensor) -> tuple[Tensor, Tensor]:
        output, h_n = self.rnn(x, h0)
        return output, h_n


class LstmStateless(torch.nn.Module):
    def __init__(self, rnn: torch.nn.Module) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        output, (h_n, c_n) = self.rnn(x)
        return output, h_n, c_n


class LstmWithState(torch.nn.Module):
    def __init__(self, rnn: torch.nn.Module) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x: Tensor, h0: Tensor, c0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        output, (h_n, c_n) = self.rnn(x, (h0, c0))
        return output, h_n, c_n


class Packed(torch.nn.Module):
    """RNN or GRU over variable-length sequences: packed by ``lengths`` (int64, one per batch element), run,
    and padded back to the full length with zeros. Sorted lengths take pack_padded_sequence's
    enforce_sorted path; unsorted ones its sorting path."""

    def __init__(self, rnn: torch.nn.Module, enforce_sorted: bool) -> None:
        super().__init__()
        self.rnn = rnn
        self.enforce_sorted = enforce_sorted

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        packed = pack_padded_sequence(x, lengths, enforce_sorted=self.enforce_sorted)
        output, h_n = self.rnn(packed)
        padded, _ = pad_packed_sequence(output, total_length=x.shape[0])
        return padded, h_n


class LstmPacked(torch.nn.Module):
    def __init__(self, rnn: torch.nn.Module, enforce_sorted: bool) -> None:
        super().__init__()
        self.rnn = rnn
        self.enforce_sorted = enforce_sorted

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        packed = pack_padded_sequence(x, lengths, enforce_sorted=self.enforce_sorted)
        output, (h_n, c_n) = self.rnn(packed)
        padded, _ = pad_packed_sequence(output, total_length=x.shape[0])
        return padded, h_n, c_n


def flat_module(rnn: torch.nn.Module, *, lstm: bool, with_state: bool) -> torch.nn.Module:
    """The wrapper for this cell kind and state, in eval mode like the module it wraps."""
    if lstm:
        wrapper: torch.nn.Module = LstmWithState(rnn) if with_state else LstmStateless(rnn)
    else:
        wrapper = WithHidden(rnn) if with_state else Stateless(rnn)
    return wrapper.eval()


class Flattened(torch.nn.Module):
    """A user's model that takes a tuple argument (an ``(h, c)`` state) or returns nested tuples, called with
    the flat inputs in order and returning its outputs flattened: what every exporter and the golden see.
    The user's module stays as it is inside (FLATTENED_MODULE), so its parameters keep their names below it."""

    def __init__(self, model: torch.nn.Module, groups: tuple[int, ...]) -> None:
        super().__init__()
        self.harness_user_model = model
        self.groups = groups

    def forward(self, *flat: Tensor) -> tuple[Tensor, ...]:
        return tuple(flatten_returned(self.harness_user_model(*regroup(flat, self.groups))))


FLATTENED_MODULE = "harness_user_model"  # the attribute Flattened keeps a user's model under


def flat_module_for(case: Case, model: torch.nn.Module | None = None) -> torch.nn.Module:
    """The module every torch backend and exporter takes for a case: a user's model as it is when it takes
    the inputs in order and returns a tensor or a flat tuple, else through Flattened; a bare RNN through the
    wrapper for its cell, state and packing. model: what to wrap instead of case.module (a scripted copy)."""
    config = case.config
    if config.model:
        module = case.module if model is None else model
        return Flattened(module, case.argument_groups).eval() if case.needs_flattening else module
    if config.lengths:
        ordered = list(config.lengths) == sorted(config.lengths, reverse=True)
        packed = LstmPacked(case.module, ordered) if config.cell == "lstm" else Packed(case.module, ordered)
        return packed.eval()
    return flat_module(case.module, lstm=config.cell == "lstm", with_state="h0" in case.inputs)


WRAPPED_MODULE = "rnn"  # the attribute every wrapper keeps the bare RNN under


def dynamic_axes(case: Case) -> dict[str, dict[int, str]]:
    """For a case exported at another shape than it runs at: the axes of each input and forward output that
    vary ("seq", "batch"), as the exporters are told (a user exporting once for every shape does the same).
    Empty when the case runs at its export shape: then every shape is static."""
    config = case.config
    if not (config.reshaped_at_export or case.dynamic):
        return {}
    sequence = {0: "batch", 1: "seq"} if config.batch_first else {0: "seq", 1: "batch"}
    axes: dict[str, dict[int, str]] = {}
    for name in case.input_names:
        axes[name] = dict(sequence) if name == "input" else {0: "batch"} if name == "lengths" else {1: "batch"}
    if not config.model:
        for name in case.forward_names:
            axes[name] = dict(sequence) if name == "output" else {1: "batch"}
    return axes


def dynamic_shapes(case: Case) -> tuple[dict[int, object], ...] | None:
    """dynamic_axes as torch.export (and the dynamo ONNX exporter) take them: one dict per positional input,
    with one torch.export.Dim per axis name shared by every input. None when every shape is static."""
    axes = dynamic_axes(case)
    if not axes:
        return None
    dims = {name: torch.export.Dim.AUTO for name in ("seq", "batch")}  # dynamic where the model allows
    return tuple({axis: dims[label] for axis, label in axes[name].items()} for name in case.input_names)
