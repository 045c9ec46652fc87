"""A config's named inputs, from NumPy alone: the same arrays the torch case is run on, so a replay of a
stored artifact can rebuild them (and check them against the golden's inputs sha256) without torch.

Inputs and random initial states come from local NumPy generators keyed on ``[seed, stream]``, never
from torch's global RNG.
"""

from __future__ import annotations

import numpy as np

from harness.model.config import RnnConfig
from harness.model.dtypes import numpy_dtype

HELLO_VOCABULARY = {"h": [1, 0, 0, 0], "e": [0, 1, 0, 0], "l": [0, 0, 1, 0], "o": [0, 0, 0, 1]}
HELLO_WORDS = ("hello", "olleh", "lleel")  # the notebook's three rows: (3, 5, 4), sequence-first

_INPUT_STREAM = 1
_STATE_STREAM = 2


def hello_batch() -> np.ndarray:
    """The notebook's x: float32 (3, 5, 4); dim 0 is the sequence, dim 1 the batch of 5."""
    rows = [[HELLO_VOCABULARY[letter] for letter in word] for word in HELLO_WORDS]
    return np.array(rows, dtype=np.float32)


def build_inputs(config: RnnConfig) -> dict[str, np.ndarray]:
    """Named inputs in the config's dtype and layout: input, then h0 (and c0) for random state."""
    dtype = numpy_dtype(config.dtype)
    if config.input == "hello":
        sequence_first = hello_batch()
    else:
        rng = np.random.default_rng([config.seed, _INPUT_STREAM])
        tokens = rng.integers(0, config.input_size, size=(config.seq_len, config.batch))
        sequence_first = np.eye(config.input_size, dtype=np.float32)[tokens]
    layout = sequence_first.transpose(1, 0, 2) if config.batch_first else sequence_first
    inputs = {"input": np.ascontiguousarray(layout, dtype=dtype)}
    if config.initial_state == "random":
        rng = np.random.default_rng([config.seed, _STATE_STREAM])
        layers = config.num_layers * config.num_directions
        h_shape = (layers, config.batch, config.output_features)
        inputs["h0"] = rng.standard_normal(h_shape).astype(dtype)
        if config.cell == "lstm":
            inputs["c0"] = rng.standard_normal((layers, config.batch, config.hidden_size)).astype(dtype)
    return inputs
