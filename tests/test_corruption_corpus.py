"""The corruption corpus (tests/corpus/cases.toml) through the CLI, in-process: every hostile input ends
in its documented exit code and one stderr line, never a traceback, and nothing outside the golden
directory is touched, nor anything inside it lost that the command does not document removing."""

from __future__ import annotations

import fnmatch
import io
import json
import re
import subprocess
import sys
import traceback
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from tests.conftest import COMMITTED_GOLDEN, REFERENCE_ID
from tests.corpus.tools import (
    ACTIONS,
    CHUNK,
    Hang,
    Sandbox,
    apply,
    crc32_of_zeros,
    deflate_bomb_zip,
    load_cases,
    make_sandbox,
    npy_header,
    snapshot,
    time_limit,
)

CASES = load_cases()
CASE_KEYS = {"id", "about", "do", "command", "exit", "message", "pattern", "stdout", "quiet", "may_remove",
             "seconds"}
CELL_COMMANDS = ("run", "replay")  # a refused golden costs these only its own cells (CORRUPT), not the run
SECONDS = 60  # per case unless it says otherwise: a hostile input must not hang the harness either
ERROR_PREFIX = "harness: error: "
BOMBS = ("zip-bomb", "zip-bomb-lying-directory", "zip-bomb-lying-directory-honest-header")
BOMB_MEMORY_BYTES = 300 * 1024**2
BOMB_SECONDS = 5.0

# Runs `harness show` on a bomb in a fresh interpreter: its RSS just before loading, then its peak.
# ru_maxrss is printed too, but Linux carries a parent's peak across fork and exec into it (here the
# pytest process, torch imported), so the peak used is VmHWM, reset just before loading (clear_refs 5).
MEASURE = """
import contextlib, io, json, resource, sys, time
import numpy, jsonschema
import harness.cli.commands, harness.reports.show, harness.store.lookup
from harness.cli import main

def status_kib(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))

with open("/proc/self/clear_refs", "w") as clear_refs:
    clear_refs.write("5")  # reset the peak RSS (VmHWM) to the RSS now
before = status_kib("VmRSS")
err = io.StringIO()
start = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
    code = main(sys.argv[1:])
seconds = time.perf_counter() - start
print(json.dumps({"code": code, "stderr": err.getvalue(), "seconds": seconds, "before_kib": before,
                  "peak_kib": status_kib("VmHWM"),
                  "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def case_by_id(case_id: str) -> dict[str, Any]:
    return next(case for case in CASES if case["id"] == case_id)


def prepared(case: dict[str, Any], root: Path) -> Sandbox:
    sandbox = make_sandbox(root)
    for action in case.get("do", ()):
        apply(sandbox, action)
    return sandbox


def run_harness(capsys: pytest.CaptureFixture[str], args: list[str], seconds: float
                ) -> tuple[int | str | None, str, str, str]:
    """harness.cli.main(args) in this process: (exit code, stdout, stderr, the traceback if it raised
    or the hang if it ran longer than `seconds`)."""
    capsys.readouterr()
    raised = ""
    code: int | str | None
    try:
        with time_limit(seconds):
            code = main(args)
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    except Hang as hang:
        code, raised = None, f"a hang (harness bug): {hang}\n{traceback.format_exc(limit=-3)}"
    except Exception:
        code, raised = None, traceback.format_exc()
    captured = capsys.readouterr()
    return code, captured.out, captured.err, raised


def test_the_corpus_is_well_formed() -> None:
    """Unique ids, known keys and actions, an expectation for every case, and at least 40 cases."""
    ids = [case["id"] for case in CASES]
    assert len(ids) == len(set(ids)), sorted(case_id for case_id in ids if ids.count(case_id) > 1)
    assert len(CASES) >= 40
    for case in CASES:
        assert set(case) <= CASE_KEYS, (case["id"], set(case) - CASE_KEYS)
        assert {"id", "command", "exit"} <= set(case), case["id"]
        if case["exit"] == 2:
            assert ("message" in case) != ("pattern" in case), case["id"]
        else:
            assert "stdout" in case and "message" not in case, case["id"]
        assert all(action["op"] in ACTIONS for action in case.get("do", ())), case["id"]


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_hostile_input(case: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One corpus case: exit code, one 'harness: error:' line naming the problem, no traceback, nothing
    outside the golden directory changed, nothing inside it lost but what the command removes."""
    sandbox = prepared(case, tmp_path)
    golden_before = {path.name for path in sandbox.golden.iterdir()}
    outside_before = snapshot(sandbox.outside)
    rest_before = {key: entry for key, entry in snapshot(sandbox.root).items()
                   if key != "golden" and not key.startswith("golden/")}
    args = [sandbox.expand(argument) for argument in case["command"]]

    code, out, err, raised = run_harness(capsys, args, case.get("seconds", SECONDS))

    shown = f"harness {' '.join(args)}\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}\n{raised}"
    assert not raised, f"no answer: a traceback or a hang (harness bug):\n{shown}"
    assert "Traceback" not in out + err, shown
    assert code == case["exit"], shown
    if case["exit"] == 2 and args[0] in CELL_COMMANDS and not err:
        assert_corrupt_cells(case, sandbox, out, shown)
    elif case["exit"] == 2:
        assert err.count("\n") == 1 and err.endswith("\n"), f"stderr must be exactly one line:\n{shown}"
        assert err.startswith(ERROR_PREFIX), shown
        assert expected_in(case, sandbox, err), shown
    else:
        assert err == "", shown
        assert case["stdout"] in out, shown
    if case.get("quiet"):
        assert out == "", f"refused input must print nothing else:\n{shown}"
    assert snapshot(sandbox.outside) == outside_before, "the sentinel directory outside the goldens changed"
    assert (sandbox.outside / "victim.json").read_bytes() == (COMMITTED_GOLDEN / f"{REFERENCE_ID}.json").read_bytes()
    after = snapshot(sandbox.root)
    changed = sorted(key for key, entry in rest_before.items() if after.get(key) != entry)
    assert not changed, f"files outside the golden directory changed or vanished: {changed}"
    lost = golden_before - {path.name for path in sandbox.golden.iterdir()}
    undocumented = sorted(name for name in lost
                          if not any(fnmatch.fnmatchcase(name, pattern) for pattern in case.get("may_remove", ())))
    assert not undocumented, f"the golden directory lost {undocumented}"


