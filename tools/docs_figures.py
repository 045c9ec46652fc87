"""The measured figures in docs/: measure them on this machine and rewrite their marked blocks.

A block is the text between ``<!-- figures:begin NAME -->`` and ``<!-- figures:end NAME -->`` in a page under
docs/. Only the blocks of the figures measured are rewritten, so one figure can be refreshed alone; the docs
build without this script (the blocks are plain Markdown).

    python tools/docs_figures.py --list                         # every figure and the pages that show it
    python tools/docs_figures.py --only example,replay,screenshot
    python tools/docs_figures.py --only tests --junit junit.xml           # from `pytest --junitxml=junit.xml`
    python tools/docs_figures.py --only tests --pytest-output pytest.log  # from a log's summary line ('-': stdin)
    python tools/docs_figures.py --only run                     # the default suite, cold then warm (minutes)
    python tools/docs_figures.py --only torch-free              # a fresh torch-free venv: install, size, replay
    python tools/docs_figures.py                                # all of them; `tests` then runs the whole suite

Run it from the repository root with the full environment (.venv).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
EXAMPLE = ("--suite", "examples/hello-char-model/suite.toml", "--golden-dir", "examples/hello-char-model/golden")
# The screenshot: a few small configs on five backends, one golden moved by 1e-3 so that a failure shows.
SHOT_CONFIGS = ("rnn-h8-s0", "rnnrelu-h8-s0", "lstm-h8-s0", "gru-h8-s0", "lstm-h8-p4-s0", "rnn-h8-f64-s0",
                "gru-h8-bi-s0")
SHOT_BACKENDS = "eager,torchscript-script,torch-export,onnxruntime-legacy,onnxruntime-dynamo"
BLOCK = re.compile(r"(<!-- figures:begin (?P<name>[\w-]+) -->\n)(.*?)(<!-- figures:end (?P=name) -->)", re.DOTALL)


class Options(argparse.Namespace):
    only: str | None
    junit: Path | None
    pytest_output: str | None
    list: bool


def harness(*arguments: str, env: dict[str, str] | None = None, cwd: Path = REPO,
            executable: Path | None = None) -> tuple[float, dict[str, Any], int]:
    """Run a harness command with --json; its whole-process seconds, its report and its exit code."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        command = [str(executable)] if executable else [sys.executable, "-m", "harness"]
        started = time.perf_counter()
        result = subprocess.run([*command, *arguments, "--json", str(report), "--quiet"], cwd=cwd,
                                env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
        if not report.exists():
            sys.exit(f"docs_figures: `harness {' '.join(arguments)}` wrote no report:\n{result.stderr[-2000:]}")
        return seconds, json.loads(report.read_text()), result.returncode


def counts(report: dict[str, Any]) -> str:
    """'666 cells: 292 identical, 214 close, ...' from a report's summary, verdicts with no cell left out."""
    summary = report["summary"]
    verdicts = ", ".join(f"{n} {verdict}" for verdict, n in summary["by_verdict"].items() if n)
    return f"{summary['cells']} cells: {verdicts}; exit {report['exit_code']}"


def machine() -> str:
    """The line every block ends with: when and where it was measured."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in ("torch", "onnxruntime", "onnx", "numpy"))
    cores = len(os.sched_getaffinity(0))
    return (f"*Measured by `tools/docs_figures.py` on {datetime.date.today().isoformat()}: {cores} cores ({cpu}), "
            f"Python {platform.python_version()}, {versions}.*")


def env_with(**values: str) -> dict[str, str]:
    return {**os.environ, **values}


def figure_run(options: Options) -> str:
    """The default suite, cold (empty export and inductor caches) and then warm."""
    with tempfile.TemporaryDirectory() as scratch:
        env = env_with(HARNESS_CACHE_DIR=f"{scratch}/exports", TORCHINDUCTOR_CACHE_DIR=f"{scratch}/inductor")
        cold, report, _ = harness("run", env=env)
        warm, _, _ = harness("run", env=env)
    return (f"- `harness run`, the default suite ({len(report['configs'])} configs): {counts(report)}.\n"
            f"  Cold (empty export cache, empty inductor cache) **{cold:.0f} s**; warm {warm:.0f} s "
            f"({warm / cold:.2f}x), whole processes.")


def figure_example(options: Options) -> str:
    seconds, report, _ = harness("run", *EXAMPLE)
    return f"- The example suite (`examples/hello-char-model`), warm: {counts(report)}; {seconds:.1f} s."


def figure_replay(options: Options) -> str:
    seconds, report, _ = harness("replay", "--backend", "onnx")
    return (f"- `harness replay --backend onnx`, the default suite's stored ONNX artifacts: {counts(report)}; "
            f"{seconds:.1f} s as a whole process (torch is never imported).")


def figure_relations(options: Options) -> str:
    """The default suite's relation cases on every backend: bitwise, within tolerance (max abs), or why not."""
    seconds, report, _ = harness("run", "--config", "rnn-h8-rel.chunk.bslice.zs-s0", "--config",
                                 "gru-h8-gauss-t6b4-rel.chunk.bslice.zs-s0", "--config",
                                 "lstm-h8-l2-gauss-t6b4-rel.chunk.bslice.zs.pad-s0")
    backends = list(dict.fromkeys(cell["backend"] for cell in report["cells"] if cell.get("relations")))
    rows = ["| config | relation | " + " | ".join(backends) + " |", "|---|---|" + "---|" * len(backends)]
    table: dict[tuple[str, str], dict[str, str]] = {}
    reasons: dict[str, str] = {}
    for cell in report["cells"]:
        for outcome in cell.get("relations", []):
            status = outcome["status"]
            text = {"bitwise": "bitwise", "holds": f"{outcome['max_abs']:.1e}", "broken": "**BROKEN**"}.get(status)
            if text is None:
                reasons.setdefault(outcome["reason"], f"({len(reasons) + 1})")
                text = f"unsupported {reasons[outcome['reason']]}"
            table.setdefault((cell["config"], outcome["relation"]), {})[cell["backend"]] = text
    rows += [f"| `{config}` | {relation} | " + " | ".join(cells.get(name, "-") for name in backends) + " |"
             for (config, relation), cells in table.items()]
    notes = [f"{mark} {reason}" for reason, mark in reasons.items()]
    return "\n".join([*rows, "", "Unsupported, why (the backend's own error):", "", *(f"- {note}" for note in notes),
                      "", f"A number is the largest difference between the two sides (within the cell's tolerance); "
                      f"{seconds:.0f} s for the three configs on every backend."])


def torch_free_packages() -> list[str]:
    """pyproject's dependencies less torch and onnxscript: what the documented torch-free command installs."""
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = (re.split(r"[<>=!~;\[ ]", dependency)[0] for dependency in dependencies)
    return [name for name in names if name not in ("torch", "onnxscript")]


def directory_bytes(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file() and not file.is_symlink())


def figure_torch_free(options: Options) -> str:
    """The documented torch-free install in a fresh venv: its time and size, then its replays."""
    with tempfile.TemporaryDirectory() as scratch:
        venv = Path(scratch) / "venv"
        pip = [str(venv / "bin" / "pip"), "install", "-q"]
        started = time.perf_counter()
        for step in ([sys.executable, "-m", "venv", str(venv)],
                     [*pip, "-c", "constraints.txt", *torch_free_packages()], [*pip, "--no-deps", "-e", "."]):
            subprocess.run(step, cwd=REPO, check=True, capture_output=True)
        install = time.perf_counter() - started
        size = directory_bytes(venv)
        executable = venv / "bin" / "harness"
        suite_seconds, suite, _ = harness("replay", "--backend", "onnx", executable=executable)
        example_seconds, example, _ = harness("replay", "--backend", "onnx", *EXAMPLE, executable=executable)
    return ("| torch-free install (the command above) | venv size | `replay --backend onnx`: default suite "
            "| the example |\n|---|---|---|---|\n"
            f"| {install:.1f} s | {size / 1e6:.0f} MB | {suite_seconds:.1f} s ({counts(suite)}) "
            f"| {example_seconds:.1f} s ({counts(example)}) |")


PYTEST_SUMMARY = re.compile(r"(?P<passed>\d+) passed(?:, (?P<skipped>\d+) skipped)?.*? in (?P<seconds>[\d.]+)s")


def figure_tests(options: Options) -> str:
    """The test suite's size and time: from a junit file, a pytest log, or (neither given) a run of it now."""
    if options.junit is not None:
        root = ElementTree.parse(options.junit).getroot()
        suite = root if root.tag == "testsuite" else root.find("testsuite")
        if suite is None:
            sys.exit(f"docs_figures: tests: no <testsuite> in {options.junit}")
        total, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
        failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        passed, seconds = total - skipped - failed, float(suite.get("time", 0))
    else:
        if options.pytest_output is not None:
            text = sys.stdin.read() if options.pytest_output == "-" else Path(options.pytest_output).read_text()
        else:
            text = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=REPO,
                                  capture_output=True, text=True, check=False).stdout
        found = list(PYTEST_SUMMARY.finditer(text))
        if not found:
            sys.exit("docs_figures: tests: no pytest summary line ('N passed, M skipped in Ts') in the output")
        match = found[-1]
        passed, skipped, seconds = int(match["passed"]), int(match["skipped"] or 0), float(match["seconds"])
    return f"- The tests (`python -m pytest`): {passed} passed, {skipped} skipped in {seconds:.0f} s."


