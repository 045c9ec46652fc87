"""What an ONNX graph computes from what: the recurrence it contains and whether each output depends on an
input. A built-in RNN config's artifact swapped for a model that outputs constants has neither."""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

from harness.store.gates.onnx_structure import DEFAULT_DOMAIN, RECURRENT_OPS, all_nodes, domain_of

if TYPE_CHECKING:
    import onnx

LOOP_OPS = ("Loop", "Scan")
# An unrolled RNN step: h_t = act(x_t W + h_{t-1} U): an activation fed, through a matrix product, by the
# previous step's activation. Two such steps in a chain are a recurrence a static check can see.
_ACTIVATIONS = frozenset({"Tanh", "Sigmoid", "Relu"})
_PRODUCTS = frozenset({"MatMul", "Gemm"})
MIN_UNROLLED_STEPS = 2


def recurrence_of(model: onnx.ModelProto) -> str:
    """The recurrence found, e.g. "2 LSTM", "1 Loop" or "unrolled (5 chained steps)"; "" when there is none."""
    counts = Counter(node.op_type for node in all_nodes(model)
                     if domain_of(node.domain) == DEFAULT_DOMAIN and node.op_type in (*RECURRENT_OPS, *LOOP_OPS))
    found = [f"{counts[op]} {op}" for op in (*RECURRENT_OPS, *LOOP_OPS) if counts[op]]
    if found:
        return ", ".join(found)
    steps = unrolled_steps(model.graph)
    return f"unrolled ({steps} chained steps)" if steps >= MIN_UNROLLED_STEPS else ""


def unrolled_steps(graph: onnx.GraphProto) -> int:
    """The longest chain of activations each fed by the previous one through a MatMul/Gemm (nodes in the
    topological order ONNX requires; an unordered graph only shortens the chain)."""
    pending: dict[str, int] = {}  # value -> longest chain ending in an activation not yet through a product
    through: dict[str, int] = {}  # value -> longest chain whose last activation has gone through a product
    longest = 0
    for node in graph.node:
        before = max((pending.get(name, 0) for name in node.input), default=0)
        after = max((through.get(name, 0) for name in node.input), default=0)
        if node.op_type in _ACTIVATIONS:
            before, after = max(before, after + 1), 0
            longest = max(longest, before)
        elif node.op_type in _PRODUCTS:
            before, after = 0, max(before, after)
        for name in node.output:
            pending[name], through[name] = before, after
    return longest


def output_without_input(graph: onnx.GraphProto) -> str:
    """The name of the first graph output that no graph input reaches (initializers are not inputs), or ""."""
    initializers = {tensor.name for tensor in graph.initializer}
    consumers: dict[str, list[int]] = defaultdict(list)
    for index, node in enumerate(graph.node):
        for name in set(_reads(node)):
            consumers[name].append(index)
    reached = {value.name for value in graph.input if value.name not in initializers}
    queue, visited = deque(reached), set()
    while queue:
        for index in consumers.get(queue.popleft(), ()):
            if index not in visited:
                visited.add(index)
                fresh = [name for name in graph.node[index].output if name and name not in reached]
                reached.update(fresh)
                queue.extend(fresh)
    return next((value.name for value in graph.output if value.name not in reached), "")


def _reads(node: onnx.NodeProto) -> Iterator[str]:
    """The values a node reads: its inputs and, for control flow, what its subgraphs read from outside."""
    import onnx

    yield from (name for name in node.input if name)
    for attribute in node.attribute:
        subgraphs = [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)
        for subgraph in subgraphs:
            for inner in subgraph.node:
                yield from _reads(inner)
