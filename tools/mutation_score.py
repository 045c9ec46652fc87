"""The mutation score of the judging core: run mutmut over it, or read the results of a run.

    python tools/mutation_score.py --run --fail-under 95   # what `tox -e mutation` and `nox -s mutation` do
    python tools/mutation_score.py                          # only read mutants/ (after `mutmut run`)

The files come from `[tool.mutmut] only_mutate` in pyproject.toml; of harness/store/files.py only the
integrity checks count (FUNCTIONS_ONLY below): its write path (atomic writes, locks, leftovers) is not the
judge and has its own tests. With --run, mutmut is started on exactly those mutants (mutant-name globs) in a
fresh mutants/ directory, its output going to mutants/mutmut-run.log.

Then one table per module, the line `mutation score: K/N killed (P%)`, and every mutant not killed, one per
line, with its status and the changed line (marked when docs/mutation.md, which says why each is equivalent,
does not name it). A mutant counts as killed when a test failed ("killed") or the run hit its time limit
("timeout"), as in mutmut's own badge; "survived", "no tests", "suspicious", "segfault", "skipped" and
"not checked" do not. Exit status: 1 when the score is below --fail-under, 2 when there is nothing to score
or mutmut failed, else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = Path("mutants")
LOG = MUTANTS / "mutmut-run.log"
DOC = ROOT / "docs" / "mutation.md"  # says why each surviving mutant is equivalent
# harness/store/files.py: only its integrity checks (the functions that read, confine and verify goldens).
FUNCTIONS_ONLY: dict[str, tuple[str, ...]] = {
    "harness/store/files.py": (
        "numpy_dtype", "confined_tensors_path", "check_manifest_path",
        "read_tensors", "_member_spec", "_read_member", "verify_tensors",
    ),
}
KILLED = frozenset({"killed", "timeout"})
# mutmut's exit-code -> status table (mutmut.stats.status_by_exit_code), used when mutmut cannot be imported.
_FALLBACK_STATUS: dict[int | None, str] = {
    None: "not checked", 0: "survived", 1: "killed", 3: "killed", 2: "check was interrupted by user",
    5: "no tests", 33: "no tests", 34: "skipped", 35: "suspicious", 36: "timeout", 37: "caught by type check",
    -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", -11: "segfault", -9: "segfault",
}


@dataclass(frozen=True)
class Mutant:
    key: str  # mutmut's name, e.g. harness.judging.compare.x_compare_tensor__mutmut_3
    path: str  # the source file, e.g. harness/judging/compare.py
    status: str

    @property
    def killed(self) -> bool:
        return self.status in KILLED


def scoped_files(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The files mutmut mutates: `[tool.mutmut] only_mutate` (plain paths, no globs, in this project)."""
    config = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    return list(config["tool"]["mutmut"]["only_mutate"])


def function_of(key: str) -> str:
    """The function (or Class.method) a mutant key belongs to: x_name__mutmut_3 -> name, xǁCǁm__mutmut_1 -> C.m."""
    mangled = key.partition("__mutmut_")[0].rpartition(".")[2]
    if mangled.startswith("xǁ"):
        return mangled[2:].replace("ǁ", ".")
    return mangled.removeprefix("x_")


def in_scope(path: str, key: str) -> bool:
    functions = FUNCTIONS_ONLY.get(path)
    return functions is None or function_of(key) in functions


