"""The ONNX gate: what a stored ONNX model may contain before onnxruntime or the reference evaluator loads it.

Refused: bytes that are not a model; external data anywhere (onnxruntime reads any file below the working
directory); sparse tensors and local functions (no RNN export has them); domains and operators that
torch.onnx's RNN exports do not write; tensors whose data do not match their dims; a Loop of more than
MAX_LOOP_TRIPS trips; any value whose size is known statically and exceeds MAX_VALUE_BYTES (shape inference
with data propagation: nothing is allocated). Where trips or sizes cannot be known statically, the facts
say `bounded=False` and why.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from harness.store.gates.facts import MAX_LOOP_TRIPS, MAX_VALUE_BYTES, ArtifactFacts, refused
from harness.store.gates.onnx_graph import output_without_input, recurrence_of
from harness.store.gates.onnx_structure import DEFAULT_DOMAIN, all_nodes, domain_of, structure_of

if TYPE_CHECKING:
    import onnx

# What torch.onnx.export (legacy and dynamo) writes for RNN/LSTM/GRU models with embeddings, linear heads,
# (log-)softmax and dropout, read from the stored goldens, with a margin of pure math, shape and control
# ops. No I/O, random, string, image or sequence ops.
ONNX_OPS = frozenset({
    "Abs", "Add", "And", "ArgMax", "ArgMin", "BatchNormalization", "Cast", "CastLike", "Ceil", "Clip", "Concat",
    "Constant", "ConstantOfShape", "Cos", "CumSum", "Div", "Dropout", "Einsum", "Elu", "Equal", "Erf", "Exp",
    "Expand", "Flatten", "Floor", "GRU", "Gather", "GatherElements", "GatherND", "Gelu", "Gemm", "Greater",
    "GreaterOrEqual", "HardSigmoid", "HardSwish", "Identity", "If", "IsInf", "IsNaN", "LSTM", "LayerNormalization",
    "LeakyRelu", "Less", "LessOrEqual", "Log", "LogSoftmax", "Loop", "MatMul", "Max", "Mean", "Min", "Mod", "Mul",
    "Neg", "Not", "Or", "Pad", "Pow", "PRelu", "RNN", "Range", "Reciprocal", "ReduceL2", "ReduceLogSumExp",
    "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "Relu", "Reshape", "Round", "Scan",
    "ScatterElements", "ScatterND", "Selu", "Shape", "Sigmoid", "Sign", "Sin", "Size", "Slice", "Softmax",
    "Softplus", "Softsign", "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tanh", "Tile", "TopK", "Transpose",
    "Trilu", "Unsqueeze", "Where", "Xor",
})
OPSET_DOMAINS = frozenset({"", DEFAULT_DOMAIN})  # torch's exporters import the default domain only
# Ops whose output size comes from their inputs' values: unknown after inference, the run must be bounded.
_ALLOCATING_OPS = frozenset({"ConstantOfShape", "Expand", "Tile", "Range", "Pad"})
# TensorProto.DataType -> (bits per element, the typed field holding its data when raw_data is absent).
_ELEMENTS: dict[int, tuple[int, str]] = {
    1: (32, "float_data"), 2: (8, "int32_data"), 3: (8, "int32_data"), 4: (16, "int32_data"),
    5: (16, "int32_data"), 6: (32, "int32_data"), 7: (64, "int64_data"), 9: (8, "int32_data"),
    10: (16, "int32_data"), 11: (64, "double_data"), 12: (32, "uint64_data"), 13: (64, "uint64_data"),
    14: (64, "float_data"), 15: (128, "double_data"), 16: (16, "int32_data"),
}


def verify_onnx(data: bytes, *, where: str, built_in_rnn: bool) -> ArtifactFacts:
    """The facts of an ONNX model that passed every check in this module's docstring; GoldenError otherwise."""
    model = _parse(data, where)
    _check_tensors(model, where)
    _check_domains(model, where)
    nodes = list(all_nodes(model))
    _check_text(model, nodes, where)
    unknown = sorted({f"{domain_of(node.domain)}:{node.op_type}" if domain_of(node.domain) != DEFAULT_DOMAIN
                      else node.op_type for node in nodes
                      if domain_of(node.domain) != DEFAULT_DOMAIN or node.op_type not in ONNX_OPS})
    if unknown:
        raise refused(where, f"ONNX operator{'s' if len(unknown) > 1 else ''} {', '.join(unknown[:5])} "
                             "not in the allow-list of RNN exports: refused")
    loops = _loop_bounds(model, nodes, where)
    structure = structure_of(model).to_dict()
    recurrence = recurrence_of(model)
    if built_in_rnn:
        if not recurrence:
            raise refused(where, "contains no recurrence (no RNN/LSTM/GRU node, no loop, no unrolled steps): "
                                 "the stored artifact is not an RNN export")
        constant = output_without_input(model.graph)
        if constant:
            raise refused(where, f"output {constant!r} depends on no input: the stored artifact is not an RNN export")
    sizes = _value_bounds(model, where)  # last: it strips the declared shapes from the model
    reasons = [reason for reason in (loops, sizes) if reason]
    return ArtifactFacts(kind="onnx", op_set=frozenset(structure["op_histogram"]), recurrence=recurrence,
                         structure=structure, bounded=not reasons, unbounded_reason="; ".join(reasons))


