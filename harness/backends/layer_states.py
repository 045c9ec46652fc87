"""Per layer x direction x step hidden states of a built-in RNN stack, on the reference side and on a backend's:
free-running (the backend over the whole sequence, as it runs) and teacher-forced (one step at a time from the
reference's previous state and the reference's input to that layer). harness.judging.localisation turns them
into local and carried errors.

- The reference: the seeded module's weights stepped one step at a time in float64 eager torch (LSTM's cell
  state per step comes with it).
- torch backends (eager, TorchScript, torch.export run aten's RNN kernels): the stack run layer by layer with
  single-layer modules holding the same weights, in the config's dtype; one-step calls for teacher forcing.
- ONNX artifacts: harness.backends.onnx_layer_states.
Keys are (layer, direction): layer 1-based, direction "forward" or "reverse"; arrays are [steps, batch, hidden].
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.model.config import RnnConfig

if TYPE_CHECKING:
    import torch

Key = tuple[int, str]
States = dict[Key, np.ndarray]
_PARAMETER = re.compile(r"(?P<base>\w+?)_l(?P<layer>\d+)(?P<reverse>_reverse)?")


class NotLocalisable(Exception):
    """This case or artifact cannot be localised; the message is the one-line reason."""


@dataclass(frozen=True, kw_only=True)
class ReferenceStack:
    """The float64 reference: h (and LSTM's c) per step, each layer's input, and each initial state."""

    h: States
    c: States
    layer_inputs: tuple[np.ndarray, ...]  # per layer (0-based): [steps, batch, features]
    h0: dict[Key, np.ndarray]  # [batch, hidden]
    c0: dict[Key, np.ndarray]

    def previous(self, key: Key, step: int, cell: bool = False) -> np.ndarray:
        """The reference state a step starts from: the step before it in the direction's own order."""
        states, initial = (self.c, self.c0) if cell else (self.h, self.h0)
        before = step - 1 if key[1] == "forward" else step + 1
        return initial[key] if before < 0 or before >= states[key].shape[0] else states[key][before]


def directions(config: RnnConfig) -> tuple[str, ...]:
    return ("forward", "reverse") if config.bidirectional else ("forward",)


def check_localisable(config: RnnConfig) -> None:
    """NotLocalisable for what the per-step analysis does not cover."""
    if config.check != "forward":
        raise NotLocalisable(f"check {config.check!r}: only forward checks are localised")
    if not config.plain_rnn:
        raise NotLocalisable("a user's model: localised by submodule (harness.judging.submodules), not by layer")
    if config.lengths:
        raise NotLocalisable("packed sequences (lengths) are not localised")
    if config.proj_size:
        raise NotLocalisable("LSTM projections (proj_size) are not localised")


def sequence_major(array: np.ndarray, config: RnnConfig) -> np.ndarray:
    return np.swapaxes(array, 0, 1) if config.batch_first else array


def initial_states(config: RnnConfig, inputs: dict[str, np.ndarray]) -> tuple[dict[Key, np.ndarray], ...]:
    """(h0, c0) per (layer, direction): the inputs' h0/c0 slices, or zeros."""
    batch = sequence_major(inputs["input"], config).shape[1]
    shape = (config.num_layers * len(directions(config)), batch, config.hidden_size)
    result = []
    for name in ("h0", "c0"):
        given = np.asarray(inputs[name], np.float64) if name in inputs else np.zeros(shape)
        result.append({(layer, direction): given[(layer - 1) * len(directions(config)) + index]
                       for layer in range(1, config.num_layers + 1)
                       for index, direction in enumerate(directions(config))})
    return result[0], result[1]


def _cell_module(config: RnnConfig, input_size: int, weights: dict[str, torch.Tensor], dtype: Any) -> torch.nn.Module:
    """A single-layer torch RNN of the config's cell whose parameters are `weights` (names as in layer 0)."""
    import torch

    bidirectional = "weight_ih_l0_reverse" in weights
    kwargs = dict(input_size=input_size, hidden_size=config.hidden_size, bias=config.bias, bidirectional=bidirectional)
    if config.cell == "lstm":
        module: torch.nn.Module = torch.nn.LSTM(**kwargs)
    elif config.cell == "gru":
        module = torch.nn.GRU(**kwargs)
    else:
        module = torch.nn.RNN(nonlinearity=config.cell.removeprefix("rnn_"), **kwargs)
    module.load_state_dict({name: tensor.detach().clone() for name, tensor in weights.items()})
    return module.eval().to(dtype)


def layer_weights(stack: dict[str, torch.Tensor], layer: int, only: str | None = None) -> dict[str, torch.Tensor]:
    """Layer `layer` (1-based) of a stack's state_dict renamed as layer 0 of a single-layer module: both
    directions, or only one (named as a unidirectional module's)."""
    found: dict[str, torch.Tensor] = {}
    for name, tensor in stack.items():
        match = _PARAMETER.fullmatch(name)
        if match is None or int(match["layer"]) != layer - 1:
            continue
        reverse = bool(match["reverse"])
        if only is None:
            found[f"{match['base']}_l0{'_reverse' if reverse else ''}"] = tensor
        elif reverse == (only == "reverse"):
            found[f"{match['base']}_l0"] = tensor
    return found


def stack_parameters(state: Any) -> dict[str, torch.Tensor]:
    """A stack's parameters by their torch.nn.RNN names (weight_ih_l0...), whatever module holds the stack
    (a TorchScript or torch.export program names them rnn.weight_ih_l0)."""
    found = {name.rsplit(".", 1)[-1]: tensor for name, tensor in dict(state).items()}
    return {name: tensor for name, tensor in found.items() if _PARAMETER.fullmatch(name)}


def input_size_of(config: RnnConfig, layer: int) -> int:
    return config.input_size if layer == 1 else config.hidden_size * len(directions(config))


def step(module: torch.nn.Module, x: np.ndarray, h: np.ndarray, c: np.ndarray | None,
         dtype: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """One step of a unidirectional single-layer module: x [batch, features], h/c [batch, hidden]."""
    import torch

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(dtype)

    with torch.no_grad():
        if c is None:
            _, h_n = module(tensor(x)[None], tensor(h)[None])
            return h_n[0].double().numpy(), None
        _, (h_n, c_n) = module(tensor(x)[None], (tensor(h)[None], tensor(c)[None]))
        return h_n[0].double().numpy(), c_n[0].double().numpy()


def reference_stack(module: torch.nn.Module, config: RnnConfig, inputs: dict[str, np.ndarray]) -> ReferenceStack:
    """The seeded stack stepped one step at a time in float64 eager torch."""
    import torch

    check_localisable(config)
    stack = {name: tensor.double() for name, tensor in stack_parameters(module.state_dict()).items()}
    h0, c0 = initial_states(config, inputs)
    lstm = config.cell == "lstm"
    layer_input = sequence_major(np.asarray(inputs["input"], np.float64), config)
    h: States = {}
    c: States = {}
    layer_inputs = []
    for layer in range(1, config.num_layers + 1):
        layer_inputs.append(layer_input)
        for direction in directions(config):
            key = (layer, direction)
            cell = _cell_module(config, input_size_of(config, layer), layer_weights(stack, layer, direction),
                                torch.float64)
            steps = range(layer_input.shape[0]) if direction == "forward" else range(layer_input.shape[0] - 1, -1, -1)
            shape = (layer_input.shape[0], *h0[key].shape)
            h[key], c[key] = np.zeros(shape), np.zeros(shape)
            state, memory = h0[key], (c0[key] if lstm else None)
            for t in steps:
                state, memory = step(cell, layer_input[t], state, memory, torch.float64)
                h[key][t] = state
                if memory is not None:
                    c[key][t] = memory
        layer_input = np.concatenate([h[(layer, direction)] for direction in directions(config)], axis=-1)
    return ReferenceStack(h=h, c=c if lstm else {}, layer_inputs=tuple(layer_inputs), h0=h0, c0=c0)


def torch_states(stack: dict[str, torch.Tensor], config: RnnConfig, inputs: dict[str, np.ndarray],
                 reference: ReferenceStack) -> tuple[States, States, tuple[str, ...]]:
    """(free, local, notes) of torch's kernels in the config's dtype: the stack run layer by layer over the whole
    sequence, and one step at a time from the reference's states; a note where the backend's own one-step
    chain is not bitwise its full-sequence run."""
    import torch

    dtype = getattr(torch, config.dtype)
    h0, c0 = initial_states(config, inputs)
    free: States = {}
    local: States = {}
    notes: list[str] = []
    layer_input = sequence_major(np.asarray(inputs["input"], np.float64), config)
    for layer in range(1, config.num_layers + 1):
        whole = _cell_module(config, input_size_of(config, layer), layer_weights(stack, layer), dtype)
        keys = [(layer, direction) for direction in directions(config)]
        h_init = torch.from_numpy(np.stack([h0[key] for key in keys])).to(dtype)
        c_init = torch.from_numpy(np.stack([c0[key] for key in keys])).to(dtype)
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(layer_input)).to(dtype)
            output = whole(x, (h_init, c_init) if config.cell == "lstm" else h_init)[0]
        hidden = config.hidden_size
        for index, key in enumerate(keys):
            free[key] = output[..., index * hidden:(index + 1) * hidden].double().numpy()
            cell = _cell_module(config, input_size_of(config, layer), layer_weights(stack, layer, key[1]), dtype)
            local[key] = _teacher_forced(cell, reference, key, dtype, config.cell == "lstm")
            chained = _chained(cell, layer_input, h0[key], c0[key] if config.cell == "lstm" else None, key[1], dtype)
            notes.extend(blocking_note("torch", key, chained, free[key]))
        layer_input = output.double().numpy()  # exact: cast back to the dtype where it is the next layer's input
    return free, local, tuple(notes)


def _teacher_forced(cell: torch.nn.Module, reference: ReferenceStack, key: Key, dtype: Any, lstm: bool) -> np.ndarray:
    steps = reference.h[key].shape[0]
    result = np.zeros_like(reference.h[key])
    for t in range(steps):
        memory = reference.previous(key, t, cell=True) if lstm else None
        result[t], _ = step(cell, reference.layer_inputs[key[0] - 1][t], reference.previous(key, t), memory, dtype)
    return result


def _chained(cell: torch.nn.Module, layer_input: np.ndarray, h0: np.ndarray, c0: np.ndarray | None, direction: str,
             dtype: Any) -> np.ndarray:
    """The backend's own one-step execution chained over the sequence (its own states fed back)."""
    steps = layer_input.shape[0]
    result = np.zeros((steps, *h0.shape))
    state, memory = h0, c0
    for t in range(steps) if direction == "forward" else range(steps - 1, -1, -1):
        state, memory = step(cell, layer_input[t], state, memory, dtype)
        result[t] = state
    return result


def blocking_note(runtime: str, key: Key, chained: np.ndarray, free: np.ndarray) -> list[str]:
    if np.array_equal(chained, free):
        return []
    return [f"{runtime}: one-step execution is not bitwise its full-sequence execution (layer {key[0]} {key[1]}, "
            f"max {float(np.max(np.abs(chained - free))):.2g}): kernel blocking, so part of the local error is "
            "the kernel's own"]
