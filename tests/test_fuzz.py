"""Property-based fuzzing of the loaders that read what a pull request may carry: suite files, golden
manifests with their tensors files, and run reports for merge. Every input ends in success or in a
HarnessError whose message is one line; never in any other exception. A few inputs of each kind also
go through the CLI end to end. Profiles (example counts) are in tests/conftest.py: HYPOTHESIS_PROFILE=fuzz."""

from __future__ import annotations

import contextlib
import copy
import datetime
import io
import json
import math
import tempfile
import tomllib
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from harness.cli import main
from harness.errors import HarnessError
from harness.model.suite import load_suite
from harness.reports.merge import load_report, merge_reports
from harness.store.golden import GoldenStore
from tests.conftest import COMMITTED_GOLDEN, REFERENCE_ID
from tests.corpus.tools import REFERENCE_TENSORS, npy_bytes, read_members, real_report_bytes, time_limit

MANIFEST_BYTES = (COMMITTED_GOLDEN / f"{REFERENCE_ID}.json").read_bytes()
TENSORS_BYTES = (COMMITTED_GOLDEN / REFERENCE_TENSORS).read_bytes()
MANIFEST = json.loads(MANIFEST_BYTES)
CONFIG_KEYS = ("cell", "input_size", "hidden_size", "num_layers", "bidirectional", "batch_first", "bias", "dropout",
               "proj_size", "dtype", "seed", "initial_state", "input", "seq_len", "batch", "lengths",
               "export_seq_len", "export_batch", "model", "check", "train_steps", "learning_rate")