def _parse(data: bytes, where: str) -> onnx.ModelProto:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model: onnx.ModelProto = onnx.ModelProto.FromString(data)
    except (DecodeError, RecursionError, ValueError) as error:
        raise refused(where, f"not an ONNX model: {error}") from None
    if not model.HasField("graph"):  # protobuf reads many short byte strings as an empty message
        raise refused(where, "not an ONNX model: it has no graph")
    return model


def _check_text(model: onnx.ModelProto, nodes: list[onnx.NodeProto], where: str) -> None:
    """Every name the gate reads is text: protobuf hands back a proto2 string that is not UTF-8 as bytes."""
    texts = [model.producer_name, model.producer_version, *(opset.domain for opset in model.opset_import)]
    for graph in _graphs(model.graph):
        texts += [value.name for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer)]
    for node in nodes:
        texts += [node.op_type, node.domain, node.name, *node.input, *node.output,
                  *(attribute.name for attribute in node.attribute)]
    if not all(isinstance(text, str) for text in texts):
        raise refused(where, "not an ONNX model: a name in it is not UTF-8 text")


def _check_tensors(model: onnx.ModelProto, where: str) -> None:
    """Every tensor anywhere in the model (initializers, Constant attributes, subgraphs, functions, training
    info) keeps its data inline, in the amount its dims and type declare."""
    import onnx

    for tensor in _tensors(model, where):
        name = tensor.name or "(unnamed)"
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "?")
            raise refused(where, f"tensor {name!r} keeps its data in an external file ({location!r}): refused, "
                                 "a stored artifact must be self-contained")
        if tensor.data_type not in _ELEMENTS:
            raise refused(where, f"tensor {name!r} has element type {tensor.data_type}, which no RNN export uses: "
                                 "refused")
        if any(dim < 0 for dim in tensor.dims):
            raise refused(where, f"tensor {name!r} declares negative dims {list(tensor.dims)}: refused")
        bits, field = _ELEMENTS[tensor.data_type]
        count = math.prod(tensor.dims)
        if count * bits // 8 > MAX_VALUE_BYTES:
            raise refused(where, f"tensor {name!r} declares {count * bits // 8} bytes, over the bound of "
                                 f"{MAX_VALUE_BYTES}: refused")
        stored = len(tensor.raw_data) * 8 // bits if tensor.HasField("raw_data") else len(getattr(tensor, field))
        if tensor.data_type in (14, 15) and not tensor.HasField("raw_data"):
            stored //= 2  # complex: two numbers per element
        if stored != count or (tensor.HasField("raw_data") and len(tensor.raw_data) * 8 % bits):
            raise refused(where, f"tensor {name!r} holds {stored} elements where its dims {list(tensor.dims)} "
                                 f"declare {count}: refused")


