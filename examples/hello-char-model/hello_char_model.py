"""A character-level language model over the four letters of "hello": the model the harness's example suite
checks on every backend, as a user would bring their own.

The harness imports a factory named in the suite (``model = "hello_char_model:build"``), calls it with the
case's config under ``torch.manual_seed(config.seed)``, and gets an ``nn.Module`` back. The module's
``forward`` takes the case's inputs in order (here the one-hot characters, shape (seq, batch, 4)) and
returns a tensor or a flat tuple of tensors; ``output_names`` names them in goldens and reports. For the
"train" check the first output must be logits over h/e/l/o.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

LETTERS = "helo"


class CharLM(nn.Module):
    """One-hot characters -> (a linear embedding, or a lookup table) -> stacked LSTM -> logits per step."""

    output_names = ("logits", "h_n", "c_n")

    def __init__(self, *, hidden_size: int, num_layers: int, embedding: int, lookup: bool) -> None:
        super().__init__()
        self.lookup = lookup
        if lookup:
            self.embed: nn.Module = nn.Embedding(len(LETTERS), embedding)
        else:  # multiplying a one-hot vector by a matrix is the same lookup, written as a matmul
            self.embed = nn.Linear(len(LETTERS), embedding, bias=False)
        self.lstm = nn.LSTM(embedding, hidden_size, num_layers=num_layers)
        self.head = nn.Linear(hidden_size, len(LETTERS))

    def forward(self, characters: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        embedded = self.embed(characters.argmax(dim=-1)) if self.lookup else self.embed(characters)
        output, (h_n, c_n) = self.lstm(embedded)
        return self.head(output), h_n, c_n


def build(config) -> nn.Module:  # noqa: ANN001  # the harness's RnnConfig; nothing to import from harness
    """The one-hot model: the suite's hidden_size and num_layers, an 8-wide linear embedding."""
    return CharLM(hidden_size=config.hidden_size, num_layers=config.num_layers, embedding=8, lookup=False)


def build_with_lookup(config) -> nn.Module:  # noqa: ANN001
    """The same model with an nn.Embedding lookup of each character's index."""
    return CharLM(hidden_size=config.hidden_size, num_layers=config.num_layers, embedding=8, lookup=True)


if __name__ == "__main__":  # a quick look: what the untrained model predicts after "hell"
    torch.manual_seed(0)
    model = CharLM(hidden_size=16, num_layers=2, embedding=8, lookup=False).eval()
    hell = torch.eye(len(LETTERS))[[LETTERS.index(letter) for letter in "hell"]].unsqueeze(1)
    print("".join(LETTERS[i] for i in model(hell)[0].argmax(-1).squeeze(1).tolist()))