CASE_KEYS = (*CONFIG_KEYS, "atol", "rtol", "checks")
# A fifth of the examples for the end-to-end runs through the CLI (at least 10).
END_TO_END = settings(max_examples=max(10, settings().max_examples // 5))
SECONDS = 3  # per call: loaders answer in milliseconds, and a hang is a failure (Hang) like any other


def outcome(call: Callable[[], object]) -> str:
    """'ok', or 'error' for a HarnessError with a one-line message; any other exception escapes."""
    try:
        with time_limit(SECONDS):
            call()
    except HarnessError as error:
        assert error.message, "an error without a message"
        assert "\n" not in error.message and "\r" not in error.message, f"a multi-line message: {error.message!r}"
        return "error"
    return "ok"


def run_cli(*args: str) -> tuple[int, str, str]:
    """harness.cli.main in this process: (exit code, stdout, stderr); an exception escapes."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), time_limit(SECONDS):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def assert_one_line_answer(code: int, err: str, allowed: tuple[int, ...]) -> None:
    """The documented exit code, and on exit 2 exactly one 'harness: error:' line (else nothing)."""
    assert code in allowed, (code, err)
    if code == 2:
        assert err.startswith("harness: error: ") and err.count("\n") == 1 and err.endswith("\n"), repr(err)
    else:
        assert err == "", repr(err)
    assert "Traceback" not in err


def not_strict_json(token: str) -> None:
    raise AssertionError(f"{token} in a report that must be strict JSON")


@contextlib.contextmanager
def folder() -> Iterator[Path]:
    """A fresh directory per example (function-scoped fixtures are shared by all examples)."""
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


# --- values ---------------------------------------------------------------------------------------


class RawToken(str):
    """Text written into a document as is, not as a string: an integer of 5000 digits, NaN, 1e400."""


EDGE_INTS = st.one_of(st.sampled_from([0, 1, -1, 2, 3, 4, 5, 8, 64, 2**31, 2**63 - 1, 2**63, -(2**63)]),
                      st.sampled_from([20, 200, 308, 309, 400]).map(lambda exponent: 10**exponent))
# Python refuses int() of more than 4300 digits: written raw, such a number reaches the parser itself.
HUGE_INT_TOKEN = st.integers(4301, 5000).map(lambda digits: RawToken("1" + "0" * (digits - 1)))
INTS = st.one_of(st.integers(), EDGE_INTS, st.integers(-2, 300))
FLOATS = st.one_of(st.floats(), st.sampled_from([0.0, -0.0, 0.5, 1e-6, 0.999, 1.0, 1e308, 5e-324]))
SCALARS = st.one_of(INTS, FLOATS, st.text(max_size=12), st.booleans(), st.dates(), st.datetimes(), st.times())
ANY_TOML = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "cell": st.sampled_from(["rnn_tanh", "rnn_relu", "lstm", "gru", "transformer"]),
    "dtype": st.sampled_from(["float32", "float64", "int8", "bfloat16"]),
    "initial_state": st.sampled_from(["zeros", "random"]),
    "input": st.sampled_from(["hello", "random", "gaussian"]),
    "lengths": st.lists(st.one_of(st.integers(-1, 8), EDGE_INTS), max_size=6),
    "check": st.sampled_from(["forward", "grad", "train", "backward"]),
    "checks": st.lists(st.sampled_from(["forward", "grad", "train", "backward"]), max_size=4),
    "model": st.sampled_from(["pkg.module:factory", "no_colon", "os:getcwd", "a:b:c", ""]),
    "learning_rate": st.one_of(st.floats(-1, 200), EDGE_INTS),
    "bidirectional": st.booleans(), "batch_first": st.booleans(), "bias": st.booleans(),
    "dropout": st.one_of(st.floats(-0.5, 1.5), EDGE_INTS, HUGE_INT_TOKEN),
    "seed": st.one_of(EDGE_INTS, st.integers(0, 10), HUGE_INT_TOKEN),
    "atol": st.one_of(st.floats(), EDGE_INTS, st.text(max_size=3)),
    "rtol": st.one_of(st.floats(), EDGE_INTS, st.booleans()),
}
SIZE = st.one_of(st.integers(-1, 70), EDGE_INTS, HUGE_INT_TOKEN)


def value_for(key: str) -> st.SearchStrategy[Any]:
    """Mostly a plausible value of the key's type (to reach the deep checks), sometimes anything."""
    return st.one_of(PLAUSIBLE.get(key, SIZE), PLAUSIBLE.get(key, SIZE), ANY_TOML)


def tables(keys: tuple[str, ...], max_keys: int = 6) -> st.SearchStrategy[dict[str, Any]]:
    """A table of some plausible keys with values for them, plus now and then a key nobody knows."""
    known = st.lists(st.sampled_from(keys), unique=True, max_size=max_keys).flatmap(
        lambda chosen: st.fixed_dictionaries({key: value_for(key) for key in chosen}))
    unknown = st.dictionaries(st.text(max_size=8), ANY_TOML, max_size=1)
    return st.builds(lambda a, b: {**b, **a}, known, unknown)


# Valid cases with up to two fields changed: these reach the checks behind the first (budget, tolerance,
# duplicates, the reference case) that a table of random fields seldom gets past.
VALID_CASES = st.sampled_from([
    {}, {"cell": "lstm", "input": "random", "seq_len": 20, "batch": 4}, {"cell": "lstm", "proj_size": 4},
    {"cell": "gru", "num_layers": 2, "dropout": 0.5}, {"dtype": "float64", "seed": 7, "atol": 1e-12, "rtol": 0.0},
])
CASES = st.one_of(tables(CASE_KEYS), st.builds(lambda base, changes: {**base, **changes}, VALID_CASES,
                                               tables(CASE_KEYS, max_keys=2)))
SUITE_HEADER = st.one_of(
    st.fixed_dictionaries({}, optional={"name": st.one_of(st.text(max_size=8), ANY_TOML),
                                        "require_reference_case": st.one_of(st.booleans(), ANY_TOML)}),
    tables(("name", "require_reference_case", "owner")), ANY_TOML)
SUITE_DOCUMENTS = st.builds(
    lambda parts, extra: {**extra, **parts},
    st.fixed_dictionaries({}, optional={
        "suite": SUITE_HEADER,
        "defaults": st.one_of(tables(CASE_KEYS, max_keys=3), ANY_TOML),
        "case": st.one_of(st.lists(CASES, min_size=1, max_size=4), st.lists(CASES, max_size=4), ANY_TOML),
    }),
    st.dictionaries(st.text(max_size=8), ANY_TOML, max_size=1),
)


# --- a TOML writer for the drawn documents ----------------------------------------------------------


def toml_key(key: str) -> str:
    return toml_string(key)


def toml_string(text: str) -> str:
    escaped = "".join(f"\\u{ord(char):04x}" if ord(char) < 0x20 or ord(char) == 0x7F or char in '"\\' else char
                      for char in text)
    return f'"{escaped}"'


def toml_value(value: Any) -> str:
    if isinstance(value, RawToken):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, datetime.date | datetime.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(key)} = {toml_value(item)}" for key, item in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def toml_document(document: dict[str, Any]) -> str:
    """Plain keys first, then [tables], then [[arrays of tables]] (non-empty lists of tables)."""
    def is_table_array(value: Any) -> bool:
        return isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)

    lines = [f"{toml_key(key)} = {toml_value(value)}" for key, value in document.items()
             if not isinstance(value, dict) and not is_table_array(value)]
    for key, value in document.items():
        if isinstance(value, dict):
            lines += [f"[{toml_key(key)}]", *(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())]
        elif is_table_array(value):
            for table in value:
                lines += [f"[[{toml_key(key)}]]", *(f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


def holds(value: Any, kind: Callable[[Any], bool]) -> bool:
    """Whether kind(item) for value or anything inside it."""
    if kind(value):
        return True
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return any(holds(item, kind) for item in items)


@given(document=SUITE_DOCUMENTS)
def test_the_toml_writer_round_trips(document: dict[str, Any]) -> None:
    """The fuzz documents reach the suite parser as drawn: the TOML written reads back equal (raw
    tokens aside, which are there to break the parser; NaN aside, which equals nothing)."""
    assume(not holds(document, lambda value: isinstance(value, RawToken)))
    parsed = tomllib.loads(toml_document(document))
    if not holds(document, lambda value: isinstance(value, float) and math.isnan(value)):
        assert parsed == document


# --- suites -----------------------------------------------------------------------------------------


@given(data=st.binary(max_size=600))
def test_suite_loader_on_arbitrary_bytes(data: bytes) -> None:
    """Any bytes as a suite file: a suite or one SuiteError line."""
    with folder() as root:
        path = root / "suite.toml"
        path.write_bytes(data)
        outcome(lambda: load_suite(path))


@given(document=SUITE_DOCUMENTS)
def test_suite_loader_on_structured_toml(document: dict[str, Any]) -> None:
    """TOML documents of plausible keys ([suite], [defaults], [[case]]) holding values of any type."""
    with folder() as root:
        path = root / "suite.toml"
        path.write_text(toml_document(document), encoding="utf-8")
        outcome(lambda: load_suite(path))


@END_TO_END
@given(document=SUITE_DOCUMENTS)
def test_list_on_structured_toml_end_to_end(document: dict[str, Any]) -> None:
    """`harness list --suite FILE`: exit 0, or exit 2 with one stderr line."""
    with folder() as root:
        path = root / "suite.toml"
        path.write_text(toml_document(document), encoding="utf-8")
        code, _out, err = run_cli("list", "--suite", str(path))
        assert_one_line_answer(code, err, (0, 2))


# --- JSON documents: mutations of a real one -----------------------------------------------------------

RAW_JSON_TOKENS = {"NaN": "NaN", "Infinity": "Infinity", "-Infinity": "-Infinity", "1e400": "1e400",
                   "-1e400": "-1e400", "10**400": "1" + "0" * 400, "10**5000": "1" + "0" * 5000,
                   "[ * 40": "[" * 40 + "]" * 40}
NASTY_STRINGS = st.sampled_from([
    "../outside/victim.npz", "/etc/passwd", "rnn-h8-s1.984c33eaa107.npz", REFERENCE_TENSORS,
    "rnn-h8-s0.aaaaaaaaaaaa.npz", "float16", "float32", "float64", "bfloat16", "int8", "harness.golden/1",
    "harness.golden/2", "harness.report/1", "ok", "error", "unsupported", "0" * 64, "f" * 64, "rnn_tanh", "lstm",
    "gru", "1/2", "2/2", "0/3", "4/3", "1/999999", "identical", "DRIFT", "MISSING", "line\nbreak",
])
JSON_SCALARS = st.one_of(st.none(), st.booleans(), INTS, st.floats(allow_nan=False, allow_infinity=False),
                         st.text(max_size=12), NASTY_STRINGS,
                         st.sampled_from(sorted(RAW_JSON_TOKENS)).map(lambda name: RawToken(RAW_JSON_TOKENS[name])),
                         st.sampled_from([[3, 5, 8], [1, 5, 8], [5, 3, 8], [1073741824], [], [0], [3.0, 5.0, 8.0]]))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)


def json_paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside a JSON document."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield (*prefix, key)
        yield from json_paths(child, (*prefix, key))


def mutated_json(data: st.DataObject, original: dict[str, Any]) -> bytes:
    """The document with 1-4 fields deleted, replaced by any JSON value or renamed, written as JSON
    (raw tokens such as NaN or 1e400 spliced in), then 0-3 bytes flipped."""
    document = copy.deepcopy(original)
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        paths = list(json_paths(document))
        if not paths:
            break
        path = data.draw(st.sampled_from(paths), label="path")
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        kind = data.draw(st.sampled_from(["delete", "replace", "replace", "rename"]), label="kind")
        if kind == "delete":
            del parent[path[-1]]
        elif kind == "replace" or isinstance(parent, list):
            parent[path[-1]] = copy.deepcopy(data.draw(JSON_VALUES, label="value"))  # sampled lists are shared
        else:
            parent[data.draw(st.text(max_size=8), label="new name")] = parent.pop(path[-1])
    tokens: list[RawToken] = []

    def placeholder(value: Any) -> Any:
        if isinstance(value, RawToken):
            tokens.append(value)
            return f"@@raw{len(tokens) - 1}@@"
        if isinstance(value, dict):
            return {key: placeholder(item) for key, item in value.items()}
        if isinstance(value, list):
            return [placeholder(item) for item in value]
        return value

    text = json.dumps(placeholder(document), indent=2)
    for number, token in enumerate(tokens):
        text = text.replace(f'"@@raw{number}@@"', token)
    return flipped(data, text.encode("utf-8"), "manifest byte")


def flipped(data: st.DataObject, raw: bytes, label: str) -> bytes:
    """raw with 0-3 bytes XORed with a non-zero value."""
    buffer = bytearray(raw)
    for position, mask in data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(1, 255)),
                                             max_size=3), label=label):
        buffer[position] ^= mask
    return bytes(buffer)


