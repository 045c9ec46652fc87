"""The torch.export gate: what a stored `.pt2` archive (torch.export.save, torch 2.13 layout) may contain
before torch.export.load sees it.

torch.export.load unpickles with weights_only=False any weight or constant marked `use_pickle`, custom and
opaque objects, and sample inputs that weights_only refuses; it hands symbolic expressions to sympify (an
eval) and compiles `guards_code` into Python. So: only the members torch.export.save writes for plain
tensors; no `use_pickle`; the sample inputs' pickle limited to tensor globals; no guards code; expressions
limited to symbols, numbers and the sympy functions torch names; node targets limited to aten operators.
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Iterator
from typing import Any

from harness.store.gates.archive import check_globals, read_archive
from harness.store.gates.aten_ops import ATEN_OPS, RECURRENT_ATEN_OPS
from harness.store.gates.facts import MAX_VALUE_BYTES, NO_RECURRENCE, ArtifactFacts, refused

KIND = "torch.export"
_NAME = r"[A-Za-z0-9_]+"
_MEMBERS = re.compile(rf"archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
                      rf"|models/{_NAME}\.json|data/sample_inputs/{_NAME}\.pt"
                      rf"|data/weights/{_NAME}_weights_config\.json|data/weights/weight_\d+"
                      rf"|data/constants/{_NAME}_constants_config\.json|data/constants/tensor_\d+")
_SAVED_MEMBERS = re.compile(r"data\.pkl|data/\d+|byteorder|version|\.data/version|\.data/serialization_id"
                            r"|\.format_version|\.storage_alignment")
_STORAGES = ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool")
SAMPLE_INPUT_GLOBALS = frozenset({"torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
                                  "collections.OrderedDict", *(f"torch.{dtype}Storage" for dtype in _STORAGES)})
# Extra ops a program exported from an RNN module holds besides ATEN_OPS: decompositions' names, shape
# helpers and asserts, and (symbolic shapes) Python's integer operators.
_EXTRA_ATEN = frozenset({"_log_softmax", "_softmax", "native_dropout", "_to_copy", "_unsafe_view", "alias", "t",
                         "sym_size", "sym_numel", "sym_stride", "_assert_scalar", "_assert_tensor_metadata",
                         "sym_constrain_range_for_size", "native_layer_norm", "split_with_sizes", "copy"})
_PYTHON_TARGETS = frozenset({f"_operator.{op}" for op in ("getitem", "add", "sub", "mul", "floordiv", "mod", "neg",
                                                          "eq", "ne", "lt", "le", "gt", "ge", "truediv", "pow")})
_LOOP_TARGETS = frozenset({"torch.ops.higher_order.while_loop", "torch.ops.higher_order.scan"})
_ALLOWED_HIGHER_ORDER = frozenset({*_LOOP_TARGETS, "torch.ops.higher_order.cond"})
# What sympify may see: symbols (s0, u3), integers, operators and the functions the deserializer names.
_EXPRESSION = re.compile(r"[A-Za-z0-9_ +\-*/%(),<>=!.]*")
_EXPRESSION_WORDS = frozenset({"FloorDiv", "ModularIndexing", "Where", "PythonMod", "Mod", "CleanDiv", "CeilToInt",
                               "FloorToInt", "CeilDiv", "Max", "Min", "Abs", "oo", "True", "False", "Eq", "Ne",
                               "And", "Or", "Not", "floor", "ceiling", "int_oo"})


def verify_torch_export(data: bytes, *, where: str, built_in_rnn: bool) -> ArtifactFacts:
    """The facts of a .pt2 archive that passed every check in this module's docstring; GoldenError otherwise."""
    members = read_archive(data, where, KIND)
    for name in members:
        if not _MEMBERS.fullmatch(name):
            raise refused(where, f"{KIND} archive member {name!r} is not one torch.export.save writes for plain "
                                 "tensors: refused")
    if members.get("archive_format") != b"pt2":
        raise refused(where, f"{KIND} archive does not say it is pt2: refused")
    for name, content in members.items():
        if name.endswith("_config.json"):
            _check_payload_config(name, content, members, where)
        elif name.startswith("data/sample_inputs/") and content:
            saved = read_archive(content, f"{where}: {name}", "torch.save")
            for inner in saved:
                if not _SAVED_MEMBERS.fullmatch(inner):
                    raise refused(where, f"{name}: member {inner!r} is not one torch.save writes: refused")
            check_globals(saved.get("data.pkl", b""), where, f"{name}/data.pkl", SAMPLE_INPUT_GLOBALS)
    programs = [_program(name, content, where) for name, content in members.items() if name.startswith("models/")]
    if len(programs) != 1:
        raise refused(where, f"{KIND} archive holds {len(programs)} programs, not one: refused")
    program = programs[0]
    targets = frozenset(_check_program(program, where))
    recurrent = sorted(target for target in targets if _aten_name(target) in RECURRENT_ATEN_OPS
                       or target in _LOOP_TARGETS)
    if built_in_rnn:
        if not recurrent:
            raise refused(where, NO_RECURRENCE)
        constant = _output_without_input(program["graph_module"])
        if constant:
            raise refused(where, f"output {constant!r} depends on no input: the stored artifact is not an RNN export")
    loops = sorted(targets & _LOOP_TARGETS)  # their trips are data: only a run under bounds can tell
    return ArtifactFacts(kind="torch-export", op_set=targets, recurrence=", ".join(recurrent), bounded=not loops,
                         unbounded_reason=f"its program calls {', '.join(loops)}" if loops else "")


