"""The code of a TorchScript archive (code/**/*.py), read with `ast` and never run: every construct, name,
call and attribute must be one that torch.jit.script or torch.jit.trace of an RNN module writes.

TorchScript prints each operator as `torch.<aten op>(...)` or `ops.<namespace>.<op>(...)`, its own classes
and functions as `__torch__.<qualified name>`, and method calls on modules as `(obj).method(...)`. Nothing
here resolves a name in Python: the check is on the text the archive carries.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from harness.store.gates.aten_ops import ATEN_OPS
from harness.store.gates.facts import refused

# Plain names TorchScript prints as calls: its own helpers and the Python builtins it compiles.
BUILTIN_CALLS = frozenset({"annotate", "unchecked_cast", "uninitialized", "int", "float", "bool", "str", "len",
                           "isinstance", "range", "enumerate", "zip", "min", "max", "abs", "list", "tuple"})
# Dunder names a printed module uses: the class attributes torch writes and the operators printed as calls.
ALLOWED_DUNDERS = frozenset({"__torch__", "__parameters__", "__buffers__", "__annotations__", "__constants__",
                             "__init__", *(op for op in ATEN_OPS if op.startswith("__"))})
# Methods that no module of an export has, and that would reach a file, a process or a pickle.
REFUSED_METHODS = frozenset({"from_file", "save", "load", "open", "__setstate__", "__getstate__", "_save_for_mobile",
                             "_save_for_lite_interpreter", "share_memory_", "_share_filename_", "tofile"})
_MANGLED = re.compile(r"___torch_mangle_\d+")  # how torch names a second class of the same qualified name
_NODES = tuple(getattr(ast, name) for name in (
    "Module", "ClassDef", "FunctionDef", "arguments", "arg", "Assign", "AnnAssign", "AugAssign", "Return", "If",
    "For", "While", "Break", "Continue", "Pass", "Expr", "Assert", "Call", "keyword", "Name", "Attribute",
    "Subscript", "Slice", "Constant", "Tuple", "List", "Dict", "UnaryOp", "BinOp", "BoolOp", "Compare", "IfExp",
    "Load", "Store", "Del", "And", "Or", "Not", "USub", "UAdd", "Invert", "Add", "Sub", "Mult", "Div", "FloorDiv",
    "Mod", "Pow", "MatMult", "BitAnd", "BitOr", "BitXor", "LShift", "RShift", "Eq", "NotEq", "Lt", "LtE", "Gt",
    "GtE", "Is", "IsNot", "In", "NotIn"))


@dataclass(frozen=True, kw_only=True)
class CodeFacts:
    """What the archive's code calls (`torch.lstm`, `ops.prim.RaiseException`, ...) and whether it loops."""

    ops: frozenset[str]
    loops: int


def module_name(member: str) -> str:
    """`code/__torch__/a/b.py` -> `__torch__.a.b`."""
    return member.removeprefix("code/").removesuffix(".py").replace("/", ".")


def defined_names(trees: dict[str, ast.Module]) -> frozenset[str]:
    """Qualified names of the classes and functions the archive's code defines, by module."""
    return frozenset(f"{module}.{node.name}" for module, tree in trees.items() for node in tree.body
                     if isinstance(node, ast.ClassDef | ast.FunctionDef))


def parse_code(member: str, source: bytes, where: str) -> ast.Module:
    try:
        with warnings.catch_warnings():  # an invalid escape in a string literal warns: it is refused or harmless
            warnings.simplefilter("ignore")
            return ast.parse(source.decode("utf-8"), filename=member)
    except (SyntaxError, ValueError, UnicodeDecodeError, RecursionError, MemoryError) as error:
        raise refused(where, f"{member}: not TorchScript code: {type(error).__name__}") from None


def check_code(member: str, tree: ast.Module, defined: frozenset[str], where: str) -> CodeFacts:
    """The facts of one code file whose every construct is allowed; GoldenError naming the first that is not."""
    ops: set[str] = set()
    loops = 0
    for node in ast.walk(tree):
        if not isinstance(node, _NODES):
            raise refused(where, f"{member}: {type(node).__name__} (line {getattr(node, 'lineno', '?')}) is no "
                                 "construct TorchScript prints: refused")
        loops += isinstance(node, ast.For | ast.While)
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name in REFUSED_METHODS:
            raise refused(where, f"{member}: defines {node.name}, which would run at load: refused")
        name = _name_of(node)
        if name.startswith("__") and name not in ALLOWED_DUNDERS and not _MANGLED.fullmatch(name):
            raise refused(where, f"{member}: refers to {name}: refused")
        if isinstance(node, ast.Attribute):
            ops.update(_reference(member, node, defined, where))
        if isinstance(node, ast.Call):
            _check_call(member, node, where)
    return CodeFacts(ops=frozenset(ops), loops=loops)


def _name_of(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def dotted(node: ast.AST) -> str:
    """`a.b.c` for a chain of attributes on a name; "" for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _reference(member: str, node: ast.Attribute, defined: frozenset[str], where: str) -> Iterator[str]:
    """Check an attribute chain rooted at `torch`, `ops` or `__torch__`; yield the operator it names."""
    chain = dotted(node)
    parts = chain.split(".")
    root = parts[0]
    if root == "torch" and len(parts) == 2:
        if parts[1] not in ATEN_OPS:
            raise refused(where, f"{member}: calls {chain}, which is not in the allow-list of RNN exports: refused")
        yield chain
    elif root == "torch" and len(parts) > 2 and isinstance(node.value, ast.Name):
        raise refused(where, f"{member}: refers to {chain}: refused")
    elif root == "ops" and len(parts) == 3:
        namespace, op = parts[1], parts[2]
        if (namespace == "aten" and op in ATEN_OPS) or namespace == "prim":
            yield chain
        else:
            raise refused(where, f"{member}: calls the operator {chain}, which is not aten or prim: refused")
    elif root == "__torch__" and len(parts) > 1 and not _defined(chain, defined):
        raise refused(where, f"{member}: refers to {chain}, which the archive does not define: refused")


def _defined(chain: str, defined: frozenset[str]) -> bool:
    """Whether a `__torch__` chain is (a prefix of) a class or function the archive defines, or a module path
    leading to one."""
    if chain.startswith("__torch__.torch.classes"):
        return False
    return any(name == chain or name.startswith(f"{chain}.") or chain.startswith(f"{name}.") for name in defined)


def _check_call(member: str, node: ast.Call, where: str) -> None:
    function = node.func
    if isinstance(function, ast.Name) and function.id not in BUILTIN_CALLS and not function.id.startswith("_"):
        raise refused(where, f"{member}: calls {function.id}(), which TorchScript never prints: refused")
    if isinstance(function, ast.Attribute) and function.attr in REFUSED_METHODS:
        raise refused(where, f"{member}: calls {dotted(function) or '.' + function.attr}(), which reaches a file or "
                             "runs at load: refused")
    if not isinstance(function, ast.Name | ast.Attribute):
        raise refused(where, f"{member}: calls the result of an expression (line {node.lineno}): refused")