def expected_in(case: dict[str, Any], sandbox: Sandbox, text: str) -> bool:
    """The case's `message` (a substring) or `pattern` (a regex) is found in the text."""
    if "message" in case:
        return sandbox.expand(case["message"]) in text
    return re.search(case["pattern"], text) is not None


def assert_corrupt_cells(case: dict[str, Any], sandbox: Sandbox, out: str, shown: str) -> None:
    """A golden (or its stored artifact) refused by `run`/`replay` costs only its own cells: the report is
    printed, those cells are CORRUPT with the one-line reason the case names, the command that records the
    golden again follows it, and the summary says exit 2."""
    lines = out.splitlines()
    assert lines and re.fullmatch(r"FAILED: .*\bCORRUPT;.* exit 2", lines[-1]), shown
    reasons = [line for line in lines if "; record it again: harness record" in line]
    assert any(expected_in(case, sandbox, line) for line in reasons), shown
    config = case["command"][case["command"].index("--config") + 1]
    assert any(line.startswith("Accept these results") and line.endswith(f"--force --config {config}")
               for line in lines), shown


def test_deflate_bomb_tool_builds_a_valid_zip() -> None:
    """The bomb builder's CRC and stream are right: a small bomb reads back whole, CRC-32 checked."""
    assert all(crc32_of_zeros(crc, count) == zlib.crc32(bytes(count), crc)
               for crc in (0, 0xDEADBEEF) for count in (0, 1, 63, 4096, 100_003))
    header = npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (3145728,), }")
    with zipfile.ZipFile(io.BytesIO(deflate_bomb_zip("output.npy", header, 3 * CHUNK))) as archive:
        assert archive.read("output.npy") == header + bytes(3 * CHUNK)  # zipfile checks the CRC at the end
    big = deflate_bomb_zip("output.npy", header, 1 << 32)
    assert len(big) < 8 * 1024**2
    with zipfile.ZipFile(io.BytesIO(big)) as archive:
        assert archive.getinfo("output.npy").file_size == len(header) + (1 << 32)
        with archive.open("output.npy") as member:
            assert member.read(len(header) + CHUNK) == header + bytes(CHUNK)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="measures peak RSS through Linux /proc")
@pytest.mark.parametrize("case_id", BOMBS)
def test_zip_bomb_is_refused_fast_in_bounded_memory(case_id: str, tmp_path: Path) -> None:
    """`harness show` on a 4 GiB deflate bomb, in a fresh interpreter: exit 2 within 5 s, and its peak
    RSS less than 300 MB above its RSS just before loading."""
    case = case_by_id(case_id)
    sandbox = prepared(case, tmp_path)
    process = subprocess.run([sys.executable, "-c", MEASURE, "show", REFERENCE_ID, "--golden-dir",
                              str(sandbox.golden)], capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr
    measured = json.loads(process.stdout.splitlines()[-1])
    assert measured["code"] == 2, measured
    assert measured["stderr"].startswith(ERROR_PREFIX) and case["message"] in measured["stderr"], measured
    assert measured["seconds"] < BOMB_SECONDS, measured
    assert (measured["peak_kib"] - measured["before_kib"]) * 1024 < BOMB_MEMORY_BYTES, measured
