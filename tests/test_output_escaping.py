"""Output cannot be forged: text from a golden directory (a manifest's environment fields, file names) reaches the
terminal, the report files and GitHub's log only with its control characters escaped, never as a second line, an
ANSI or OSC-8 sequence, a workflow command or a fake summary line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.reports.text import printable
from tests.conftest import REFERENCE_ID, REPO, perturb_golden, write_suite

FORGED_SUMMARY = "OK: 666 cells: 666 identical; 0.1 s; exit 0"
HOSTILE = (f"x\r\n{FORGED_SUMMARY}\n::error::pwned\n\x1b[2J\x1b[31mred\x1b]8;;https://evil.example\x1b\\link"
           "\x1b]8;;\x1b\\\x07\x9b31m\x7f\u202e##[error]legacy")
STALE_NAME = f"stale\n::error file=x::stale\r{FORGED_SUMMARY}"
# A raw control character: C0 (but the line feeds between lines), DEL, C1, and the Unicode bidi override.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]")
SUMMARY = re.compile(r"^(OK|FAILED): \d+ cells?: ")


def forged(text: str) -> list[str]:
    """Every way the text could act on a terminal or a GitHub log: raw controls, a workflow command a line
    starts with (after spaces), a legacy `##[` command anywhere, and more than one summary line."""
    problems = [f"raw control {match.group()!r}" for match in RAW_CONTROL.finditer(text)]
    lines = text.split("\n")
    problems += [f"command line {line!r}" for line in lines
                 if line.lstrip().startswith("::") and not line.startswith("::error title=harness%3A ")]
    problems += [f"legacy command in {line!r}" for line in lines if "##[" in line]
    summaries = [line for line in lines if SUMMARY.match(line)]
    problems += [f"forged summary {line!r}" for line in summaries if "666" in line]
    return problems


def test_printable_escapes_controls_breaks_commands_and_changes_nothing_printable() -> None:
    assert printable("rnn-h8-s0 x eager: DRIFT; é, 中, 🙂") == "rnn-h8-s0 x eager: DRIFT; é, 中, 🙂"
    text = printable(HOSTILE)
    assert forged(text) == [] and "\n" not in text
    assert text.startswith("x\\r\\nOK: 666") and "\\x1b]8;;https://evil.example\\x1b\\link" in text
    assert "\\x9b" in text and "\\x7f" in text and "\\u202e" in text and "##\\x5b" in text
    assert printable("  ::error::x") == "  \\x3a:error::x" and printable("a ::error::x") == "a ::error::x"
    assert printable(text) == text  # applying it twice changes nothing more


def hostile_golden(golden_dir: Path) -> None:
    """The reference golden, drifting (so every failure detail is printed), with every environment field a free
    string holding the attack; and a stale manifest whose file name holds one."""
    perturb_golden(golden_dir, REFERENCE_ID, "output", (0, 0, 0), 1e-3)
    manifest_path = golden_dir / f"{REFERENCE_ID}.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    environment = manifest["environment"]
    for field in ("cpu", "platform", "python", "machine", "cuda"):
        environment[field] = HOSTILE
    environment["packages"]["torch"] = f"0.0\n::error::torch {HOSTILE}"
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    (golden_dir / f"{STALE_NAME}.json").write_text(json.dumps(manifest), encoding="utf-8")
    (golden_dir / "::error::stale.json").write_text(json.dumps(manifest), encoding="utf-8")


@pytest.fixture
def attack(golden_copy: Callable[..., Path], tmp_path: Path) -> tuple[Path, Path]:
    golden_dir = golden_copy(REFERENCE_ID)
    hostile_golden(golden_dir)
    return write_suite(tmp_path / "suite.toml"), golden_dir


def harness(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own, as CI runs it (a GitHub Actions step)."""
    env = {**os.environ, "GITHUB_ACTIONS": "true", "PYTHONPATH": str(REPO)}
    env.pop("GITHUB_STEP_SUMMARY", None)
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300, check=False)


def test_run_and_its_report_files_escape_what_the_golden_directory_holds(
    attack: tuple[Path, Path], tmp_path: Path
) -> None:
    suite, golden_dir = attack
    files = {kind: tmp_path / f"report.{kind}" for kind in ("json", "junit", "markdown", "html")}
    flags = [item for kind, path in files.items() for item in (f"--{kind}", str(path))]

    run = harness("run", "--suite", str(suite), "--golden-dir", str(golden_dir), "--backend", "eager", "--no-cache",
                  *flags, cwd=tmp_path)

    assert run.returncode == 1, run.stderr  # the drift, judged; nothing the manifest says changes that
    assert forged(run.stdout) == [] and forged(run.stderr) == []
    summaries = [line for line in run.stdout.splitlines() if SUMMARY.match(line)]
    assert len(summaries) == 1 and summaries[0].endswith("exit 1")
    assert "cpu: x\\r\\nOK: 666 cells" in run.stdout  # shown, escaped, on the line it belongs to
    annotations = [line for line in run.stdout.splitlines() if line.startswith("::")]
    assert len(annotations) == 1 and annotations[0].startswith("::error title=harness%3A rnn-h8-s0 x eager%3A DRIFT::")
    assert "%0A" in annotations[0] and "\r" not in annotations[0]
    for kind in ("markdown", "html"):
        assert forged(files[kind].read_text(encoding="utf-8")) == [], kind
    junit = files["junit"].read_bytes().decode("utf-8")
    assert forged(junit) == []
    ElementTree.fromstring(junit.encode("utf-8"))  # well-formed XML: no control character XML 1.0 forbids
    HTMLParser().feed(files["html"].read_text(encoding="utf-8"))
    assert json.loads(files["json"].read_text(encoding="utf-8"))["exit_code"] == 1


