"""The two sides of each invariance relation of a built-in RNN case, computed by one backend.

Every side is a model the backend prepares as it prepares the case (exported, scripted, traced or eager), from
the same seeded module:
- chunked: the sequence in 2 and in 3 chunks at seeded points, the state carried from one call to the next,
  against one call over the whole sequence. The model takes the state as an input and is exported once with a
  dynamic sequence length and batch, as users export a streaming model.
- batch: each batch element run alone against its slice of the whole batch (the same dynamic export).
- zero-state: no initial state against an explicit zero state.
- padded: a packed batch whose lengths all equal the sequence length against the unpacked batch.

`expected` is always the plain call, `actual` the transformed one(s) put back together in its shape, so the
judging (harness.judging.relations) compares like with like.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from harness.backends.base import Backend, PreparedModel
from harness.model.case import Case
from harness.model.config import RnnConfig

Outputs = dict[str, np.ndarray]
_CUT_STREAM = 8  # NumPy streams keyed on [seed, stream], beside the inputs' (harness.model.inputs)
CHUNK_COUNTS = (2, 3)


@dataclass(frozen=True, kw_only=True)
class RelationSides:
    """One relation (or one way of applying it: "3 chunks at steps 1, 2") computed both ways on one backend."""

    relation: str
    variant: str
    expected: Outputs
    actual: Outputs


class Models:
    """The models the relations of one case need on one backend, each prepared once (the stateful export
    serves chunked and batch)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._prepared: dict[str, PreparedModel] = {}

    def get(self, tag: str, case: Case) -> PreparedModel:
        if tag not in self._prepared:
            self._prepared[tag] = self.backend.prepare(case)
        return self._prepared[tag]


def relation_sides(case: Case, models: Models, relation: str) -> list[RelationSides]:
    """Both sides of the relation on the backend; raises what the backend raises when it cannot take a side
    (a sequence length baked in at export, a model that runs only on the case's own inputs)."""
    run = {"chunked": _chunked, "batch": _batch_slices, "zero-state": _zero_state, "padded": _padded}[relation]
    return run(case, models)


def chunk_cuts(config: RnnConfig, chunks: int) -> list[int]:
    """Seeded cut points (sorted, distinct, inside the sequence) that split it into `chunks` pieces."""
    rng = np.random.default_rng([config.seed, _CUT_STREAM, chunks])
    return sorted(int(cut) for cut in rng.choice(np.arange(1, config.seq_len), size=chunks - 1, replace=False))


def sequence_axis(config: RnnConfig) -> int:
    return 1 if config.batch_first else 0


def batch_axis(config: RnnConfig, name: str) -> int:
    """The batch axis of an input or output: the sequence tensors' per the layout, the states' always 1."""
    if name in ("input", "output"):
        return 0 if config.batch_first else 1
    return 1


def _with_state(case: Case) -> Case:
    """The case as a model that takes its state (zeros when the case has none), exported with dynamic shapes."""
    config = case.config
    inputs = dict(case.inputs)
    if "h0" not in inputs:
        layers = config.num_layers * config.num_directions
        dtype = inputs["input"].dtype
        inputs["h0"] = np.zeros((layers, config.batch, config.output_features), dtype=dtype)
        if config.cell == "lstm":
            inputs["c0"] = np.zeros((layers, config.batch, config.hidden_size), dtype=dtype)
    return dataclasses.replace(case, inputs=inputs, export_inputs=None, dynamic=True)


def _state_names(config: RnnConfig) -> tuple[str, ...]:
    return ("h0", "c0") if config.cell == "lstm" else ("h0",)


def _final_names(config: RnnConfig) -> tuple[str, ...]:
    return ("h_n", "c_n") if config.cell == "lstm" else ("h_n",)


def _chunked(case: Case, models: Models) -> list[RelationSides]:
    config = case.config
    stateful = _with_state(case)
    model = models.get("stateful", stateful)
    whole = model.run(stateful.inputs)
    axis = sequence_axis(config)
    sides = []
    for chunks in CHUNK_COUNTS:
        cuts = chunk_cuts(config, chunks)
        state = {name: stateful.inputs[name] for name in _state_names(config)}
        pieces = []
        for start, stop in zip([0, *cuts], [*cuts, config.seq_len], strict=True):
            step = model.run({"input": np.take(stateful.inputs["input"], np.arange(start, stop), axis=axis), **state})
            pieces.append(step["output"])
            state = dict(zip(_state_names(config), (step[name] for name in _final_names(config)), strict=True))
        actual = {"output": np.concatenate(pieces, axis=axis),
                  **{final: state[given] for given, final in zip(_state_names(config), _final_names(config),
                                                                  strict=True)}}
        sides.append(RelationSides(relation="chunked", variant=f"{chunks} chunks, cut before step(s) "
                                   f"{', '.join(map(str, cuts))}", expected=whole, actual=actual))
    return sides


def _batch_slices(case: Case, models: Models) -> list[RelationSides]:
    config = case.config
    stateful = _with_state(case)
    model = models.get("stateful", stateful)
    whole = model.run(stateful.inputs)
    alone: dict[str, list[np.ndarray]] = {name: [] for name in whole}
    for element in range(config.batch):
        sliced = {name: np.take(array, [element], axis=batch_axis(config, name))
                  for name, array in stateful.inputs.items()}
        for name, array in model.run(sliced).items():
            alone[name].append(array)
    actual = {name: np.concatenate(arrays, axis=batch_axis(config, name)) for name, arrays in alone.items()}
    return [RelationSides(relation="batch", variant=f"each of {config.batch} batch elements alone",
                          expected=whole, actual=actual)]


def _zero_state(case: Case, models: Models) -> list[RelationSides]:
    stateless = models.get("plain", case).run(case.inputs)
    stateful = _with_state(case)
    explicit = models.get("stateful-static", dataclasses.replace(stateful, dynamic=False)).run(stateful.inputs)
    return [RelationSides(relation="zero-state", variant="no initial state against explicit zeros",
                          expected=stateless, actual=explicit)]


def _padded(case: Case, models: Models) -> list[RelationSides]:
    config = case.config
    unpacked = models.get("plain", case).run(case.inputs)
    packed_config = dataclasses.replace(config, relations=(), lengths=(config.seq_len,) * config.batch)
    inputs = {**case.inputs, "lengths": np.full(config.batch, config.seq_len, dtype=np.int64)}
    packed = models.get("packed", dataclasses.replace(case, config=packed_config, inputs=inputs, export_inputs=None))
    return [RelationSides(relation="padded", variant=f"packed with every length {config.seq_len}",
                          expected=unpacked, actual=packed.run(inputs))]