def _tensors(message: Any, where: str) -> Iterator[onnx.TensorProto]:
    """Every TensorProto inside a protobuf message, at any depth; sparse tensors are refused."""
    import onnx

    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        for item in [value] if hasattr(value, "ListFields") else value:
            if isinstance(item, onnx.TensorProto):
                yield item
            elif isinstance(item, onnx.SparseTensorProto):
                raise refused(where, "sparse tensor: refused (no RNN export has one)")
            else:
                yield from _tensors(item, where)


def _check_domains(model: onnx.ModelProto, where: str) -> None:
    foreign = sorted({opset.domain for opset in model.opset_import if opset.domain not in OPSET_DOMAINS})
    if foreign:
        raise refused(where, f"ONNX domain {', '.join(map(repr, foreign))} is not one torch.onnx writes: refused")
    if len(model.functions):
        names = ", ".join(f"{function.domain}:{function.name}" for function in model.functions[:3])
        raise refused(where, f"model-local functions ({names}): refused, torch.onnx's RNN exports have none")


def _loop_bounds(model: onnx.ModelProto, nodes: list[onnx.NodeProto], where: str) -> str:
    """Refuse a Loop whose constant trip count exceeds MAX_LOOP_TRIPS; the reason the trips are not bounded
    statically ("" when they are)."""
    constants = _scalar_constants(model, nodes)
    reasons = []
    for node in nodes:
        name = node.name or (node.output[0] if node.output else "")
        if node.op_type == "Scan":
            reasons.append(f"Scan {name!r} iterates over a length known only at run time")
        if node.op_type != "Loop":
            continue
        trips = node.input[0] if node.input else ""
        if not trips:
            reasons.append(f"Loop {name!r} has no trip count")
        elif trips not in constants:
            reasons.append(f"Loop {name!r} has a trip count computed at run time")
        elif constants[trips] > MAX_LOOP_TRIPS:
            raise refused(where, f"Loop {name!r} would run {constants[trips]} trips, over the bound of "
                                 f"{MAX_LOOP_TRIPS}: refused")
    return "; ".join(reasons)


def _scalar_constants(model: onnx.ModelProto, nodes: list[onnx.NodeProto]) -> dict[str, int]:
    """Integer scalars by value name: one-element integer initializers and Constant outputs."""
    import onnx
    from onnx import numpy_helper

    tensors = {tensor.name: tensor for tensor in model.graph.initializer}
    values = {}
    for node in nodes:
        for attribute in node.attribute if node.op_type == "Constant" and node.output else ():
            if attribute.name == "value" and attribute.type == onnx.AttributeProto.TENSOR:
                tensors[node.output[0]] = attribute.t
            elif attribute.name == "value_int":
                values[node.output[0]] = int(attribute.i)
    return {**{name: int(numpy_helper.to_array(tensor).reshape(-1)[0]) for name, tensor in tensors.items()
               if tensor.data_type in (6, 7) and math.prod(tensor.dims) == 1}, **values}


def _value_bounds(model: onnx.ModelProto, where: str) -> str:
    """Refuse a value whose statically known size exceeds MAX_VALUE_BYTES; the reason sizes are not all known
    ("" when they are). Declared shapes are dropped first: inference must not trust what the file claims."""
    import onnx

    for graph in _graphs(model.graph):
        del graph.value_info[:]
        for value in graph.output:
            value.type.tensor_type.ClearField("shape")
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as error:
        return f"shape inference failed ({str(error).splitlines()[0][:80] if str(error) else type(error).__name__})"
    input_symbols = {dim.dim_param for value in model.graph.input
                     for dim in value.type.tensor_type.shape.dim if dim.HasField("dim_param")}
    unknown = []
    for graph in _graphs(inferred.graph):
        values = {value.name: value for value in (*graph.value_info, *graph.output)}
        producers = {output: node for node in graph.node for output in node.output}
        for value in values.values():
            size = _static_bytes(value)
            if size is not None and size > MAX_VALUE_BYTES:
                producer = producers.get(value.name)
                op = f" ({producer.op_type})" if producer is not None else ""
                raise refused(where, f"value {value.name!r}{op} would take {size} bytes, over the bound of "
                                     f"{MAX_VALUE_BYTES}: refused")
        constants = _constant_sizes(graph)
        unknown += [f"{node.op_type} {node.name or node.output[0]!r}" for node in graph.node
                    if node.op_type in _ALLOCATING_OPS
                    and not all(name in values and _known(values[name], input_symbols) for name in node.output)
                    and not _one_existing_dim(node, producers, constants)]
    return f"sizes not known statically: {', '.join(unknown[:3])}" if unknown else ""