# --- golden manifests and tensors files --------------------------------------------------------------

MEMBER_NAMES = st.one_of(st.sampled_from(list(read_members(COMMITTED_GOLDEN / REFERENCE_TENSORS))),
                         st.sampled_from(["c_n.npy", "eager/output.npy", "../x.npy", "output", "output.npy/"]),
                         st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=10))
ARRAYS = hnp.arrays(dtype=st.one_of(hnp.scalar_dtypes(), hnp.byte_string_dtypes(), st.just(np.dtype(">f4")),
                                    st.just(np.dtype("<f4"))),
                    shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=9))


def mutated_tensors(data: st.DataObject) -> bytes:
    """The committed tensors file, with 0-2 members dropped, replaced by a random array (any dtype,
    shape, byte order, Fortran order) or by random bytes, then 0-3 bytes flipped."""
    members = read_members(COMMITTED_GOLDEN / REFERENCE_TENSORS)
    for _ in range(data.draw(st.integers(0, 2), label="member edits")):
        name = data.draw(MEMBER_NAMES, label="member")
        kind = data.draw(st.sampled_from(["drop", "array", "fortran", "bytes"]), label="member edit")
        if kind == "drop":
            members.pop(name, None)
        elif kind == "bytes":
            members[name] = data.draw(st.binary(max_size=300), label="member bytes")
        else:
            array = data.draw(ARRAYS, label="array")
            members[name] = npy_bytes(np.asfortranarray(array) if kind == "fortran" else array)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return flipped(data, buffer.getvalue(), "tensors byte")


