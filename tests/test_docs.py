"""The README is an entry page whose tour is literally true, and the docs hang together: every page is in the
site's nav, the workflow shown is the workflow shipped, and the figure blocks are the ones tools/docs_figures.py
writes. (`mkdocs build --strict` in CI checks the links between pages.)"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from harness.cli.parser import build_parser

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
HARNESS = (sys.executable, "-m", "harness")  # the interpreter running the tests (a venv, tox or nox)


def docs_figures() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_figures", REPO / "tools" / "docs_figures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sh_blocks(text: str) -> list[list[str]]:
    """The command lines of each ```sh block, comments dropped."""
    blocks = re.findall(r"```sh\n(.*?)```", text, re.DOTALL)
    return [[line for line in block.splitlines() if line and not line.startswith("#")] for block in blocks]


def tour_step(number: int) -> str:
    """The text of the README tour's step NUMBER, up to the next step."""
    return README.split(f"**{number}. ")[1].split(f"**{number + 1}. ")[0]


def test_the_readme_is_an_entry_page_that_links_only_existing_pages() -> None:
    assert len(README.splitlines()) <= 300
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    assert any(link.startswith("docs/") for link in links)
    # docs/atlas.md is written alongside; every other target must exist
    assert [link for link in links if not (REPO / link).exists() and link != "docs/atlas.md"] == []


def test_the_readme_commands_are_the_ones_ci_runs() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    run_command, test_command = sh_blocks(README.split("## The two commands")[1])[0]
    assert run_command in ci and test_command in ci
    torch_free = sh_blocks(README.split("## Installing without torch (verification-only CI)")[1])[0]
    assert len(torch_free) == 1  # one line to paste


def test_every_docs_page_is_in_the_site_nav() -> None:
    nav = re.findall(r"^  - [^:]+: (\S+\.md)$", (REPO / "mkdocs.yml").read_text(), re.MULTILINE)
    pages = sorted(str(page.relative_to(REPO / "docs")) for page in (REPO / "docs").rglob("*.md"))
    assert [page for page in pages if page not in nav] == []
    assert "atlas.md" in nav and "mutation.md" in nav


def test_the_workflow_shown_is_the_workflow_shipped_and_its_commands_parse() -> None:
    workflow = (REPO / "docs" / "examples" / "harness-ci.yml").read_text()
    shown = (REPO / "docs" / "ci.md").read_text().split("```yaml\n")[1].split("```")[0]
    assert shown == workflow
    commands = re.findall(r"\.venv/bin/harness ([^\n]+(?:\n {10}[^\n]+)*)", workflow)
    assert len(commands) == 2
    for command in commands:
        words = shlex.split(command.split(">>")[0].replace("${{ github.base_ref }}", "main"))
        build_parser().parse_args([word.replace("$SUITE", "s.toml").replace("$GOLDEN_DIR", "g") for word in words])


def test_figure_blocks_are_the_measured_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = docs_figures()
    shown = figures.blocks()
    assert sorted(shown) == sorted(name for name in figures.FIGURES if name != "screenshot")
    page = tmp_path / "page.md"
    page.write_text("a\n<!-- figures:begin tests -->\nold\n<!-- figures:end tests -->\nb\n"
                    "<!-- figures:begin run -->\nkept\n<!-- figures:end run -->\n")
    monkeypatch.setattr(figures, "DOCS", tmp_path)
    assert figures.rewrite("tests", "- new figure") == [page]
    text = page.read_text()
    assert "old" not in text and "- new figure\n\n*Measured by `tools/docs_figures.py` on " in text
    assert "kept" in text and text.startswith("a\n") and text.endswith("<!-- figures:end run -->\n")


def test_the_tests_figure_reads_a_junit_file_and_a_pytest_log(tmp_path: Path) -> None:
    figures = docs_figures()
    junit = tmp_path / "junit.xml"
    junit.write_text('<testsuites><testsuite name="pytest" errors="0" failures="0" skipped="1" tests="12" '
                     'time="34.5"></testsuite></testsuites>')
    options = figures.Options(junit=junit, pytest_output=None)
    assert figures.figure_tests(options) == "- The tests (`python -m pytest`): 11 passed, 1 skipped in 34 s."
    log = tmp_path / "pytest.log"
    log.write_text("....\n========= 1225 passed, 1 skipped, 3 warnings in 280.12s (0:04:40) =========\n")
    options = figures.Options(junit=None, pytest_output=str(log))
    assert figures.figure_tests(options) == "- The tests (`python -m pytest`): 1225 passed, 1 skipped in 280 s."


def run_line(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    words = shlex.split(line)
    command = [*HARNESS, *words[1:]] if words[0] == "harness" else words
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.skipif(shutil.which("sed") is None, reason="the tour edits the model with GNU sed")
def test_the_readme_tour_gives_a_green_run_a_drift_report_and_an_accepted_change(tmp_path: Path) -> None:
    """Steps 2 to 4, as written, in a copy of the repository's example: green, DRIFT (weights changed), green."""
    shutil.copytree(REPO / "examples" / "hello-char-model", tmp_path / "examples" / "hello-char-model")
    copy, run = sh_blocks(tour_step(2))[0]
    assert run_line(copy, tmp_path).returncode == 0
    green = run_line(run, tmp_path)
    assert green.returncode == 0, green.stdout + green.stderr
    edit, rerun = sh_blocks(tour_step(3))[0]
    assert run_line(edit, tmp_path).returncode == 0
    assert "nn.init.zeros_(self.head.bias)" in (tmp_path / "my-model" / "hello_char_model.py").read_text()
    drift = run_line(rerun, tmp_path)
    assert drift.returncode == 1, drift.stdout + drift.stderr
    assert "DRIFT" in drift.stdout and "weights changed" in drift.stdout
    record, run_again, review = sh_blocks(tour_step(4))[0]
    recorded = run_line(record, tmp_path)
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    assert "weights sha256 changed" in recorded.stdout
    accepted = run_line(run_again, tmp_path)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    reviewed = run_line(review, tmp_path)
    assert reviewed.returncode == 0 and "changed" in reviewed.stdout, reviewed.stdout + reviewed.stderr
