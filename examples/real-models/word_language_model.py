"""PyTorch's word-level language model (pytorch/examples, word_language_model/model.py), as its users ship it,
and the few lines of glue the harness needs: a factory, an inputs function, a targets function and a loss.

The model is unchanged: an embedding, a 2-layer LSTM with dropout, a linear decoder and log_softmax;
``forward(input, hidden)`` takes int64 token ids ``(seq, batch)`` and an ``(h, c)`` tuple and returns
``(log_probs, (h, c))``. The harness passes the tuple as a tuple and flattens the nested outputs
(``output_0``, ``output_1_0``, ``output_1_1``); exported models take ``tokens, hidden_0, hidden_1``.
"""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F
from torch import nn

CORPUS = ("the harness runs every seeded model on every backend and compares the numbers with the goldens "
          "stored in the repository so a change that moves them is seen before it ships").split()
VOCABULARY = sorted(set(CORPUS))


class RNNModel(nn.Module):
    """Container module with an encoder, a recurrent module, and a decoder (as in pytorch/examples)."""

    def __init__(self, rnn_type: str, ntoken: int, ninp: int, nhid: int, nlayers: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        self.rnn_type, self.nhid, self.nlayers = rnn_type, nhid, nlayers

    def forward(self, input, hidden):  # noqa: ANN001, ANN201  (as upstream writes it: TorchScript cannot script it)
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output).view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden


# --- the glue: 12 lines -------------------------------------------------------------------------------------
def build(config):  # the suite's `model`: called under torch.manual_seed(config.seed)
    return RNNModel("LSTM", len(VOCABULARY), 16, config.hidden_size, config.num_layers, dropout=0.2)


def _ids(config, offset):  # the corpus as token ids, batchified as the example does: (seq, batch)
    ids = np.array([VOCABULARY.index(word) for word in CORPUS], dtype=np.int64)
    return ids[offset:offset + config.seq_len * config.batch].reshape(config.batch, config.seq_len).T.copy()


def tokens(config, rng):  # `inputs`: the token ids and a zero (h, c) state, as the example's init_hidden
    state = np.zeros((config.num_layers, config.batch, config.hidden_size), dtype=np.float32)
    return {"tokens": _ids(config, 0), "hidden": (state, state.copy())}


def next_tokens(config, rng):  # `targets`: each token's successor, flattened as the decoder's rows
    return {"next": _ids(config, 1).reshape(-1)}


def nll(outputs, targets):  # `loss`: the example's criterion on the log-probabilities
    return F.nll_loss(outputs[0], targets["next"])
