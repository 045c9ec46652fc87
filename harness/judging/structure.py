"""The structural fingerprint of an exported ONNX model (opsets, producer, op counts, the recurrent nodes'
attributes, input and output signatures) and a readable diff between two of them.

Why: when ONNX outputs drift, the first question is whether the exporter wrote a different graph (a GRU
exported with linear_before_reset=0, a plain RNN unrolled into MatMul/Tanh steps) or the runtime computed
the same graph differently. Stdlib only at import time; `onnx` is imported where a model is parsed, so
recorded fingerprints can be read and diffed where torch and onnx cannot be imported.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx

RECURRENT_OPS = ("RNN", "LSTM", "GRU")
DEFAULT_DOMAIN = "ai.onnx"
ARROW = "→"
# Attributes the ONNX spec defaults, filled in when absent: one exporter writes them, the other leaves them
# out (legacy GRU has no direction/layout, dynamo GRU has both), and that alone is no structural change.
# Activations are not filled: their default list depends on the direction.
ATTRIBUTE_DEFAULTS: dict[str, dict[str, object]] = {
    "RNN": {"direction": "forward", "layout": 0},
    "LSTM": {"direction": "forward", "layout": 0, "input_forget": 0},
    "GRU": {"direction": "forward", "layout": 0, "linear_before_reset": 0},
}
_TOP_FIELDS = ("opsets", "producer", "op_histogram", "recurrent_nodes", "inputs", "outputs")
_ABSENT = object()  # an attribute one side lacks: unlike None, no attribute value can be it


@dataclass(frozen=True, kw_only=True)
class RecurrentNode:
    """One ONNX RNN/LSTM/GRU node: its op type and every attribute it carries, spec defaults filled in."""

    op_type: str
    attributes: dict[str, object]


@dataclass(frozen=True, kw_only=True)
class TensorSignature:
    """A graph input or output: name, element type name ("FLOAT") and shape (int, symbol, or "?")."""

    name: str
    elem_type: str
    shape: tuple[int | str, ...]


@dataclass(frozen=True, kw_only=True)
class OnnxStructure:
    """What an exported model is made of, independent of its weights."""

    opsets: dict[str, int]
    producer: str
    op_histogram: dict[str, int]
    recurrent_nodes: tuple[RecurrentNode, ...]
    inputs: tuple[TensorSignature, ...]
    outputs: tuple[TensorSignature, ...]

    @property
    def total_ops(self) -> int:
        return sum(self.op_histogram.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe; `from_dict` reads it back to an equal structure."""
        return {
            "opsets": dict(sorted(self.opsets.items())),
            "producer": self.producer,
            "op_histogram": dict(sorted(self.op_histogram.items())),
            "recurrent_nodes": [{"op_type": node.op_type, "attributes": _json_attributes(node.attributes)}
                                for node in self.recurrent_nodes],
            "inputs": [_signature_dict(signature) for signature in self.inputs],
            "outputs": [_signature_dict(signature) for signature in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OnnxStructure:
        """The inverse of `to_dict`; a malformed document raises ValueError naming the bad field."""
        data = _object(data, _TOP_FIELDS, "top level")
        return cls(
            opsets=_counts(data["opsets"], "opsets"),
            producer=_string(data["producer"], "producer"),
            op_histogram=_counts(data["op_histogram"], "op_histogram"),
            recurrent_nodes=tuple(_node_from(item, f"recurrent_nodes[{index}]")
                                  for index, item in enumerate(_list(data["recurrent_nodes"], "recurrent_nodes"))),
            inputs=_signatures(data["inputs"], "inputs"),
            outputs=_signatures(data["outputs"], "outputs"),
        )


def onnx_structure(model_bytes: bytes) -> OnnxStructure:
    """The fingerprint of a serialized ModelProto; bytes that are not one raise ValueError("not an ONNX model: ...")."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.ModelProto.FromString(model_bytes)
    except DecodeError as error:
        raise ValueError(f"not an ONNX model: {error}") from None
    if not model.HasField("graph"):  # protobuf reads many short byte strings as an empty message
        raise ValueError("not an ONNX model: it has no graph")
    nodes = list(_all_nodes(model))
    initializers = {initializer.name for initializer in model.graph.initializer}
    return OnnxStructure(
        opsets={_domain(opset.domain): int(opset.version) for opset in model.opset_import},
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        op_histogram=dict(sorted(Counter(_op_name(node) for node in nodes).items())),
        recurrent_nodes=tuple(_recurrent(node) for node in nodes
                              if node.op_type in RECURRENT_OPS and _domain(node.domain) == DEFAULT_DOMAIN),
        inputs=tuple(_signature(value) for value in model.graph.input if value.name not in initializers),
        outputs=tuple(_signature(value) for value in model.graph.output),
    )


def structure_diff(recorded: OnnxStructure, now: OnnxStructure) -> tuple[str, ...]:
    """One readable line per structural change from `recorded` to `now`; empty when they are equal."""
    return (*_recurrent_lines(recorded, now), *_opset_lines(recorded.opsets, now.opsets),
            *_producer_lines(recorded.producer, now.producer),
            *_histogram_lines(recorded.op_histogram, now.op_histogram),
            *_signature_lines("input", recorded.inputs, now.inputs),
            *_signature_lines("output", recorded.outputs, now.outputs))


# --- reading a ModelProto ---------------------------------------------------------------------------------

def _all_nodes(model: onnx.ModelProto) -> Iterator[onnx.NodeProto]:
    """Main graph nodes in order, each followed by the nodes of its subgraphs; then local functions' nodes."""
    yield from _graph_nodes(model.graph.node)
    for function in model.functions:
        yield from _graph_nodes(function.node)


def _graph_nodes(nodes: Iterable[onnx.NodeProto]) -> Iterator[onnx.NodeProto]:
    import onnx

    for node in nodes:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _graph_nodes(attribute.g.node)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for graph in attribute.graphs:
                    yield from _graph_nodes(graph.node)


def _domain(domain: str) -> str:
    return domain or DEFAULT_DOMAIN


def _op_name(node: onnx.NodeProto) -> str:
    domain = _domain(node.domain)
    return node.op_type if domain == DEFAULT_DOMAIN else f"{domain}:{node.op_type}"


def _recurrent(node: onnx.NodeProto) -> RecurrentNode:
    import onnx

    attributes = {attribute.name: _plain(onnx.helper.get_attribute_value(attribute)) for attribute in node.attribute}
    return RecurrentNode(op_type=node.op_type, attributes={**ATTRIBUTE_DEFAULTS[node.op_type], **attributes})


def _plain(value: object) -> object:
    """An attribute value as JSON-safe Python: strings decoded, lists kept as lists."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, int | float | str):
        return value
    return f"<{type(value).__name__}>"  # tensors or graphs: not expected on RNN nodes; the kind is enough


def _signature(value: onnx.ValueInfoProto) -> TensorSignature:
    import onnx

    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":  # sequences, maps, optionals: no RNN export has them; name the kind
        return TensorSignature(name=value.name, elem_type=str(kind or "UNDEFINED"), shape=())
    tensor = value.type.tensor_type
    # A tensor of unknown rank shows shape () like a scalar; exporters always write the rank of RNN tensors.
    shape = tuple(dim.dim_value if dim.HasField("dim_value") else dim.dim_param if dim.HasField("dim_param")
                  else "?" for dim in tensor.shape.dim)
    return TensorSignature(name=value.name, elem_type=onnx.TensorProto.DataType.Name(tensor.elem_type), shape=shape)


# --- diff lines -------------------------------------------------------------------------------------------

def _recurrent_lines(recorded: OnnxStructure, now: OnnxStructure) -> Iterator[str]:
    op_types = dict.fromkeys(node.op_type for node in (*recorded.recurrent_nodes, *now.recurrent_nodes))
    for op_type in op_types:
        before = [node for node in recorded.recurrent_nodes if node.op_type == op_type]
        after = [node for node in now.recurrent_nodes if node.op_type == op_type]
        if not after:
            gone = f"{op_type} node gone" if len(before) == 1 else f"{len(before)} {op_type} nodes gone"
            yield f"{gone}: {now.total_ops} ops instead"
        elif not before:
            yield f"new {op_type} node: {len(after)} instead of 0"
        else:
            if len(before) != len(after):
                yield f"{op_type} nodes: {len(after)} instead of {len(before)}"
            numbered = max(len(before), len(after)) > 1
            for index, (old, new) in enumerate(zip(before, after, strict=False), start=1):
                label = f"{op_type}#{index}" if numbered else op_type
                yield from _attribute_lines(label, old.attributes, new.attributes)


def _attribute_lines(label: str, before: dict[str, object], after: dict[str, object]) -> Iterator[str]:
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name, _ABSENT), after.get(name, _ABSENT)
        if old != new:
            yield f"{label}.{name} {_show(old)} {ARROW} {_show(new)}"


def _show(value: object) -> str:
    return "absent" if value is _ABSENT else str(value) if isinstance(value, str) else repr(value)


def _opset_lines(before: dict[str, int], after: dict[str, int]) -> Iterator[str]:
    for domain in sorted(before.keys() | after.keys()):
        if domain not in after:
            yield f"opset {domain} {before[domain]} gone"
        elif domain not in before:
            yield f"new opset {domain} {after[domain]}"
        elif before[domain] != after[domain]:
            yield f"opset {domain} {before[domain]} {ARROW} {after[domain]}"


def _producer_lines(before: str, after: str) -> Iterator[str]:
    if before == after:
        return
    old_name, _, old_version = before.partition(" ")
    new_name, _, new_version = after.partition(" ")
    if old_name == new_name and old_version and new_version:  # the usual case: the same exporter, a new version
        yield f"producer {old_name} {old_version} {ARROW} {new_version}"
    else:
        yield f"producer {before or '(none)'} {ARROW} {after or '(none)'}"


def _histogram_lines(before: dict[str, int], after: dict[str, int]) -> Iterator[str]:
    changed = [f"{op} {before.get(op, 0)} {ARROW} {after.get(op, 0)}" for op in sorted(before.keys() | after.keys())
               if before.get(op, 0) != after.get(op, 0)]
    if changed:
        yield f"ops: {', '.join(changed)}"


def _signature_lines(kind: str, before: tuple[TensorSignature, ...],
                     after: tuple[TensorSignature, ...]) -> Iterator[str]:
    old = {signature.name: signature for signature in before}
    new = {signature.name: signature for signature in after}
    for name, signature in old.items():
        if name not in new:
            yield f"{kind} {name} gone"
            continue
        if signature.elem_type != new[name].elem_type:
            yield f"{kind} {name} {signature.elem_type} {ARROW} {new[name].elem_type}"
        if signature.shape != new[name].shape:
            yield f"{kind} {name} shape {list(signature.shape)} {ARROW} {list(new[name].shape)}"
    yield from (f"new {kind} {name}" for name in new if name not in old)
    common_before, common_after = [n for n in old if n in new], [n for n in new if n in old]
    if common_before != common_after:  # a positional caller would now feed the wrong tensor
        yield f"{kind} order {common_before} {ARROW} {common_after}"


# --- reading a recorded dict ------------------------------------------------------------------------------

def _json_attributes(attributes: dict[str, object]) -> dict[str, object]:
    """A copy by name, lists copied too: the caller's structure stays untouched by edits to the dict."""
    return {name: list(value) if isinstance(value, list | tuple) else value
            for name, value in sorted(attributes.items())}


def _signature_dict(signature: TensorSignature) -> dict[str, Any]:
    return {"name": signature.name, "elem_type": signature.elem_type, "shape": list(signature.shape)}


def _fail(where: str, wanted: str, value: object) -> ValueError:
    shown = repr(value)
    return ValueError(f"onnx structure: {where} must be {wanted}, got {shown[:80]}{'...' if len(shown) > 80 else ''}")


def _object(data: object, keys: tuple[str, ...], where: str) -> dict[str, Any]:
    """`data` itself, once it is a dict with exactly these keys."""
    if not isinstance(data, dict):
        raise _fail(where, f"an object with {', '.join(keys)}", data)
    missing, unexpected = [key for key in keys if key not in data], sorted(map(str, data.keys() - set(keys)))
    problems = [f"{label} {', '.join(names)}" for label, names in (("missing", missing), ("unexpected", unexpected))
                if names]
    if problems:
        raise ValueError(f"onnx structure: {where}: {'; '.join(problems)}")
    return data


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is no count


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, "a string", value)
    return value


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(where, "a list", value)
    return value


def _counts(value: object, where: str) -> dict[str, int]:
    if not isinstance(value, dict):
        raise _fail(where, "an object of name -> int", value)
    for key, count in value.items():
        if not isinstance(key, str) or not _is_int(count) or count < 0:
            raise _fail(f"{where}[{key!r}]", "a non-negative int", count)
    return dict(value)


def _node_from(data: object, where: str) -> RecurrentNode:
    data = _object(data, ("op_type", "attributes"), where)
    op_type = _string(data["op_type"], f"{where}.op_type")
    if op_type not in RECURRENT_OPS:
        raise _fail(f"{where}.op_type", f"one of {', '.join(RECURRENT_OPS)}", op_type)
    attributes = data["attributes"]
    if not isinstance(attributes, dict):
        raise _fail(f"{where}.attributes", "an object", attributes)
    for name, value in attributes.items():
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(item, str | float) or _is_int(item) for item in items):
            raise _fail(f"{where}.attributes[{name!r}]", "a string, number or list of them", value)
    return RecurrentNode(op_type=op_type, attributes=_json_attributes(attributes))


def _signatures(value: object, where: str) -> tuple[TensorSignature, ...]:
    signatures = []
    for index, item in enumerate(_list(value, where)):
        here = f"{where}[{index}]"
        item = _object(item, ("name", "elem_type", "shape"), here)
        shape = _list(item["shape"], f"{here}.shape")
        for position, dim in enumerate(shape):
            if not (_is_int(dim) or isinstance(dim, str)):
                raise _fail(f"{here}.shape[{position}]", "an int or a string", dim)
        signatures.append(TensorSignature(name=_string(item["name"], f"{here}.name"),
                                          elem_type=_string(item["elem_type"], f"{here}.elem_type"),
                                          shape=tuple(shape)))
    return tuple(signatures)
