"""The reports a person reads, through the real command line (issue 19's acceptance): a passing run fits a screen,
one corrupt golden costs only its own cells, a failing --bitwise run prints the command that accepts exactly its
failing configs (in the Markdown and JSON reports too), and a weights change in a user's model is one finding."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import REPO, CliResult, perturb_golden

HARNESS = (sys.executable, "-m", "harness")
CONFIGS = ("rnn-h8-s0", "lstm-h8-s0", "gru-h8-s0")  # in suite order
SELECT = tuple(argument for config_id in CONFIGS for argument in ("--config", config_id))
EXAMPLE = REPO / "examples" / "hello-char-model"
WIDTH = 120
PASSING = ("identical", "close")
DETAIL = re.compile(r"^  \S+ x \S+: [A-Z]+")  # the first line of one failing cell's details


def harness(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m harness ARGS` in a fresh process, as a user runs it, off a terminal at 120 columns."""
    environment = {**os.environ, "COLUMNS": str(WIDTH)}
    return subprocess.run([*HARNESS, *args], capture_output=True, text=True, check=False, cwd=cwd, env=environment,
                          timeout=300)


def shown(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def accept_line(stdout: str) -> str:
    """The command of the report's "Accept these results" line."""
    [line] = [line for line in stdout.splitlines() if line.startswith("Accept these results")]
    return line.split(": ", 1)[1]


def test_a_passing_run_fits_a_screen_and_v_gives_the_table(cli: Callable[..., CliResult],
                                                            golden_copy: Callable[..., Path]) -> None:
    golden = golden_copy(*CONFIGS)
    backends = ("--backend", "eager,torchscript-trace,onnxruntime-legacy")
    result = harness("run", *SELECT, "--golden-dir", str(golden), *backends)
    assert result.returncode == 0 and result.stderr == "", shown(result)
    lines = result.stdout.splitlines()
    assert len(lines) <= 40 and max(map(len, lines)) <= WIDTH, shown(result)
    assert re.fullmatch(r"OK: 9 cells: (\d+ identical, \d+ close|9 identical); .* exit 0", lines[-1])
    assert [line.split()[:3] for line in lines if line.split()[:1] == ["eager"]] == [["eager", "3", "0"]]
    assert not any(line.startswith(CONFIGS) for line in lines)  # no table: one line per backend instead
    assert "Accept these results" not in result.stdout
    verbose = cli("run", *SELECT, "--golden-dir", str(golden), *backends, "-v")
    assert verbose.exit_code == 0
    rows = [line for line in verbose.out.splitlines() if line.startswith(CONFIGS)]
    assert len(rows) == 3 and all(row.count("(=)") == 3 for row in rows), verbose.out  # each cell, unchanged


def test_one_corrupt_golden_among_three_costs_only_its_cells_exit_2_with_the_re_record_command(
        golden_copy: Callable[..., Path], tmp_path: Path) -> None:
    golden = golden_copy(*CONFIGS)
    [tensors] = golden.glob("lstm-h8-s0.*.npz")
    tensors.write_bytes(tensors.read_bytes()[:300])
    markdown, report = tmp_path / "summary.md", tmp_path / "report.json"
    result = harness("run", *SELECT, "--golden-dir", str(golden), "--backend", "eager,onnxruntime-legacy",
                     "--markdown", str(markdown), "--json", str(report))
    assert result.returncode == 2 and result.stderr == "" and "Traceback" not in result.stdout, shown(result)
    lines = result.stdout.splitlines()
    summary = next(line for line in lines if line.startswith("FAILED: "))
    assert re.fullmatch(r"FAILED: 6 cells: (\d+ identical, )?(\d+ close, )?2 CORRUPT; .* exit 2", summary), summary
    for backend in ("eager", "onnxruntime-legacy"):  # the other two configs are judged on every backend
        [counts] = [line.split()[1:6] for line in lines if line.split()[:1] == [backend]]
        identical, close, unsupported, slow, failing = map(int, counts)
        assert (identical + close, unsupported, slow, failing) == (2, 0, 0, 1), shown(result)
    record = f"harness record --golden-dir {golden} --force --config lstm-h8-s0"
    [reason] = [line.strip() for line in lines if "corrupt golden tensors file" in line]
    assert reason.startswith(f"{tensors}: corrupt golden tensors file")
    assert reason.endswith(f"record it again: {record}")
    assert any(line.startswith("[1] golden of lstm-h8-s0 refused (corrupt): 2 cells (CORRUPT)") for line in lines)
    assert accept_line(result.stdout) == record
    document = json.loads(report.read_text(encoding="utf-8"))
    verdicts = {(cell["config"], cell["backend"]): cell["verdict"] for cell in document["cells"]}
    assert len(verdicts) == 6 and all(verdict == "CORRUPT" if config_id == "lstm-h8-s0" else verdict in PASSING
                                      for (config_id, _), verdict in verdicts.items()), verdicts
    assert document["exit_code"] == 2 and document["accept_command"] == record
    table = markdown.read_text(encoding="utf-8")  # the Markdown report always carries the whole table
    assert all(re.search(rf"^\| `{config_id}` \| (identical|close)[^|]* \| (identical|close)[^|]* \|$", table,
                         re.MULTILINE) for config_id in ("rnn-h8-s0", "gru-h8-s0")), table
    assert record in table


def test_a_failing_bitwise_run_prints_the_command_that_accepts_exactly_its_failing_configs(
        cli: Callable[..., CliResult], golden_copy: Callable[..., Path], tmp_path: Path) -> None:
    golden = golden_copy(*CONFIGS)
    for config_id in ("rnn-h8-s0", "gru-h8-s0"):  # a few ulps: inside the tolerance, not bitwise
        perturb_golden(golden, config_id, "output", (0, 1, 2), 1e-7)
    markdown, report = tmp_path / "summary.md", tmp_path / "report.json"
    run = ("run", *SELECT, "--golden-dir", str(golden), "--backend", "eager", "--bitwise")
    result = harness(*run, "--markdown", str(markdown), "--json", str(report))
    assert result.returncode == 1 and result.stderr == "", shown(result)
    accept = f"harness record --golden-dir {golden} --force --config rnn-h8-s0 --config gru-h8-s0"
    assert accept_line(result.stdout) == accept
    assert "DRIFT (tolerance bitwise)" in result.stdout
    assert accept in markdown.read_text(encoding="utf-8")
    assert json.loads(report.read_text(encoding="utf-8"))["accept_command"] == accept
    assert cli(*run).exit_code == 1  # the same run in-process, then the pasted command accepts it
    pasted = cli(*shlex.split(accept)[1:], "--reference-only")
    assert pasted.exit_code == 0, pasted.out + pasted.err
    assert cli(*run).exit_code == 0


def test_a_weights_change_in_a_users_model_is_one_finding_listing_its_cells(tmp_path: Path) -> None:
    example = tmp_path / "hello"
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns("__pycache__"))
    factory = example / "hello_char_model.py"
    source = factory.read_text(encoding="utf-8")
    built = ("    return CharLM(hidden_size=config.hidden_size, num_layers=config.num_layers, embedding=8, "
             "lookup=False)\n")
    assert source.count(built) == 1
    factory.write_text(source.replace(built, built.replace("    return ", "    model = ") +
                                      "    with torch.no_grad():  # one recurrent weight moved by 1e-2\n"
                                      "        model.lstm.weight_hh_l0[0, 0] += 1e-2\n"
                                      "    return model\n"), encoding="utf-8")
    configs = ("hello-char-model.build-lstm-h16-l2-s0", "hello-char-model.build-lstm-h16-l2-gauss-t6b4-s0")
    suite, golden = example / "suite.toml", example / "golden"
    result = harness("run", "--suite", str(suite), "--golden-dir", str(golden),
                     *(argument for config_id in configs for argument in ("--config", config_id)),
                     "--backend", "eager,torchscript-trace")
    assert result.returncode == 1 and result.stderr == "", shown(result)
    lines = result.stdout.splitlines()
    headings = [line for line in lines if re.match(r"^\[\d+\] ", line)]
    assert len(headings) == 1, shown(result)
    assert headings[0].startswith("[1] weights changed since the golden (lstm.weight_hh_l0)")  # harness.golden/3
    assert headings[0].endswith(": 4 cells (DRIFT): " + "; ".join(f"{config_id} (eager, torchscript-trace)"
                                                                    for config_id in configs))
    assert sum(1 for line in lines if DETAIL.match(line)) == 1  # one representative's details, not 4 panels
    assert sum(1 for line in lines if "|error| histogram:" in line) <= 3  # that cell's tensors only (3 outputs)
    assert accept_line(result.stdout) == (f"harness record --suite {suite} --golden-dir {golden} --force "
                                          + " ".join(f"--config {config_id}" for config_id in configs))
