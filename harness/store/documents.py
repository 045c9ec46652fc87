"""Reading JSON documents a pull request may have crafted (golden manifests, run reports): bounded
size, bounded nesting, strict JSON, and a JSON schema shipped with the package, checked before any
field is used. Every problem is one HarnessError naming the file and the field."""

from __future__ import annotations

import functools
import json
import math
import os
from importlib import resources
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

MAX_DOCUMENT_BYTES = 64 * 1024**2  # a 50-config merged report is a few MB
MAX_DEPTH = 32  # the deepest harness document nests about 8 levels


def read_json_document(path: Path, *, what: str, schema: tuple[str, str], error: type[HarnessError] = HarnessError
                       ) -> dict[str, Any]:
    """The JSON object in path, validated against `schema` (package, file name); `error` carries the
    one-line message `<path>: <what>: <problem>` for anything else."""
    document = read_json(path, what=what, error=error)
    problem_text = first_schema_problem(document, *schema)
    if problem_text:
        raise error(f"{path}: corrupt {what}: {problem_text}")
    if not isinstance(document, dict):  # the schemas demand an object; this keeps the type checker honest
        raise error(f"{path}: corrupt {what}: not a JSON object")
    return document


def read_json(path: Path, *, what: str, error: type[HarnessError] = HarnessError) -> Any:
    """The JSON value in path, read within the size and nesting bounds, strict (no NaN, no out-of-range
    floats); no schema. For peeking at a field before knowing which schema applies."""
    try:
        with path.open("rb") as handle:
            if os.fstat(handle.fileno()).st_size > MAX_DOCUMENT_BYTES:
                raise error(f"{path}: {what} larger than {MAX_DOCUMENT_BYTES // 1024**2} MiB: refused")
            data = handle.read(MAX_DOCUMENT_BYTES + 1)
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except OSError as problem:
        raise error(f"{path}: cannot read {what}: {problem.strerror or problem}") from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise error(f"{path}: {what} larger than {MAX_DOCUMENT_BYTES // 1024**2} MiB: refused")
    try:
        document = json.loads(data.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite_float)
    except UnicodeDecodeError as problem:
        raise error(f"{path}: corrupt {what}: not UTF-8 (byte {problem.start})") from None
    except RecursionError:
        raise error(f"{path}: corrupt {what}: nested too deeply") from None
    except ValueError as problem:  # JSONDecodeError, and NaN/Infinity tokens
        raise error(f"{path}: corrupt {what}: {problem}") from None
    if _depth(document) > MAX_DEPTH:
        raise error(f"{path}: corrupt {what}: nested deeper than {MAX_DEPTH} levels")
    return document


def first_schema_problem(document: Any, package: str, name: str) -> str | None:
    """'field $.a.b: message' for the first way document breaks the schema, or None."""
    errors = sorted(_validator(package, name).iter_errors(document), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    first = errors[0]
    if first.validator == "pattern":  # the pattern as written, not its repr (no doubled backslashes)
        return f"field {first.json_path}: {_short(repr(first.instance))} does not match {first.validator_value}"
    return f"field {first.json_path}: {_short(first.message)}"


def _finite_float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise ValueError(f"{token} is out of the range of a float")
    return value


def _no_constant(token: str) -> Any:
    raise ValueError(f"{token} is not JSON (strict JSON has no NaN or Infinity)")


def _depth(value: Any) -> int:
    """Nesting depth, computed without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        if children:  # a scalar child is one level deeper; only containers go on the stack (the bulk is scalars)
            deepest = max(deepest, level + 1)
            stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@functools.cache
def _validator(package: str, name: str) -> Any:
    import jsonschema
    from referencing import Registry, Resource

    folder = resources.files(package)
    schemas = {entry.name: json.loads(entry.read_text("utf-8")) for entry in folder.iterdir()
               if entry.name.endswith(".schema.json")}
    registry: Registry[Any] = Registry().with_resources(
        (file_name, Resource.from_contents(schema)) for file_name, schema in schemas.items())
    return jsonschema.Draft202012Validator(schemas[name], registry=registry)