def write_golden(root: Path, manifest: bytes, tensors: bytes = TENSORS_BYTES) -> Path:
    golden = root / "golden"
    golden.mkdir()
    (golden / f"{REFERENCE_ID}.json").write_bytes(manifest)
    (golden / REFERENCE_TENSORS).write_bytes(tensors)
    return golden


@given(data=st.data())
def test_golden_loader_on_mutated_manifests(data: st.DataObject) -> None:
    """The committed manifest with fields deleted, replaced, renamed and bytes flipped."""
    with folder() as root:
        golden = write_golden(root, mutated_json(data, MANIFEST))
        outcome(lambda: GoldenStore(golden).load(REFERENCE_ID))


@given(data=st.data())
def test_golden_loader_on_mutated_tensors_files(data: st.DataObject) -> None:
    """The committed tensors file with members dropped or replaced and bytes flipped."""
    with folder() as root:
        golden = write_golden(root, MANIFEST_BYTES, mutated_tensors(data))
        outcome(lambda: GoldenStore(golden).load(REFERENCE_ID))


@given(manifest=st.binary(max_size=400), tensors=st.binary(max_size=400))
def test_golden_loader_on_arbitrary_bytes(manifest: bytes, tensors: bytes) -> None:
    """Any bytes as the manifest, then as the tensors file behind the committed manifest."""
    with folder() as root:
        golden = write_golden(root, manifest)
        outcome(lambda: GoldenStore(golden).load(REFERENCE_ID))
    with folder() as root:
        golden = write_golden(root, MANIFEST_BYTES, tensors)
        assert outcome(lambda: GoldenStore(golden).load(REFERENCE_ID)) == "error"