def figure_screenshot(options: Options) -> str:
    """docs/html-report.png: a real HTML report, with relative paths, rendered by headless Chromium."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("docs_figures: screenshot: no chromium on this machine (apt-get install chromium)")
    from harness.store.golden import GoldenStore  # the tool runs in the full environment

    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        shutil.copytree(REPO / "golden", work / "golden")
        shutil.copy(REPO / "harness" / "model" / "suites" / "default.toml", work / "suite.toml")
        store = GoldenStore(work / "golden")
        golden = store.load("gru-h8-s0")
        tensors = {name: array.copy() for name, array in golden.tensors.items()}
        tensors["output"][2, 1, 0] += tensors["output"].dtype.type(1e-3)
        store.write(dataclasses.replace(golden, tensors=tensors), force=True)
        selection = [flag for config in SHOT_CONFIGS for flag in ("--config", config)]
        result = subprocess.run([sys.executable, "-m", "harness", "run", "--suite", "suite.toml", "--golden-dir",
                                 "golden", *selection, "--backend", SHOT_BACKENDS, "--html", "report.html", "--quiet"],
                                cwd=work, capture_output=True, text=True, check=False)
        if not (work / "report.html").exists():
            sys.exit(f"docs_figures: screenshot: the run wrote no HTML report:\n{result.stderr[-2000:]}")
        html = (work / "report.html").read_text()
        leaks = sorted({path for path in (scratch, str(REPO), str(Path.home())) if path in html})
        if leaks:
            print(f"docs_figures: screenshot: the HTML report names machine paths: {', '.join(leaks)}",
                  file=sys.stderr)
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--hide-scrollbars",
                        f"--user-data-dir={work / 'profile'}", "--window-size=1250,950",
                        f"--screenshot={DOCS / 'html-report.png'}", (work / "report.html").as_uri()],
                       check=True, capture_output=True, timeout=120)
    return ""


FIGURES: dict[str, Callable[[Options], str]] = {
    "tests": figure_tests, "run": figure_run, "example": figure_example, "replay": figure_replay,
    "torch-free": figure_torch_free, "screenshot": figure_screenshot, "relations": figure_relations,
}


def blocks() -> dict[str, list[Path]]:
    """Every block name in docs/, with the pages that hold it."""
    found: dict[str, list[Path]] = {}
    for page in sorted(DOCS.rglob("*.md")):
        for match in BLOCK.finditer(page.read_text()):
            found.setdefault(match["name"], []).append(page)
    return found


def rewrite(name: str, text: str) -> list[Path]:
    """Replace the body of every block NAME in docs/ by TEXT (and the measuring line); the pages changed."""
    changed = []
    for page in sorted(DOCS.rglob("*.md")):
        before = page.read_text()
        after = BLOCK.sub(lambda m: m[0] if m["name"] != name else f"{m[1]}{text}\n\n{machine()}\n{m[4]}", before)
        if after != before:
            page.write_text(after)
            changed.append(page)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", help=f"comma-separated figures among {', '.join(FIGURES)} (default: all)")
    parser.add_argument("--junit", type=Path, help="tests: read this pytest --junitxml file instead of running")
    parser.add_argument("--pytest-output", help="tests: read pytest's summary line from this log ('-': stdin)")
    parser.add_argument("--list", action="store_true", help="list the figures and the pages that show them")
    options = parser.parse_args(argv, namespace=Options())
    shown = blocks()
    if options.list:
        for name in FIGURES:
            pages = ", ".join(str(page.relative_to(REPO)) for page in shown.get(name, [])) or "docs/html-report.png"
            print(f"{name}: {pages}")
        return 0
    names = options.only.split(",") if options.only else list(FIGURES)
    unknown = [name for name in names if name not in FIGURES]
    if unknown:
        parser.error(f"unknown figure {', '.join(unknown)}; known: {', '.join(FIGURES)}")
    for name in names:
        text = FIGURES[name](options)
        if name == "screenshot":
            print("screenshot: docs/html-report.png")
            continue
        changed = rewrite(name, text)
        if not changed:
            print(f"docs_figures: no block '{name}' in docs/", file=sys.stderr)
            return 1
        print(f"{name}: {text.strip()}\n  -> {', '.join(str(page.relative_to(REPO)) for page in changed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
