"""What the PyTorch documentation defines for a config's outputs: their names, shapes and axis meanings.

Pure: a config in, names and tuples out (no torch), so judging and reports can use it.
"""

from __future__ import annotations

from harness.model.config import RnnConfig


def output_names(config: RnnConfig) -> list[str]:
    return ["output", "h_n", "c_n"] if config.cell == "lstm" else ["output", "h_n"]


def tensor_axes(config: RnnConfig) -> dict[str, tuple[str, ...]]:
    """The meaning of each output axis, as the PyTorch documentation defines it for this config."""
    features = "directions*proj" if config.proj_size else "directions*hidden"
    output = ("batch", "seq", features) if config.batch_first else ("seq", "batch", features)
    state = ("layers*directions", "batch", "proj" if config.proj_size else "hidden")
    axes: dict[str, tuple[str, ...]] = {"output": output, "h_n": state}
    if config.cell == "lstm":
        axes["c_n"] = ("layers*directions", "batch", "hidden")
    return axes


def expected_shapes(config: RnnConfig) -> dict[str, tuple[int, ...]]:
    """The shape of each output for this config, from the PyTorch documentation."""
    seq, batch = config.seq_len, config.batch
    output = (batch, seq) if config.batch_first else (seq, batch)
    layers = config.num_layers * config.num_directions
    shapes: dict[str, tuple[int, ...]] = {"output": (*output, config.num_directions * config.output_features),
                                          "h_n": (layers, batch, config.output_features)}
    if config.cell == "lstm":
        shapes["c_n"] = (layers, batch, config.hidden_size)
    return shapes
