"""Per layer x direction x step states of an ONNX artifact of a built-in stack (both exporters emit one
RNN/GRU/LSTM node per layer), run by the backend itself with its own session options:

- free-running: a copy of the artifact with every recurrent node's Y (and the node inputs that are not
  initializers) as extra graph outputs;
- teacher-forced: per node, a one-node model holding that node's weights and attributes (direction,
  hidden_size, linear_before_reset, activations: a flipped attribute stays flipped), run one step at a time from
  the reference's states (harness.backends.layer_states.ReferenceStack).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.backends.base import Artifact, ArtifactBackend
from harness.backends.layer_states import Key, NotLocalisable, ReferenceStack, States, blocking_note
from harness.model.config import RnnConfig

RECURRENT_OPS = ("RNN", "GRU", "LSTM")
_W, _R, _B = 1, 2, 3  # ONNX RNN/GRU/LSTM input positions (then sequence_lens, initial_h, initial_c, P)
_SEQUENCE_LENS = 4


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
            notes.extend(blocking_note(f"{backend.name}", key, chained, free[key]))
    return free, local, tuple(notes)


_STEP_OUTPUTS = ("Y", "Y_h", "Y_c")


def _parse(node: Any, initializers: dict[str, Any], values: dict[str, np.ndarray], onnx: Any) -> _Node:
    attributes = {attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in node.attribute}
    if attributes.get("layout", 0) != 0:
        raise NotLocalisable(f"{node.op_type} node {node.name!r} has layout {attributes['layout']}")
    if len(node.input) > _SEQUENCE_LENS and node.input[_SEQUENCE_LENS]:
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
