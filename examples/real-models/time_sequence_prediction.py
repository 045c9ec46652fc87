"""PyTorch's time-sequence prediction model (pytorch/examples, time_sequence_prediction/train.py), as its
users ship it, and the glue the harness needs: a factory, an inputs function, a targets function and a loss.

The model is unchanged: two ``LSTMCell``s stepped in a Python loop in float64, input ``(batch, seq)`` with no
feature axis, one output tensor ``(batch, seq)``: the next value of each sine wave.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Sequence(nn.Module):
    def __init__(self, hidden: int = 51) -> None:
        super().__init__()
        self.hidden = hidden
        self.lstm1 = nn.LSTMCell(1, hidden)
        self.lstm2 = nn.LSTMCell(hidden, hidden)
        self.linear = nn.Linear(hidden, 1)

    def forward(self, input: Tensor, future: int = 0) -> Tensor:
        outputs = []
        h_t = torch.zeros(input.size(0), self.hidden, dtype=torch.double)
        c_t = torch.zeros(input.size(0), self.hidden, dtype=torch.double)
        h_t2 = torch.zeros(input.size(0), self.hidden, dtype=torch.double)
        c_t2 = torch.zeros(input.size(0), self.hidden, dtype=torch.double)
        output = torch.zeros(input.size(0), 1, dtype=torch.double)
        for input_t in input.split(1, dim=1):
            h_t, c_t = self.lstm1(input_t, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        for _ in range(future):  # if we should predict the future
            h_t, c_t = self.lstm1(output, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        return torch.cat(outputs, dim=1)


# --- the glue: 10 lines -------------------------------------------------------------------------------------
def build(config):  # the suite's `model`: called under torch.manual_seed(config.seed)
    return Sequence(config.hidden_size)


def _waves(config):  # sine waves of period 40 with seeded phases, as the example's generate_sine_wave.py
    phases = np.random.default_rng(config.seed).integers(-80, 80, size=(config.batch, 1))
    return np.sin((np.arange(config.seq_len + 1) + phases) / 20.0).astype(np.float64)


def waves(config, rng):  # `inputs`: (batch, seq) float64, no feature axis
    return {"input": _waves(config)[:, :-1]}


def next_values(config, rng):  # `targets`: the wave one step ahead
    return {"next": _waves(config)[:, 1:]}


def mse(outputs, targets):  # `loss`: the example's criterion
    return F.mse_loss(outputs[0], targets["next"])