def test_show_replay_and_prune_escape_what_the_golden_directory_holds(
    attack: tuple[Path, Path], tmp_path: Path
) -> None:
    suite, golden_dir = attack
    selection = ["--suite", str(suite), "--golden-dir", str(golden_dir)]

    show = harness("show", REFERENCE_ID, "--golden-dir", str(golden_dir), cwd=tmp_path)
    show_json = harness("show", REFERENCE_ID, "--golden-dir", str(golden_dir), "--json", cwd=tmp_path)
    replay = harness("replay", *selection, "--backend", "onnxruntime-legacy", cwd=tmp_path)
    prune = harness("prune", *selection, cwd=tmp_path)

    assert (show.returncode, show_json.returncode, prune.returncode) == (0, 0, 0), show.stderr + prune.stderr
    assert replay.returncode in (1, 2), replay.stderr  # the drifting golden (or a refusal), never a pass
    for result in (show, show_json, replay, prune):
        assert forged(result.stdout) == [] and forged(result.stderr) == [], result.args
    assert json.loads(show_json.stdout)["environment"]["cpu"] == HOSTILE  # JSON keeps the value exactly
    assert "would remove" in prune.stdout and "stale\\n::error file=x::stale\\rOK: 666" in prune.stdout


def test_merged_reports_escape_labels_read_from_their_files(
    attack: tuple[Path, Path], tmp_path: Path, cli: Callable[..., object]
) -> None:
    from harness.reports.ci_files import merge_markdown
    from harness.reports.html import merge_html
    from harness.reports.merge import merge_lines, merge_reports

    suite, golden_dir = attack
    report = tmp_path / "report.json"
    assert harness("run", "--suite", str(suite), "--golden-dir", str(golden_dir), "--backend", "eager",
                   "--no-cache", "--json", str(report), cwd=tmp_path).returncode == 1
    document = json.loads(report.read_text(encoding="utf-8"))
    document["label"] = f"`|{HOSTILE}"
    document["environment"]["cpu"] = HOSTILE
    report.write_text(json.dumps(document), encoding="utf-8")

    merged = merge_reports([report])

    assert forged("\n".join(merge_lines(merged))) == []
    markdown = merge_markdown(merged)
    assert forged(markdown) == [] and "| `'\\|x\\r\\n" in markdown  # the label cannot end its code span or cell
    assert forged(merge_html(merged)) == []


def test_every_report_writer_escapes_upstream_text_in_cells() -> None:
    """Writers fed a report whose cells carry a crafted reason (upstream error text, file names), warnings,
    stale ids and environment changes, as a hostile golden directory or a hostile model makes them."""
    from harness.judging.results import CellResult, RunReport
    from harness.reports.ci_files import github_annotations, junit_xml, run_markdown
    from harness.reports.html import run_html
    from harness.reports.json_report import report_json
    from harness.reports.terminal import report_lines
    from harness.verdicts import Verdict
    from tests.test_reports import ENVIRONMENT

    cells = (CellResult(config_id=REFERENCE_ID, backend="eager", verdict=Verdict.ERROR, reason=HOSTILE),
             CellResult(config_id=REFERENCE_ID, backend="torchscript-trace", verdict=Verdict.UNSUPPORTED,
                        reason=HOSTILE))
    report = RunReport(suite="s.toml", golden_dir="golden", config_ids=(REFERENCE_ID,),
                       backends=("eager", "torchscript-trace"), cells=cells, environment=ENVIRONMENT,
                       environment_changes={REFERENCE_ID: (f"cpu: {HOSTILE} -> here",)}, stale=(STALE_NAME,),
                       warnings=(HOSTILE,), label=HOSTILE, unavailable={"onnxruntime": HOSTILE})

    terminal = "\n".join(report_lines(report, verbose=True))
    junit = junit_xml(report).decode("utf-8")
    annotations = github_annotations(report)
    for text in (terminal, junit, run_markdown(report), run_html(report), "\n".join(annotations)):
        assert forged(text) == []
    assert terminal.count("x\\r\\nOK: 666") >= 4  # the reason, the warning, the environment, unavailable
    ElementTree.fromstring(junit.encode("utf-8"))
    assert "x\\r\\nOK: 666" in junit  # the error's reason and the skip's message, escaped
    assert len(annotations) == 1 and "%0D" not in annotations[0] and "\\r" in annotations[0]
    title = annotations[0].split("::")[1]
    assert title == "error title=harness%3A rnn-h8-s0 x eager%3A ERROR"  # `:` and `,` escaped in a property
    assert json.loads(report_json(report))["cells"][0]["reason"] == HOSTILE  # JSON keeps the value exactly
