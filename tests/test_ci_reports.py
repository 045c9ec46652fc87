"""Shards, merge, and the report files CI systems read (JUnit, Markdown, HTML, JSON schema)."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.model.shard import parse_shard, select_shard
from harness.reports.json_report import schema_problems
from tests.conftest import CliResult, perturb_golden

Cli = Callable[..., CliResult]
CONFIGS = ("rnn-h8-s0", "gru-h8-s0", "lstm-h8-s0", "gru-h8-bi-s0", "rnn-h8-bi-s0", "lstm-h8-p4-s0", "gru-h8-l2-s0")
SELECT = tuple(flag for config in CONFIGS for flag in ("--config", config))
BACKENDS = ("--backend", "eager", "--backend", "onnxruntime-legacy")


@pytest.fixture
def golden(golden_copy: Callable[..., Path]) -> Path:
    return golden_copy(*CONFIGS)


def run_json(cli: Cli, golden: Path, path: Path, *extra: str) -> dict[str, object]:
    result = cli("run", *SELECT, *BACKENDS, "--golden-dir", str(golden), "--json", str(path), *extra)
    assert result.exit_code in (0, 1), result.err
    return dict(json.loads(path.read_text()))


@pytest.mark.parametrize("count", [1, 2, 3, 7, 50, 60])
def test_shards_are_disjoint_even_and_cover_everything(count: int) -> None:
    items = list(range(50))
    shards = [select_shard(items, index, count) for index in range(1, count + 1)]
    assert sorted(item for shard in shards for item in shard) == items
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.mark.parametrize("text", ["0/3", "4/3", "2-3", "x/y", ""])
def test_bad_shard_specs_are_refused(text: str) -> None:
    with pytest.raises(HarnessError, match="--shard"):
        parse_shard(text)


def test_shards_merged_equal_a_full_run(cli: Cli, golden: Path, tmp_path: Path) -> None:
    full = run_json(cli, golden, tmp_path / "full.json")
    parts = [tmp_path / f"shard{k}.json" for k in (1, 2, 3)]
    for index, part in enumerate(parts, start=1):
        document = run_json(cli, golden, part, "--shard", f"{index}/3")
        assert document["shard"] == f"{index}/3"
    merged_path = tmp_path / "merged.json"
    result = cli("merge", *map(str, parts), "--json", str(merged_path))
    assert result.exit_code == 0, result.out + result.err
    merged = json.loads(merged_path.read_text())

    def essence(cells: list[dict[str, object]]) -> set[tuple[object, ...]]:
        return {(c["config"], c["backend"], c["verdict"], c["max_abs"], c["outputs_sha256"]) for c in cells}

    assert essence(merged["cells"]) == essence(full["cells"])  # type: ignore[arg-type]
    assert [row["config"] for row in merged["matrix"]][::2] == full["configs"]  # suite order restored


def test_merging_two_environments_shows_the_matrix(cli: Cli, golden: Path, tmp_path: Path) -> None:
    one = tmp_path / "one-thread.json"
    two = tmp_path / "two-threads.json"
    run_json(cli, golden, one, "--label", "one-thread")
    run_json(cli, golden, two, "--label", "two-threads", "--threads", "2")
    markdown, html = tmp_path / "merged.md", tmp_path / "merged.html"
    result = cli("merge", str(one), str(two), "--markdown", str(markdown), "--html", str(html))
    assert result.exit_code == 0
    assert "harness merge: 2 reports, 2 environments" in result.out
    row = {line.split()[0]: line.split()[1:] for line in result.out.splitlines() if line.startswith(CONFIGS)}
    assert row["rnn-h8-s0"] == ["=", "="]  # bitwise in both environments, on both backends
    assert row["gru-h8-s0"] == ["~", "="]  # GRU changes bits with the thread count (docs/backends.md); ORT does not
    assert "gru-h8-s0 x eager: tolerance: bitwise groups [one-thread | two-threads]" in result.out
    assert "| `gru-h8-s0` | ~ (one-thread / two-threads) | = |" in markdown.read_text()
    assert "tolerance (one-thread / two-threads)" in html.read_text()


def test_merge_refuses_overlaps_and_bad_files_and_flags_missing_shards(cli: Cli, golden: Path, tmp_path: Path) -> None:
    shard = tmp_path / "s1.json"
    run_json(cli, golden, shard, "--shard", "1/2")
    overlap = cli("merge", str(shard), str(shard))
    assert overlap.exit_code == 2 and "overlapping shards or the same report twice" in overlap.err
    incomplete = cli("merge", str(shard))
    assert incomplete.exit_code == 1 and "INCOMPLETE, missing shards 2/2" in incomplete.out
    broken = tmp_path / "broken.json"
    broken.write_text('{"schema": "harness.report/1"}')
    bad = cli("merge", str(broken))
    assert bad.exit_code == 2
    assert bad.err.startswith(f"harness: error: {broken}: corrupt harness.report/1 document: field $")


def test_junit_lists_one_case_per_cell_with_failures(cli: Cli, golden: Path, tmp_path: Path) -> None:
    perturb_golden(golden, "gru-h8-s0", "h_n", (0, 0, 0), 1e-3)
    junit = tmp_path / "junit.xml"
    result = cli("run", *SELECT, *BACKENDS, "--golden-dir", str(golden), "--junit", str(junit))
    assert result.exit_code == 1
    cases = list(ElementTree.parse(junit).iter("testcase"))
    assert len(cases) == len(CONFIGS) * 2
    failed = {(c.get("classname"), c.get("name")) for c in cases if c.find("failure") is not None}
    assert failed == {("harness.gru-h8-s0", "eager"), ("harness.gru-h8-s0", "onnxruntime-legacy")}
    skipped = {(c.get("classname"), c.get("name")) for c in cases if c.find("skipped") is not None}
    assert skipped == {("harness.lstm-h8-p4-s0", "onnxruntime-legacy")}
    failure = next(c for c in cases if c.get("name") == "eager" and c.find("failure") is not None).find("failure")
    assert failure is not None and "worst at index (0, 0, 0)" in (failure.text or "")


def test_markdown_goes_to_the_github_step_summary(cli: Cli, golden: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = cli("run", "--config", "rnn-h8-s0", "--backend", "eager", "--golden-dir", str(golden))
    assert result.exit_code == 0
    text = summary.read_text()
    assert text.startswith("earlier step\n## harness: OK: 1 cell: 1 identical")
    assert "| `rnn-h8-s0` | identical (=) |" in text


def test_written_json_matches_its_schema_and_a_broken_one_does_not(cli: Cli, golden: Path, tmp_path: Path) -> None:
    document = run_json(cli, golden, tmp_path / "r.json")
    assert schema_problems(document) == []
    document["cells"][0]["verdict"] = "fine"  # type: ignore[index]
    assert schema_problems(document)[0].startswith("field $.cells[0].verdict")


def test_no_progress_bar_off_a_tty(cli: Cli, golden: Path) -> None:
    result = cli("run", "--config", "rnn-h8-s0", "--backend", "eager", "--golden-dir", str(golden))
    assert "cell/s" not in result.err and "it/s" not in result.err


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (apt-get install chromium)")
def test_html_report_renders_its_heatmap_in_headless_chromium(cli: Cli, golden: Path, tmp_path: Path) -> None:
    from PIL import Image

    perturb_golden(golden, "gru-h8-s0", "output", (2, 1, 0), 1e-3)
    html = tmp_path / "report.html"
    assert cli("run", *SELECT, *BACKENDS, "--golden-dir", str(golden), "--html", str(html)).exit_code == 1
    text = html.read_text()
    assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text  # self-contained
    screenshot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,800",
                    f"--screenshot={screenshot}", html.as_uri()],
                   check=True, capture_output=True, timeout=120)
    image = Image.open(screenshot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    count = {colour: n for n, colour in colours}
    assert count.get((0x1a, 0x98, 0x50), 0) > 5000  # identical cells, green
    assert count.get((0xd7, 0x30, 0x27), 0) > 1000  # the DRIFT cells, red
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile2'}",
                          "--dump-dom", html.as_uri()], check=True, capture_output=True, text=True, timeout=120).stdout
    assert dom.count('<td class="cell"') == len(CONFIGS) * 2
    assert 'id="cell-gru-h8-s0-eager"' in dom and "<svg" in dom  # details with the error histogram


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    """On a TTY (a pseudo-terminal with a width) the run draws a tqdm bar on stderr."""
    import fcntl
    import os
    import pty
    import struct
    import sys
    import termios

    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    code = ("import time\nfrom harness.cli.commands import progress_bar\n"
            "with progress_bar(3, quiet=False) as advance:\n"
            "    for _ in range(3):\n        time.sleep(0.15)\n        advance(None)\n")
    process = subprocess.Popen([sys.executable, "-c", code], stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(timeout=60) == 0
    os.close(controller)
    assert b"0/3" in output and b"cell/s" in output
