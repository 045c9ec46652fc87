"""Per-submodule outputs of a user's model on both sides: eager forward hooks, and an ONNX artifact's values
mapped to submodules through the exporter's name scopes (the legacy exporter names nodes
/encoder/Gather; the dynamo exporter writes pkg.torch.onnx.name_scopes metadata). harness.judging.submodules
finds the first submodule whose output moves.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.backends.base import Artifact, ArtifactBackend

if TYPE_CHECKING:
    from harness.model.case import Case

_SCOPES = "pkg.torch.onnx.name_scopes"


def eager_outputs(case: Case) -> tuple[dict[str, list[np.ndarray]], dict[str, str]]:
    """Each submodule's floating outputs from its first call (in call order), and its class name."""
    import torch

    from harness.model.case import regroup
    from harness.model.tensors import to_numpy, to_torch

    outputs: dict[str, list[np.ndarray]] = {}
    kinds: dict[str, str] = {}

    def hook(name: str) -> Any:
        def record(module: torch.nn.Module, args: Any, returned: Any) -> None:
            if name not in outputs:
                outputs[name] = [to_numpy(tensor) for tensor in _tensors(returned) if tensor.is_floating_point()]
                kinds[name] = type(module).__name__
        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in case.module.named_modules() if name]
    try:
        with torch.no_grad():
            case.module(*regroup([to_torch(array) for array in case.inputs.values()], case.argument_groups))
    finally:
        for handle in handles:
            handle.remove()
    return outputs, kinds


def _tensors(returned: Any) -> list[Any]:
    import torch

    if isinstance(returned, torch.Tensor):
        return [returned]
    if isinstance(returned, (tuple, list)):
        return [tensor for item in returned for tensor in _tensors(item)]
    return []


def node_scope(node: Any) -> str:
    """The dotted submodule path a node was exported from ('' for the model's own code)."""
    from harness.backends.wrappers import FLATTENED_MODULE

    scopes = next((prop.value for prop in node.metadata_props if prop.key == _SCOPES), None)
    if scopes is not None:  # dynamo: ['', 'harness_user_model', 'harness_user_model.decoder', 'linear'] (the op last)
        paths = [scope for scope in ast.literal_eval(scopes)[:-1] if scope]
        path = paths[-1] if paths else ""
    else:  # legacy: /harness_user_model/decoder/MatMul
        path = ".".join(node.name.strip("/").split("/")[:-1]) if node.name.startswith("/") else ""
    parts = path.split(".") if path else []
    return ".".join(parts[1:] if parts[:1] == [FLATTENED_MODULE] else parts)


def scope_boundaries(model: Any) -> dict[str, list[str]]:
    """Submodule path -> the values its nodes (its own submodules' included) hand to the rest of the graph."""
    scopes = [node_scope(node) for node in model.graph.node]
    outputs = {value.name for value in model.graph.output}
    boundaries: dict[str, list[str]] = {}
    for index, node in enumerate(model.graph.node):
        for path in _enclosing(scopes[index]):
            inside = {i for i, scope in enumerate(scopes) if scope == path or scope.startswith(path + ".")}
            for name in node.output:
                used_outside = any(name in other.input for i, other in enumerate(model.graph.node) if i not in inside)
                if name and (used_outside or name in outputs) and name not in boundaries.get(path, []):
                    boundaries.setdefault(path, []).append(name)
    return boundaries


def _enclosing(path: str) -> list[str]:
    parts = path.split(".") if path else []
    return [".".join(parts[:end]) for end in range(1, len(parts) + 1)]


def onnx_values(backend: ArtifactBackend, artifact: Artifact, inputs: dict[str, np.ndarray],
                names: Sequence[str]) -> dict[str, np.ndarray]:
    """The named values of an artifact, run by the backend on a copy exposing them as outputs."""
    import onnx

    model = onnx.load_from_string(artifact.data)
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    known = {output.name for output in exposed.graph.output}
    inferred = {value.name: value for value in onnx.shape_inference.infer_shapes(model).graph.value_info}
    exposed.graph.output.extend(inferred.get(name) or onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                                                                          None)
                                for name in names if name not in known)
    run = backend.load(Artifact(kind="onnx", data=exposed.SerializeToString(), producer=artifact.producer), names)
    return run.run(inputs)
