"""The CLI end to end, as a user drives it, on temporary copies of the goldens."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from harness.store.golden import GoldenStore
from tests.conftest import REFERENCE_ID, CliResult, write_suite
from tests.doubles import registered_doubles
from tests.test_case import notebook_outputs

Cli = Callable[..., CliResult]
FAST = ("--backend", "eager", "--backend", "onnxruntime-legacy")


def rewrite_golden(golden_dir: Path, config_id: str, edit: Callable[[dict[str, np.ndarray]], None]) -> None:
    """Re-record a golden with edited tensors through the store (as a golden from elsewhere would be)."""
    store = GoldenStore(golden_dir)
    golden = store.load(config_id)
    tensors = {name: array.copy() for name, array in golden.tensors.items()}
    edit(tensors)
    store.write(type(golden)(**{**golden.__dict__, "tensors": tensors}), force=True)


def test_reference_case_passes_against_its_golden(cli: Cli, golden_copy: Callable[..., Path],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # the table unfolded: one line per config
    golden = golden_copy(REFERENCE_ID)
    result = cli("run", "--config", REFERENCE_ID, "--golden-dir", str(golden), "--table")
    assert result.exit_code == 0, result.out + result.err
    row = next(line for line in result.out.splitlines() if line.startswith(REFERENCE_ID))
    # eager, script, trace, export and compile: bitwise, and unchanged since recorded
    assert row.count("identical (=)") == 5
    assert "OK: 9 cells" in result.out
    assert "torch-compile settings: backend=inductor, mode=None, fullgraph=False, dynamic=False, allow_rnn=True" \
        in result.out


def test_perturbed_golden_is_drift_naming_config_tensor_and_index(
    cli: Cli, golden_copy: Callable[..., Path], tmp_path: Path
) -> None:
    golden = golden_copy(REFERENCE_ID)

    def nudge(tensors: dict[str, np.ndarray]) -> None:
        tensors["output"][1, 2, 3] += np.float32(1e-3)

    rewrite_golden(golden, REFERENCE_ID, nudge)
    report = tmp_path / "report.json"
    result = cli("run", "--config", REFERENCE_ID, "--golden-dir", str(golden), *FAST, "--json", str(report))
    assert result.exit_code == 1
    assert f"{REFERENCE_ID} x eager: DRIFT" in result.out
    assert "output DRIFT" not in result.out  # value drift, not layout
    assert "output drift: 1/120 elements (0.8%) outside tolerance" in result.out
    assert "worst at index (1, 2, 3)" in result.out
    assert "cause: compute changed" in result.out
    assert "the golden is the one away from the mathematics" in result.out  # the golden was nudged, not eager
    document = json.loads(report.read_text())
    cell = next(c for c in document["cells"] if c["backend"] == "eager")
    assert (cell["config"], cell["verdict"], document["exit_code"]) == (REFERENCE_ID, "DRIFT", 1)
    output = next(t for t in cell["tensors"] if t["name"] == "output")
    assert output["worst_index"] == [1, 2, 3] and output["mismatched"] == 1
    assert output["max_abs"] == pytest.approx(1e-3, rel=1e-3)


def test_swapped_layout_is_shape_drift(cli: Cli, golden_copy: Callable[..., Path]) -> None:
    golden = golden_copy(REFERENCE_ID)
    with registered_doubles():  # a backend that returns output batch-first although the config is not
        result = cli("run", "--config", REFERENCE_ID, "--golden-dir", str(golden), "--backend", "eager",
                     "--backend", "test-batch-first")
    assert result.exit_code == 1
    assert f"{REFERENCE_ID} x test-batch-first: SHAPE" in result.out
    assert "output SHAPE: expected (3, 5, 8) float32, got (5, 3, 8) float32" in result.out
    swap = "diagnosis: output == golden.transpose(1, 0, 2) bitwise: the batch and sequence axes are swapped"
    assert swap in result.out


def test_a_golden_whose_layout_disagrees_with_its_config_is_refused(cli: Cli, golden_copy: Callable[..., Path]) -> None:
    golden = golden_copy(REFERENCE_ID)

    def swap_seq_and_batch(tensors: dict[str, np.ndarray]) -> None:
        tensors["output"] = np.ascontiguousarray(tensors["output"].transpose(1, 0, 2))

    rewrite_golden(golden, REFERENCE_ID, swap_seq_and_batch)
    result = cli("run", "--config", REFERENCE_ID, "--golden-dir", str(golden), "--backend", "eager")
    assert result.exit_code == 2 and result.err == ""  # a refused golden costs its own cells: CORRUPT, reported
    reason = next(line for line in result.out.splitlines() if "record it again:" in line)
    assert (f"rnn-h8-s0.json: declares output as (5, 3, 8) float32; config {REFERENCE_ID} implies (3, 5, 8) "
            "float32; record it again: harness record") in reason


def test_truncated_golden_is_exit_2_with_one_line_naming_the_file(
    cli: Cli, golden_copy: Callable[..., Path]
) -> None:
    golden = golden_copy(REFERENCE_ID)
    tensors = next(golden.glob(f"{REFERENCE_ID}.*.npz"))
    tensors.write_bytes(tensors.read_bytes()[:200])
    result = cli("run", "--config", REFERENCE_ID, "--golden-dir", str(golden), *FAST)
    assert result.exit_code == 2 and result.err == ""  # its cells are CORRUPT, each with the one-line reason
    reasons = [line.strip() for line in result.out.splitlines() if "corrupt golden tensors file" in line]
    assert len(reasons) == 1 and reasons[0].startswith(str(tensors))
    assert reasons[0].endswith(f"record it again: harness record --golden-dir {golden} --force --config {REFERENCE_ID}")
    assert result.out.splitlines()[-1].startswith("FAILED: 2 cells: 2 CORRUPT;")


def test_a_missing_golden_is_a_missing_cell_and_every_other_cell_is_judged(
    cli: Cli, golden_copy: Callable[..., Path]
) -> None:
    golden = golden_copy(REFERENCE_ID)  # gru-h8-s0 has no golden here
    result = cli("run", "--config", REFERENCE_ID, "--config", "gru-h8-s0", "--golden-dir", str(golden),
                 "--backend", "eager", "--table")
    assert result.exit_code == 2
    assert re.search(rf"^{REFERENCE_ID}\s+identical", result.out, re.MULTILINE)
    assert re.search(r"^gru-h8-s0\s+MISSING", result.out, re.MULTILINE)
    assert f"record them: harness record --golden-dir {golden} --config gru-h8-s0" in result.out
    assert "1 identical, 1 MISSING" in result.out and "exit 2" in result.out


def test_hints_keep_the_users_own_suite_and_golden_dir(cli: Cli, tmp_path: Path) -> None:
    suite = write_suite(tmp_path / "mine.toml", 'cell = "lstm"\nbatch_first = true\nseed = 6')
    golden = tmp_path / "goldens"
    golden.mkdir()
    result = cli("run", "--suite", str(suite), "--golden-dir", str(golden), "--backend", "eager")
    assert result.exit_code == 2
    hint = next(line for line in result.out.splitlines() if "record them:" in line).split("record them: ")[1]
    assert hint == (f"harness record --suite {suite} --golden-dir {golden} --config rnn-h8-s0 "
                    "--config lstm-h8-bf-s6")
    pasted = cli(*hint.split()[1:], "--reference-only")  # pasted as written, it works
    assert pasted.exit_code == 0, pasted.err
    assert cli("run", "--suite", str(suite), "--golden-dir", str(golden), "--backend", "eager").exit_code == 0


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_a_golden_dir_that_is_missing_or_a_file_is_named_as_such(cli: Cli, tmp_path: Path, kind: str) -> None:
    target = tmp_path / "nowhere"
    if kind == "file":
        target.write_text("not a directory", encoding="utf-8")
    for command in (["run", "--config", REFERENCE_ID], ["prune"], ["show", REFERENCE_ID]):
        result = cli(*command, "--golden-dir", str(target))
        expected = "does not exist" if kind == "missing" else "is not a directory"
        assert result.exit_code == 2, command
        assert result.err.startswith(f"harness: error: golden directory {target} {expected}"), (command, result.err)


@pytest.mark.parametrize(
    ("body", "message"),
    [("[[case]\ncell = 'rnn_tanh'\n", "not valid TOML"),
     ("[[case]]\ncell = 'rnn_tanh'\n[[case]]\ncell = 'gru'\nproj_size = 2\n", "case 2: config"),
     ("[[case]]\ncell = 'rnn_tanh'\nhiden_size = 8\n", "case 1: unknown config key(s) hiden_size")],
)
def test_malformed_suite_is_exit_2_naming_the_file(cli: Cli, tmp_path: Path, body: str, message: str) -> None:
    suite = tmp_path / "bad.toml"
    suite.write_text(body, encoding="utf-8")
    for command in (("list",), ("run", "--golden-dir", str(tmp_path))):
        result = cli(*command, "--suite", str(suite))
        assert result.exit_code == 2
        assert result.err.startswith(f"harness: error: {suite}: ") and message in result.err
        assert len(result.err.strip().splitlines()) == 1


def test_record_refuses_to_overwrite_then_force_prints_what_changed(
    cli: Cli, golden_copy: Callable[..., Path]
) -> None:
    golden = golden_copy(REFERENCE_ID)
    before = {path: path.read_bytes() for path in golden.rglob("*") if path.is_file()}
    refused = cli("record", "--config", REFERENCE_ID, "--golden-dir", str(golden))
    assert refused.exit_code == 2 and "golden exists; pass --force" in refused.err
    assert {path: path.read_bytes() for path in golden.rglob("*") if path.is_file()} == before

    def nudge(tensors: dict[str, np.ndarray]) -> None:
        tensors["h_n"][0, 4, 7] += np.float32(0.01)

    rewrite_golden(golden, REFERENCE_ID, nudge)
    forced = cli("record", "--config", REFERENCE_ID, "--golden-dir", str(golden), "--force")
    assert forced.exit_code == 0
    assert f"rewrote {REFERENCE_ID}" in forced.out
    assert "h_n: 1/40 elements changed" in forced.out
    assert cli("run", "--config", REFERENCE_ID, "--golden-dir", str(golden), *FAST).exit_code == 0


def test_golden_workflow_for_a_new_config(cli: Cli, tmp_path: Path) -> None:
    suite = write_suite(tmp_path / "suite.toml", 'cell = "gru"\nnum_layers = 2\nseed = 11')
    golden = tmp_path / "golden"
    common = ("--suite", str(suite), "--golden-dir", str(golden))
    assert cli("run", *common, *FAST).exit_code == 2  # no goldens yet
    recorded = cli("record", *common)
    assert recorded.exit_code == 0 and "recorded gru-h8-l2-s11" in recorded.out
    assert cli("run", *common, *FAST).exit_code == 0
    again = cli("record", *common)
    assert again.exit_code == 0 and "kept 2 existing goldens" in again.out


def test_unsupported_config_is_reported_not_failed(cli: Cli, golden_copy: Callable[..., Path]) -> None:
    golden = golden_copy("lstm-h8-p4-s0")
    result = cli("run", "--config", "lstm-h8-p4-s0", "--golden-dir", str(golden), *FAST)
    assert result.exit_code == 0
    assert "    1 onnxruntime-legacy: the legacy ONNX exporter cannot export LSTM" in result.out  # its reason, counted
    assert "1 identical, 1 unsupported" in result.out
    verbose = cli("run", "--config", "lstm-h8-p4-s0", "--golden-dir", str(golden), *FAST, "-v")
    assert "lstm-h8-p4-s0 x onnxruntime-legacy: the legacy ONNX exporter cannot export LSTM" in verbose.out


def test_show_json_prints_what_the_notebook_computes(cli: Cli) -> None:
    result = cli("show", REFERENCE_ID, "--json")
    assert result.exit_code == 0
    document = json.loads(result.out)
    output, hidden = notebook_outputs()
    tensors = document["tensors"]
    assert tensors["output"]["shape"] == [3, 5, 8] and tensors["h_n"]["shape"] == [1, 5, 8]
    assert tensors["output"]["axes"] == ["seq", "batch", "directions*hidden"]
    np.testing.assert_array_equal(np.array(tensors["output"]["values"], dtype=np.float32), output)
    np.testing.assert_array_equal(np.array(tensors["h_n"]["values"], dtype=np.float32), hidden)
    assert document["environment"]["packages"]["torch"].startswith("2.")


def test_show_text_and_list_and_env(cli: Cli) -> None:
    shown = cli("show", "lstm-h8-s0")
    assert shown.exit_code == 0 and "c_n: shape (1, 5, 8) = (layers*directions, batch, hidden)" in shown.out
    listed = cli("list")
    assert listed.out.splitlines()[0].startswith(f"{REFERENCE_ID} ")
    assert len(listed.out.splitlines()) >= 41
    env = json.loads(cli("env", "--json").out)
    assert env["torch_threads"] == 1 and "onnxruntime" in env["packages"]
    assert cli("show", "nope").exit_code == 2


def test_tolerance_options_must_come_together(cli: Cli, golden_copy: Callable[..., Path]) -> None:
    golden = golden_copy(REFERENCE_ID)
    result = cli("run", "--golden-dir", str(golden), "--config", REFERENCE_ID, "--atol", "1e-3")
    assert result.exit_code == 2 and "--atol/--rtol: atol and rtol go together" in result.err
    bitwise = cli("run", "--golden-dir", str(golden), "--config", REFERENCE_ID, *FAST, "--bitwise")
    assert bitwise.exit_code == 1 and "x onnxruntime-legacy: DRIFT (tolerance bitwise)" in bitwise.out


def test_python_dash_m_is_the_same_program_and_user_errors_have_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--config", "nope", "--golden-dir", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("harness: error: unknown config 'nope'")
    assert "Traceback" not in result.stderr


def test_backend_family_names_expand_to_their_variants(cli: Cli, golden_copy: Callable[..., Path]) -> None:
    golden = golden_copy(REFERENCE_ID)
    result = cli("run", "--config", REFERENCE_ID, "--golden-dir", str(golden), "--backend", "onnxruntime",
                 "--table")
    assert result.exit_code == 0
    header = next(line for line in result.out.splitlines() if line.startswith("config"))
    assert header.split() == ["config", "onnxruntime-legacy", "onnxruntime-dynamo"]


def test_an_unavailable_backend_asked_for_by_name_is_exit_2(cli: Cli, golden_copy: Callable[..., Path]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is present on this machine: eager-cuda is available")
    golden = golden_copy(REFERENCE_ID)
    result = cli("run", "--config", REFERENCE_ID, "--golden-dir", str(golden), "--backend", "eager-cuda")
    assert result.exit_code == 2 and result.out == ""
    assert result.err.strip() == ("harness: error: backend eager-cuda is unavailable here: "
                                  "no CUDA device (torch.cuda.is_available() is False)")


def test_list_and_help_do_not_import_torch() -> None:
    code = ("import sys, contextlib, io\n"
            "from harness.cli.parser import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main(['list']) == 0\n"
            "print('torch' in sys.modules, 'onnxruntime' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False False"


def test_short_verbose_and_unknown_options_are_said_by_the_subcommand(
    cli: Cli, golden_copy: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    golden = golden_copy(REFERENCE_ID)
    verbose = cli("run", "-v", "--config", REFERENCE_ID, "--golden-dir", str(golden), "--backend", "onnxruntime-legacy")
    assert verbose.exit_code == 0
    assert "Upstream findings (warnings raised by torch / onnx / onnxruntime while preparing):" in verbose.out
    with pytest.raises(SystemExit) as raised:
        cli("run", "--bogus")
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: harness run") and "unrecognized arguments: --bogus" in err


def test_record_without_force_over_a_corrupt_golden_says_it_is_corrupt(
    cli: Cli, golden_copy: Callable[..., Path]
) -> None:
    golden = golden_copy(REFERENCE_ID)
    next(golden.glob("*.npz")).write_bytes(b"truncated")
    result = cli("record", "--config", REFERENCE_ID, "--golden-dir", str(golden))
    assert result.exit_code == 2
    assert "golden exists and is corrupt (" in result.err and "pass --force to overwrite it" in result.err
    forced = cli("record", "--config", REFERENCE_ID, "--golden-dir", str(golden), "--force", "--reference-only")
    assert forced.exit_code == 0 and "the golden it replaced was corrupt:" in forced.out


def test_a_report_path_under_a_file_is_refused_before_the_run(cli: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    result = cli("run", "--config", REFERENCE_ID, "--html", str(blocker / "r.html"))
    assert result.exit_code == 2 and result.out == ""
    assert result.err.strip() == f"harness: error: {blocker / 'r.html'}: {blocker} is not a directory"
