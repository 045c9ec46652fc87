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
_EXPORT_STREAM = 3  # inputs at the export shape: other values than the run's, so nothing can be memorised
_PROBE_STREAM = 5  # the second input a stored artifact is probed with (its own stream: 4 is the export state)


def hello_batch() -> np.ndarray:
    """The notebook's x: float32 (3, 5, 4); dim 0 is the sequence, dim 1 the batch of 5."""
    rows = [[HELLO_VOCABULARY[letter] for letter in word] for word in HELLO_WORDS]
    return np.array(rows, dtype=np.float32)


def train_batch() -> tuple[np.ndarray, np.ndarray]:
    """The hello next-character task, sequence-first: one-hot inputs (4, 3, 4) of "hell", "olle", "llee"
    and the indices of the next characters (4, 3) ("ello", "lleh", "leel")."""
    letters = list(HELLO_VOCABULARY)
    words = np.array([[letters.index(letter) for letter in word] for word in HELLO_WORDS]).T  # (5, 3)
    one_hot = np.eye(len(letters), dtype=np.float32)[words]
    return one_hot[:-1], words[1:].astype(np.int64)


def build_inputs(config: RnnConfig, *, shape: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """Named inputs in the config's dtype and layout: input, then h0 (and c0) for random state, then
    lengths (int64) for packed sequences. With shape (seq_len, batch), the inputs a backend is exported
    at instead (config.export_shape), drawn from their own stream."""
    dtype = numpy_dtype(config.dtype)
    seq_len, batch = shape or (config.seq_len, config.batch)
    stream = _EXPORT_STREAM if shape is not None else _INPUT_STREAM
    if config.check == "train":
        sequence_first = train_batch()[0]
        batch = sequence_first.shape[1]
    elif config.input == "hello":
        sequence_first = hello_batch()
    elif config.input == "gaussian":
        rng = np.random.default_rng([config.seed, stream])
        sequence_first = rng.standard_normal((seq_len, batch, config.input_size))
    else:
        rng = np.random.default_rng([config.seed, stream])
        tokens = rng.integers(0, config.input_size, size=(seq_len, batch))
        sequence_first = np.eye(config.input_size, dtype=np.float32)[tokens]
    layout = sequence_first.transpose(1, 0, 2) if config.batch_first else sequence_first
    inputs = {"input": np.ascontiguousarray(layout, dtype=dtype)}
    if config.initial_state == "random":
        rng = np.random.default_rng([config.seed, _STATE_STREAM if shape is None else _EXPORT_STREAM + 1])
        layers = config.num_layers * config.num_directions
        h_shape = (layers, batch, config.output_features)
        inputs["h0"] = rng.standard_normal(h_shape).astype(dtype)
        if config.cell == "lstm":
            inputs["c0"] = rng.standard_normal((layers, batch, config.hidden_size)).astype(dtype)
    if config.lengths:
        inputs["lengths"] = np.array(config.lengths, dtype=np.int64)
    return inputs


def probe_inputs(config: RnnConfig, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A second input for probing a stored artifact: the same names, shapes and dtypes, every floating value
    drawn anew (N(0, 1), a stream of its own), integers (lengths, token ids) kept. A model whose outputs do
    not move on it ignores its input; two exports of one model agree on it as on the golden's input."""
    rng = np.random.default_rng([config.seed, _PROBE_STREAM])
    return {name: rng.standard_normal(array.shape).astype(array.dtype) if array.dtype.kind in "fV" or
            array.dtype.name == "bfloat16" else array.copy() for name, array in inputs.items()}
