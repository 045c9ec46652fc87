"""The TorchScript gate: what a stored `.pt` archive (torch.jit.save) may contain before torch.jit.load sees it.

Only the members torch.jit.save writes; every code file parsed with `ast` and checked (torchscript_code);
every pickle walked opcode by opcode, its globals limited to the ones TorchScript's own archives use and
the classes the archive's code defines. For a built-in RNN config the code must call a recurrent operator
(or loop), and the root module's forward must return values computed from its inputs.
"""

from __future__ import annotations

import ast
import re

from harness.store.gates.archive import check_globals, pickle_globals, read_archive
from harness.store.gates.aten_ops import RECURRENT_ATEN_OPS
from harness.store.gates.facts import NO_RECURRENCE, ArtifactFacts, refused
from harness.store.gates.torchscript_code import (
    check_code,
    defined_names,
    dotted,
    module_name,
    parse_code,
)

KIND = "TorchScript"
# Members of a torch.jit.save archive (below its top folder); `.debug_pkl` are stripped by the harness but
# harmless when walked like any pickle.
_MEMBERS = re.compile(r"data\.pkl|constants\.pkl|version|\.data/version|byteorder|\.data/serialization_id"
                      r"|data/\d+|constants/\d+|traced_inputs\.pkl|traced_inputs/\d+"
                      r"|code/__torch__(/[A-Za-z0-9_]+)*\.py(\.debug_pkl)?")
_STORAGES = ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool")
# The globals TorchScript's pickler writes besides the archive's own classes (torch/csrc/jit/serialization).
PICKLE_GLOBALS = frozenset({
    "torch._utils._rebuild_tensor_v2", "collections.OrderedDict", "builtins.set",
    *(f"torch.{dtype}Storage" for dtype in _STORAGES),
    *(f"torch.jit._pickle.{helper}" for helper in ("restore_type_tag", "build_tensorlist", "build_intlist",
                                                   "build_doublelist", "build_boollist", "build_tensor_from_id")),
})


def verify_torchscript(data: bytes, *, where: str, built_in_rnn: bool) -> ArtifactFacts:
    """The facts of a TorchScript archive that passed every check in this module's docstring; GoldenError
    otherwise."""
    members = read_archive(data, where, KIND)
    for name in members:
        if not _MEMBERS.fullmatch(name):
            raise refused(where, f"{KIND} archive member {name!r} is not one torch.jit.save writes: refused")
    if "data.pkl" not in members:
        raise refused(where, f"{KIND} archive has no data.pkl: refused")
    trees = {module_name(name): parse_code(name, source, where) for name, source in members.items()
             if name.endswith(".py")}
    defined = defined_names(trees)
    facts = [check_code(f"code/{module.replace('.', '/')}.py", tree, defined, where) for module, tree in trees.items()]
    for name, content in members.items():
        if name.endswith(("pkl", "debug_pkl")):
            check_globals(content, where, name, PICKLE_GLOBALS,
                          frozenset(item for item in defined if not item.startswith("__torch__.torch.classes")))
    ops = frozenset().union(*(fact.ops for fact in facts))
    loops = sum(fact.loops for fact in facts)
    recurrent = sorted(op.rpartition(".")[2] for op in ops if op.rpartition(".")[2] in RECURRENT_ATEN_OPS)
    recurrence = ", ".join([*recurrent, *([f"{loops} loop{'s' * (loops > 1)}"] if loops else [])])
    if built_in_rnn:
        if not recurrence:
            raise refused(where, NO_RECURRENCE)
        _check_forward_uses_inputs(members["data.pkl"], trees, where)
    # TorchScript runs a loop in C++: no signal stops it, so an archive with loops runs in a bounded worker.
    return ArtifactFacts(kind="torchscript", op_set=ops, recurrence=recurrence, bounded=not loops,
                         unbounded_reason=f"its code has {loops} loop{'s' * (loops > 1)}, whose trips only a run can "
                                          "tell" if loops else "")


def _check_forward_uses_inputs(root_pickle: bytes, trees: dict[str, ast.Module], where: str) -> None:
    """Refuse a root module whose forward returns a value that none of its arguments flows into."""
    root = next((name for name in pickle_globals(root_pickle, where, "data.pkl") if name.startswith("__torch__.")), "")
    module, _, class_name = root.rpartition(".")
    forward = next((node for cls in getattr(trees.get(module), "body", []) if isinstance(cls, ast.ClassDef)
                    and cls.name == class_name for node in cls.body
                    if isinstance(node, ast.FunctionDef) and node.name == "forward"), None)
    if forward is None:
        raise refused(where, f"{KIND} archive's root module {root or '(none)'} has no forward: refused")
    flowing = {arg.arg for arg in forward.args.args[1:]}
    changed = True
    while changed:  # to a fixed point: assignments in loops and branches may feed earlier lines
        changed = False
        for node in ast.walk(forward):
            targets, value = _assignment(node)
            if value is not None and _mentions(value, flowing):
                fresh = {name.id for target in targets for name in ast.walk(target) if isinstance(name, ast.Name)}
                changed |= not fresh <= flowing
                flowing |= fresh
    for node in ast.walk(forward):
        if isinstance(node, ast.Return) and node.value is not None:
            values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
            for value in values:
                if not _mentions(value, flowing):
                    raise refused(where, f"forward returns {ast.unparse(value)[:60]!r}, which depends on no input: "
                                         "the stored artifact is not an RNN export")


def _assignment(node: ast.AST) -> tuple[list[ast.expr], ast.expr | None]:
    if isinstance(node, ast.Assign):
        return list(node.targets), node.value
    if isinstance(node, ast.AnnAssign | ast.AugAssign):
        return [node.target], node.value
    if isinstance(node, ast.For):
        return [node.target], node.iter
    return [], None


def _mentions(expression: ast.AST, names: set[str]) -> bool:
    return any(isinstance(node, ast.Name) and node.id in names and not dotted(node).startswith("__torch__")
               for node in ast.walk(expression))