def _json(name: str, content: bytes, where: str) -> Any:
    try:
        return json.loads(content)
    except (ValueError, RecursionError) as error:
        raise refused(where, f"{name}: not JSON: {error}") from None


def _check_payload_config(name: str, content: bytes, members: dict[str, bytes], where: str) -> None:
    """Every weight or constant is a plain tensor file of bounded size: never pickled."""
    config = _json(name, content, where)
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise refused(where, f"{name}: no config object: refused")
    directory = name.rpartition("/")[0]
    for fqn, entry in entries.items():
        if not isinstance(entry, dict) or entry.get("use_pickle") is not False:
            raise refused(where, f"{name}: {str(fqn)[:60]!r} is stored as a pickle (use_pickle), which "
                                 "torch.export.load would unpickle with weights_only=False: refused")
        path = entry.get("path_name")
        if not isinstance(path, str) or f"{directory}/{path}" not in members:
            raise refused(where, f"{name}: {str(fqn)[:60]!r} names no tensor file of the archive: refused")
        meta = entry.get("tensor_meta")
        sizes = meta.get("sizes") if isinstance(meta, dict) else None
        declared = [size.get("as_int") if isinstance(size, dict) else None for size in sizes or []]
        dims = [dim for dim in declared if isinstance(dim, int) and dim >= 0]
        if not isinstance(sizes, list) or len(dims) != len(declared):
            raise refused(where, f"{name}: {str(fqn)[:60]!r} has no plain sizes: refused")
        if math.prod(dims) * 8 > MAX_VALUE_BYTES:
            raise refused(where, f"{name}: {str(fqn)[:60]!r} declares {dims}, over the bound: refused")


def _program(name: str, content: bytes, where: str) -> dict[str, Any]:
    program = _json(name, content, where)
    if not isinstance(program, dict) or not isinstance(program.get("graph_module"), dict):
        raise refused(where, f"{name}: not a serialized ExportedProgram: refused")
    if program.get("guards_code"):
        raise refused(where, f"{name}: carries guards_code (Python source torch compiles at load): refused")
    return program


def _check_program(program: dict[str, Any], where: str) -> Iterator[str]:
    """Every node target of every graph, once checked; expressions checked on the way."""
    for key in program.get("range_constraints") or {}:
        _check_expression(str(key), where)
    for item in _walk(program):
        if "expr_str" in item:
            _check_expression(item["expr_str"], where)
        if "as_custom_obj" in item or item.get("custom_obj_values"):
            raise refused(where, f"{KIND} program uses a custom object: refused")
        if "target" in item and "inputs" in item:
            target = item["target"]
            if not isinstance(target, str) or not _allowed_target(target):
                raise refused(where, f"{KIND} program calls {str(target)[:80]!r}, which is not in the allow-list "
                                     "of RNN exports: refused")
            yield target


def _walk(value: Any) -> Iterator[dict[str, Any]]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _aten_name(target: str) -> str:
    parts = target.split(".")
    return parts[3] if len(parts) == 5 and parts[:3] == ["torch", "ops", "aten"] else ""


def _allowed_target(target: str) -> bool:
    name = _aten_name(target)
    return (bool(name) and (name in ATEN_OPS or name in _EXTRA_ATEN)) or target in _PYTHON_TARGETS \
        or target in _ALLOWED_HIGHER_ORDER


def _check_expression(expression: object, where: str) -> None:
    words = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", expression) if isinstance(expression, str) else []
    if not isinstance(expression, str) or not _EXPRESSION.fullmatch(expression) or any(
            word not in _EXPRESSION_WORDS and not re.fullmatch(r"[a-z]{1,3}\d+", word) for word in words):
        raise refused(where, f"{KIND} program has the symbolic expression {str(expression)[:60]!r}, which is not "
                             "one torch writes: refused")


def _output_without_input(graph_module: dict[str, Any]) -> str:
    """The first user output no user input reaches through the graph's nodes, or ""."""
    graph, signature = graph_module.get("graph") or {}, graph_module.get("signature") or {}
    reached = {name for spec in signature.get("input_specs") or [] if isinstance(spec, dict) and "user_input" in spec
               for name in _names(spec["user_input"])}
    consumers: dict[str, list[dict[str, Any]]] = {}
    for node in graph.get("nodes") or []:
        for name in set(_names(node.get("inputs") if isinstance(node, dict) else None)):
            consumers.setdefault(name, []).append(node)
    queue = deque(reached)
    while queue:
        for node in consumers.pop(queue.popleft(), []):
            fresh = set(_names(node.get("outputs"))) - reached
            reached |= fresh
            queue.extend(fresh)
    outputs = [name for output in graph.get("outputs") or [] for name in _names(output)]
    return next((name for name in outputs if name not in reached), "")


def _names(value: Any) -> Iterator[str]:
    """The value names an argument refers to (as_tensor, as_tensors, ...)."""
    for item in _walk(value):
        if isinstance(item.get("name"), str) and len(item) == 1:
            yield item["name"]
