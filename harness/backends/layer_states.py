"""Per layer x direction x step hidden states of a built-in RNN stack, on the reference side and on a backend's:
free-running (the backend over the whole sequence, as it runs) and teacher-forced (one step at a time from the
reference's previous state and the reference's input to that layer). harness.judging.localisation turns them
into local and carried errors.

- The reference: the seeded module's weights stepped one step at a time in float64 eager torch (LSTM's cell
  state per step comes with it).
- torch backends (eager, TorchScript, torch.export run aten's RNN kernels): the stack run layer by layer with
  single-layer modules holding the same weights, in the config's dtype; one-step calls for teacher forcing.
- ONNX artifacts: a copy of the artifact with every recurrent node's Y (and its inputs that are not
  initializers) as extra graph outputs, run by the backend itself; per node, a one-node model holding that
  node's weights and attributes (a flipped linear_before_reset stays flipped), run one step at a time.
Keys are (layer, direction): layer 1-based, direction "forward" or "reverse"; arrays are [steps, batch, hidden].
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.backends.base import Artifact, ArtifactBackend
from harness.model.config import RnnConfig

if TYPE_CHECKING:
    import torch

Key = tuple[int, str]
States = dict[Key, np.ndarray]
RECURRENT_OPS = ("RNN", "GRU", "LSTM")
_W, _R, _B, _H0, _C0 = 1, 2, 3, 5, 6  # ONNX RNN/GRU/LSTM input positions
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
    if not config.plain_rnn:
        raise NotLocalisable("a user's model: localised by submodule is not implemented yet")
    if config.check != "forward":
        raise NotLocalisable(f"check {config.check!r}: only forward checks are localised")
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
            h[key], c[key] = np.zeros((layer_input.shape[0], *h0[key].shape)), np.zeros((layer_input.shape[0],
                                                                                          *h0[key].shape))
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
            notes.extend(_blocking_note("torch", key, chained, free[key]))
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


def _blocking_note(runtime: str, key: Key, chained: np.ndarray, free: np.ndarray) -> list[str]:
    if np.array_equal(chained, free):
        return []
    return [f"{runtime}: one-step execution is not bitwise its full-sequence execution (layer {key[0]} {key[1]}, "
            f"max {float(np.max(np.abs(chained - free))):.2g}): kernel blocking, so part of the local error is "
            "the kernel's own"]


# --- ONNX artifacts -------------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class _Node:
    """One recurrent node of an artifact: its layer's weights (W, R, B as arrays) and what the node says."""

    node: Any  # onnx.NodeProto
    weights: dict[str, np.ndarray]  # "W", "R", "B" (absent without bias)
    directions: tuple[str, ...]


def onnx_states(backend: ArtifactBackend, artifact: Artifact, config: RnnConfig, inputs: dict[str, np.ndarray],
                reference: ReferenceStack) -> tuple[States, States, tuple[str, ...]]:
    """(free, local, notes) of an ONNX artifact run by the backend itself (its runtime and session options)."""
    import onnx

    model = onnx.load_from_string(artifact.data)
    nodes = [node for node in model.graph.node if node.op_type in RECURRENT_OPS]
    if len(nodes) != config.num_layers:
        raise NotLocalisable(f"the artifact has {len(nodes)} recurrent node(s) for {config.num_layers} layer(s)")
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    floating = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(inputs["input"].dtype))
    graph_inputs = {value.name for value in model.graph.input}
    wanted = [node.output[0] for node in nodes] + [node.input[0] for node in nodes if node.input[0] not in graph_inputs]
    wanted += [name for node in nodes for name in node.input[_W:_B + 1] if name and name not in initializers]
    wanted = list(dict.fromkeys(wanted))
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    known = {output.name for output in exposed.graph.output}
    exposed.graph.output.extend(onnx.helper.make_tensor_value_info(name, floating, None)
                                for name in wanted if name not in known)
    run = backend.load(Artifact(kind="onnx", data=exposed.SerializeToString(), producer=artifact.producer), wanted)
    values = run.run(inputs)
    free: States = {}
    local: States = {}
    notes: list[str] = []
    for layer, node in enumerate(nodes, start=1):
        parsed = _parse(node, initializers, values, onnx)
        layer_input = np.asarray(inputs[node.input[0]] if node.input[0] in graph_inputs else values[node.input[0]])
        y = np.asarray(values[node.output[0]], np.float64)  # [steps, directions, batch, hidden]
        step_model = _one_node_model(model, parsed, floating, config.cell == "lstm", onnx)
        prepared = backend.load(Artifact(kind="onnx", data=step_model, producer=artifact.producer),
                                _STEP_OUTPUTS[:3 if config.cell == "lstm" else 2])
        local.update(_onnx_teacher_forced(prepared, parsed, layer, reference, inputs["input"].dtype))
        for index, direction in enumerate(parsed.directions):
            key = (layer, direction)
            free[key] = y[:, index]
            chained = _onnx_chained(prepared, parsed, index, layer_input, reference, key)
            notes.extend(_blocking_note(f"{backend.name}", key, chained, free[key]))
    return free, local, tuple(notes)


