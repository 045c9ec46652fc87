"""Thin modules that give every RNN the same flat signature: inputs in case order, outputs as a tuple.

TorchScript cannot script ``nn.RNN`` itself in torch 2.13 (the result has no ``forward``), and the ONNX
exporters want flat tuples; these wrappers serve eager, TorchScript and both ONNX exporters alike.
"""


import torch
from torch import Tensor

from harness.model.case import Case


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


def flat_module(rnn: torch.nn.Module, *, lstm: bool, with_state: bool) -> torch.nn.Module:
    """The wrapper for this cell kind and state, in eval mode like the module it wraps."""
    if lstm:
        wrapper: torch.nn.Module = LstmWithState(rnn) if with_state else LstmStateless(rnn)
    else:
        wrapper = WithHidden(rnn) if with_state else Stateless(rnn)
    return wrapper.eval()


def flat_module_for(case: Case) -> torch.nn.Module:
    return flat_module(case.module, lstm=case.config.cell == "lstm", with_state="h0" in case.inputs)