def module_of(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def mutant_globs(files: Iterable[str]) -> list[str]:
    """mutmut run's mutant-name patterns for exactly the scored mutants."""
    globs = []
    for path in files:
        if path in FUNCTIONS_ONLY:
            globs += [f"{module_of(path)}.x_{name}__mutmut_*" for name in FUNCTIONS_ONLY[path]]
        else:
            globs.append(f"{module_of(path)}.*")
    return globs


def status_table() -> dict[int | None, str]:
    try:
        from mutmut.stats import status_by_exit_code
    except ImportError:
        return _FALLBACK_STATUS
    return {code: status_by_exit_code[code] for code in _FALLBACK_STATUS}


def read_mutants(files: Sequence[str], mutants_dir: Path = MUTANTS) -> list[Mutant]:
    """Every scored mutant with its status, from mutmut's mutants/<path>.meta files."""
    statuses = status_table()
    found = []
    for path in files:
        meta = mutants_dir / f"{path}.meta"
        if not meta.exists():
            continue
        exit_codes: dict[str, int | None] = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        found += [Mutant(key, path, statuses.get(code, "suspicious"))
                  for key, code in exit_codes.items() if in_scope(path, key)]
    return found


def changed_line(mutant: Mutant) -> str:
    """The mutation in one line ('- old | + new'), from mutmut's diff; '' when it cannot be read."""
    try:
        from mutmut.mutation.diff_apply import get_diff_for_mutant

        diff = get_diff_for_mutant(mutant.key, path=mutant.path).splitlines()[3:]  # skip ---, +++, @@
    except Exception:  # the diff is a courtesy; the score never depends on it
        return ""
    removed = " / ".join(line[1:].strip() for line in diff if line.startswith("-"))
    added = " / ".join(line[1:].strip() for line in diff if line.startswith("+"))
    return f"- {removed} | + {added or '(removed)'}"


def percent(killed: int, total: int) -> float:
    return 100.0 * killed / total if total else 0.0


def report(mutants: Sequence[Mutant], files: Sequence[str], *, diffs: bool, documented: str = "") -> list[str]:
    """The per-module table, the score line, then one line per mutant not killed (marked when `documented`,
    the text of docs/mutation.md, does not name it)."""
    lines = [f"{'module':<34} {'killed':>7} {'total':>6} {'score':>7}"]
    for path in files:
        of_file = [m for m in mutants if m.path == path]
        killed = sum(m.killed for m in of_file)
        lines.append(f"{module_of(path):<34} {killed:>7} {len(of_file):>6} {percent(killed, len(of_file)):>6.1f}%")
    killed = sum(m.killed for m in mutants)
    lines.append(f"mutation score: {killed}/{len(mutants)} killed ({percent(killed, len(mutants)):.1f}%)")
    for mutant in sorted((m for m in mutants if not m.killed), key=lambda m: _natural(m.key)):
        change = changed_line(mutant) if diffs else ""
        unexplained = "" if mutant.key in documented else f" [not in {DOC.relative_to(ROOT)}]"
        lines.append(f"{mutant.key} ({mutant.status}){unexplained}" + (f": {change}" if change else ""))
    return lines


def _natural(key: str) -> tuple[str, int]:
    name, _, number = key.partition("__mutmut_")
    return name, int(number) if number.isdigit() else 0


def run_mutmut(files: Sequence[str], max_children: int | None) -> int:
    """A fresh mutants/ directory, then `mutmut run` on the scored mutants; its output goes to the log."""
    mutmut = shutil.which("mutmut", path=str(Path(sys.executable).parent)) or shutil.which("mutmut")
    if mutmut is None:
        print("mutmut is not installed (pip install -c constraints.txt -e '.[mutation]')", file=sys.stderr)
        return 2
    shutil.rmtree(MUTANTS, ignore_errors=True)
    MUTANTS.mkdir()
    command = [mutmut, "run", *(["--max-children", str(max_children)] if max_children else []), *mutant_globs(files)]
    print(f"mutmut run on {len(files)} files (output: {LOG})", flush=True)
    start = time.monotonic()
    with LOG.open("w", encoding="utf-8") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    print(f"mutmut run took {time.monotonic() - start:.0f} s (exit {code})", flush=True)
    if code != 0:
        print(LOG.read_text(encoding="utf-8", errors="replace")[-4000:], file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="store_true", help="run mutmut first (in a fresh mutants/ directory)")
    parser.add_argument("--max-children", type=int, default=None, help="mutmut's parallel workers (default: CPUs)")
    parser.add_argument("--fail-under", type=float, default=0.0, metavar="PERCENT",
                        help="exit 1 when the score is below this percentage")
    parser.add_argument("--no-diff", action="store_true", help="list surviving mutants without their change")
    options = parser.parse_args(argv)
    os.chdir(ROOT)  # mutmut works in the directory of pyproject.toml, and mutants/ is there
    files = scoped_files()
    if options.run and run_mutmut(files, options.max_children) != 0:
        return 2
    mutants = read_mutants(files)
    if not mutants:
        print(f"no mutmut results under {MUTANTS}/: run `mutmut run` or pass --run", file=sys.stderr)
        return 2
    documented = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    print("\n".join(report(mutants, files, diffs=not options.no_diff, documented=documented)))
    score = percent(sum(m.killed for m in mutants), len(mutants))
    if score < options.fail_under:
        print(f"mutation score {score:.1f}% is below --fail-under {options.fail_under:g}%", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