# Ops that pass a shape vector's values on unchanged (or only pick among them).
_PASSING_SHAPE_OPS = frozenset({"Unsqueeze", "Squeeze", "Cast", "Identity", "Reshape"})


def _constant_sizes(graph: onnx.GraphProto) -> dict[str, list[int]]:
    """Small integer constants (initializers and Constant outputs of up to 8 values) by value name."""
    import onnx
    from onnx import numpy_helper

    tensors = {tensor.name: tensor for tensor in graph.initializer}
    for node in graph.node:
        for attribute in node.attribute if node.op_type == "Constant" and node.output else ():
            if attribute.name == "value" and attribute.type == onnx.AttributeProto.TENSOR:
                tensors[node.output[0]] = attribute.t
    return {name: [int(value) for value in numpy_helper.to_array(tensor).reshape(-1)]
            for name, tensor in tensors.items() if tensor.data_type in (6, 7) and math.prod(tensor.dims) <= 8}


def _one_existing_dim(node: onnx.NodeProto, producers: dict[str, onnx.NodeProto],
                      constants: dict[str, list[int]]) -> bool:
    """A ConstantOfShape whose shape is a Concat of small constants and at most one dimension of a tensor that
    already exists (Gather of a Shape, as the legacy exporter's zero initial state [layers, batch, hidden]):
    its size is at most the constants' product times the size of that tensor, linear in memory already held."""
    if node.op_type != "ConstantOfShape" or not node.input:
        return False
    concat = _through(producers, node.input[0])
    if concat is None or concat.op_type != "Concat":
        return False
    constant_product, dynamic = 1, 0
    for name in concat.input:
        if name in constants:
            constant_product *= math.prod(max(value, 1) for value in constants[name])
            continue
        source = _through(producers, name)
        if source is None or source.op_type != "Gather" or source.input[1] not in constants:
            return False
        shape = _through(producers, source.input[0])
        if shape is None or shape.op_type != "Shape" or len(constants[source.input[1]]) != 1:
            return False
        dynamic += 1
    return dynamic <= 1 and constant_product * 4 <= MAX_VALUE_BYTES


def _through(producers: dict[str, onnx.NodeProto], name: str) -> onnx.NodeProto | None:
    """The node that computes `name`, looking through ops that pass a shape vector on unchanged."""
    node = producers.get(name)
    while node is not None and node.op_type in _PASSING_SHAPE_OPS and node.input:
        node = producers.get(node.input[0])
    return node


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    import onnx

    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attribute.g)
            for subgraph in attribute.graphs:
                yield from _graphs(subgraph)


def _static_bytes(value: onnx.ValueInfoProto) -> int | None:
    tensor = value.type.tensor_type
    if not tensor.HasField("shape") or tensor.elem_type not in _ELEMENTS:
        return None
    dims = [dim.dim_value for dim in tensor.shape.dim if dim.HasField("dim_value")]
    if len(dims) != len(tensor.shape.dim):
        return None
    return int(math.prod(dims)) * _ELEMENTS[tensor.elem_type][0] // 8


def _known(value: onnx.ValueInfoProto, input_symbols: set[str]) -> bool:
    """Whether a value's size is fixed, or follows the graph inputs' sizes."""
    tensor = value.type.tensor_type
    return tensor.HasField("shape") and all(
        dim.HasField("dim_value") or (dim.HasField("dim_param") and dim.dim_param in input_symbols)
        for dim in tensor.shape.dim)