_STEP_OUTPUTS = ("Y", "Y_h", "Y_c")


def _parse(node: Any, initializers: dict[str, Any], values: dict[str, np.ndarray], onnx: Any) -> _Node:
    attributes = {attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in node.attribute}
    if attributes.get("layout", 0) != 0:
        raise NotLocalisable(f"{node.op_type} node {node.name!r} has layout {attributes['layout']}")
    if len(node.input) > 4 and node.input[4]:
        raise NotLocalisable(f"{node.op_type} node {node.name!r} takes sequence_lens")
    direction = attributes.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    weights = {}
    for label, position in (("W", _W), ("R", _R), ("B", _B)):
        name = node.input[position] if len(node.input) > position else ""
        if name:
            weights[label] = (onnx.numpy_helper.to_array(initializers[name]) if name in initializers
                              else np.asarray(values[name]))
    names = ("forward", "reverse") if direction == "bidirectional" else (direction,)
    return _Node(node=node, weights=weights, directions=names)


def _one_node_model(model: Any, parsed: _Node, floating: int, lstm: bool, onnx: Any) -> bytes:
    """The node alone at one step: X [1, batch, features] and the initial state(s) in, Y/Y_h(/Y_c) out; its
    weights as initializers and its attributes as they are in the artifact."""
    helper = onnx.helper
    node = parsed.node
    state_inputs = ["initial_h", "initial_c"] if lstm else ["initial_h"]
    names = ["X", "W", "R", "B" if "B" in parsed.weights else "", "", *state_inputs]
    outputs = list(_STEP_OUTPUTS[:3 if lstm else 2])
    single = helper.make_node(node.op_type, names, outputs, name="one_step")
    single.attribute.extend(node.attribute)
    graph = helper.make_graph(
        [single], "one_step",
        [helper.make_tensor_value_info(name, floating, None) for name in ["X", *state_inputs]],
        [helper.make_tensor_value_info(name, floating, None) for name in outputs],
        [onnx.numpy_helper.from_array(array, name) for name, array in parsed.weights.items()])
    built = helper.make_model(graph, opset_imports=list(model.opset_import))
    built.ir_version = model.ir_version
    return bytes(built.SerializeToString())


def _feeds(x: np.ndarray, h: list[np.ndarray], c: list[np.ndarray] | None, dtype: Any) -> dict[str, np.ndarray]:
    feeds = {"X": np.asarray(x, dtype)[None], "initial_h": np.stack(h).astype(dtype)}
    if c is not None:
        feeds["initial_c"] = np.stack(c).astype(dtype)
    return feeds


def _onnx_teacher_forced(prepared: Any, parsed: _Node, layer: int, reference: ReferenceStack, dtype: Any) -> States:
    """Every direction of the node at every step, from the reference's previous states and layer input (both
    directions read the same x at step t, each from its own previous state)."""
    keys = [(layer, direction) for direction in parsed.directions]
    lstm = bool(reference.c)
    result = {key: np.zeros_like(reference.h[key]) for key in keys}
    for t in range(reference.h[keys[0]].shape[0]):
        feeds = _feeds(reference.layer_inputs[layer - 1][t], [reference.previous(key, t) for key in keys],
                       [reference.previous(key, t, cell=True) for key in keys] if lstm else None, dtype)
        y = np.asarray(prepared.run(feeds)["Y"], np.float64)
        for index, key in enumerate(keys):
            result[key][t] = y[0, index]
    return result


def _onnx_chained(prepared: Any, parsed: _Node, index: int, layer_input: np.ndarray, reference: ReferenceStack,
                  key: Key) -> np.ndarray:
    """One direction's own one-step execution chained over the sequence (the other direction's slot fed zeros)."""
    lstm = bool(reference.c)
    dtype = layer_input.dtype
    steps = layer_input.shape[0]
    zeros = np.zeros_like(reference.h0[key])
    h = [zeros for _ in parsed.directions]
    c = [zeros for _ in parsed.directions]
    h[index], c[index] = reference.h0[key], reference.c0[key]
    result = np.zeros((steps, *zeros.shape))
    for t in range(steps) if key[1] == "forward" else range(steps - 1, -1, -1):
        out = prepared.run(_feeds(layer_input[t], h, c if lstm else None, dtype))
        h[index] = np.asarray(out["Y_h"])[index]
        if lstm:
            c[index] = np.asarray(out["Y_c"])[index]
        result[t] = np.asarray(out["Y"], np.float64)[0, index]
    return result