@END_TO_END
@given(data=st.data())
def test_show_on_mutated_goldens_end_to_end(data: st.DataObject) -> None:
    """`harness show ID --golden-dir DIR` on a mutated manifest and tensors file: exit 0 or 2, one line."""
    with folder() as root:
        golden = write_golden(root, mutated_json(data, MANIFEST), mutated_tensors(data))
        code, _out, err = run_cli("show", REFERENCE_ID, "--golden-dir", str(golden))
        assert_one_line_answer(code, err, (0, 2))


# --- run reports for merge -----------------------------------------------------------------------------


def report_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(real_report_bytes())
    return document


@given(data=st.data())
def test_report_loader_on_mutated_reports(data: st.DataObject) -> None:
    """A real report with fields deleted, replaced, renamed and bytes flipped: load_report, then a
    merge of it alone or with the original report (shards, environments, duplicates)."""
    with folder() as root:
        path = root / "r.json"
        path.write_bytes(mutated_json(data, report_document()))
        original = root / "original.json"
        original.write_bytes(real_report_bytes())
        paths = [path, original] if data.draw(st.booleans(), label="with the original") else [path]
        outcome(lambda: load_report(path))
        outcome(lambda: merge_reports(paths))


@given(data=st.binary(max_size=400))
def test_report_loader_on_arbitrary_bytes(data: bytes) -> None:
    """Any bytes as a report: one HarnessError line."""
    with folder() as root:
        path = root / "r.json"
        path.write_bytes(data)
        outcome(lambda: merge_reports([path]))


@END_TO_END
@given(data=st.data())
def test_merge_on_mutated_reports_end_to_end(data: st.DataObject) -> None:
    """`harness merge R.json --json --markdown --html`: exit 0 or 1 (drift, missing shards) or 2 with
    one line, and every output file written when it says so."""
    with folder() as root:
        path = root / "r.json"
        path.write_bytes(mutated_json(data, report_document()))
        outputs = [root / "m.json", root / "m.md", root / "m.html"]
        code, out, err = run_cli("merge", str(path), "--json", str(outputs[0]), "--markdown", str(outputs[1]),
                                 "--html", str(outputs[2]))
        assert_one_line_answer(code, err, (0, 1, 2))
        if code != 2:
            assert all(output.exists() for output in outputs), out
            json.loads(outputs[0].read_text(encoding="utf-8"), parse_constant=not_strict_json)
