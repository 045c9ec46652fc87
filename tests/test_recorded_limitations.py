"""Recorded limitations and whole upstream errors: a backend that cannot take a user's model at record time is
stored in the golden as unsupported for that model, with the whole upstream error; later runs report it and pass,
say when it runs again (with the command that records it) and fail when it fails otherwise. Each config is
scripted on its own: a failed torch.jit.script never poisons the next config of the same class."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.backends.capture import DETAIL_LIMIT, first_line, full_message
from harness.errors import printable
from harness.judging.limitations import RECORDED_HEADING, RecordedFailure, failed_again, same_failure
from harness.judging.results import CellResult, LimitationStatus
from harness.model.factories import MODEL_PATH_VARIABLE
from harness.reports.upstream_errors import EXPLAINING_LINES, detail_lines, explaining_lines
from harness.session.record import fingerprint_line
from harness.store.golden import Golden, GoldenStore
from harness.verdicts import Verdict
from tests.conftest import CliResult

Cli = Callable[..., CliResult]

MODULE = "rl_global"
IDS = [f"rl-global.build-gru-h6-s{seed}" for seed in (0, 1)]
BACKENDS = ("--backend", "eager,torchscript-script", "--no-cache")  # the cache would serve another class's export
CAUSE = "RuntimeError: python value of type 'float' cannot be used as a value"
SOURCE_LINE = "return out * SCALE, h_n"

# A user's model whose forward reads a Python global: torch.jit.script refuses it. RL_MODE="scriptable" builds a
# class that multiplies by a literal instead (the same numbers); RL_MODE="lambda" one that fails another way.
MODEL = '''
import os

from torch import nn

SCALE = 2.0


class Scaled(nn.Module):
    output_names = ("output", "h_n")

    def __init__(self, hidden):
        super().__init__()
        self.gru = nn.GRU(4, hidden)

    def forward(self, x):
        out, h_n = self.gru(x)
        return out * SCALE, h_n


class Scriptable(Scaled):
    def forward(self, x):
        out, h_n = self.gru(x)
        return out * 2.0, h_n


class Lambda(Scaled):
    def forward(self, x):
        out, h_n = self.gru(x)
        return (lambda y: y * 2.0)(out), h_n


def build(config):
    kind = {"scriptable": Scriptable, "lambda": Lambda}.get(os.environ.get("RL_MODE", ""), Scaled)
    return kind(config.hidden_size)
'''

# Two configs of the same class that differ only in their seed: the same TorchScript type for both.
SUITE = f'''[suite]
name = "rl"

[defaults]
model = "{MODULE}:build"
cell = "gru"
hidden_size = 6

[[case]]
seed = 0

[[case]]
seed = 1
'''


@pytest.fixture
def suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """rl_global.py next to its suite.toml; the model path, sys.path and the module put back after the test."""
    monkeypatch.delenv(MODEL_PATH_VARIABLE, raising=False)
    monkeypatch.delenv("RL_MODE", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    (tmp_path / f"{MODULE}.py").write_text(MODEL, encoding="utf-8")
    path = tmp_path / "suite.toml"
    path.write_text(SUITE, encoding="utf-8")
    return path


def run_json(cli: Cli, suite: Path, golden: Path, *extra: str) -> tuple[CliResult, dict[str, dict[str, object]]]:
    report = suite.parent / "report.json"
    result = cli("run", "--suite", str(suite), "--golden-dir", str(golden), *BACKENDS, "--json", str(report), *extra)
    cells = json.loads(report.read_text(encoding="utf-8"))["cells"]
    return result, {cell["config"]: cell for cell in cells if cell["backend"] == "torchscript-script"}


def test_a_backend_that_cannot_take_the_model_is_recorded_and_later_runs_pass(
        cli: Cli, suite: Path, tmp_path: Path) -> None:
    golden = tmp_path / "golden"
    recorded = cli("record", "--suite", str(suite), "--golden-dir", str(golden), *BACKENDS)
    assert recorded.exit_code == 0, recorded.out + recorded.err
    assert "Can't redefine" not in recorded.out  # the second config of the class shows its own cause
    for config_id in IDS:
        fingerprint = GoldenStore(golden).load(config_id).backend_fingerprints["torchscript-script"]
        assert fingerprint["status"] == "unsupported"
        assert fingerprint["reason"].startswith(CAUSE)
        assert SOURCE_LINE in fingerprint["detail"] and "<--- HERE" in fingerprint["detail"]
    assert recorded.out.count("unsupported for this model, recorded") == 2

    result, cells = run_json(cli, suite, golden)
    assert result.exit_code == 0, result.out
    # Without -v: one line for the reason both configs share, with where in the user's code it failed.
    [group] = [line for line in result.out.splitlines() if line.startswith("    2 torchscript-script: ")]
    assert group.startswith(f"    2 torchscript-script: recorded: {CAUSE}")
    for config_id in IDS:
        cell = cells[config_id]
        assert cell["verdict"] == "unsupported" and not cell["failing"]
        assert cell["recorded_limitation"]["status"] == "reproduced"  # type: ignore[index]
        detail = str(cell["reason_detail"]).split("\n")
        assert detail[0].startswith(CAUSE) and "def forward(self, x):" in detail[2]
        assert detail[-2].strip() == SOURCE_LINE and detail[-1].strip().endswith("<--- HERE")
    # Without -v: the first line and the lines that say where, the marker under the expression it points at.
    lines = result.out.splitlines()
    marker = next(index for index, line in enumerate(lines) if line.endswith("<--- HERE"))
    assert lines[marker - 1].strip() == SOURCE_LINE and lines[marker - 2].strip().startswith(f'File "{tmp_path}')
    assert lines[marker].index("~") == lines[marker - 1].index("SCALE")
    assert "def forward" not in result.out
    verbose = cli("run", "--suite", str(suite), "--golden-dir", str(golden), *BACKENDS, "-v")
    assert verbose.exit_code == 0
    for config_id in IDS:  # -v: one line per cell
        line = next(line for line in verbose.out.splitlines() if line.startswith(f"  {config_id} x torchscript"))
        assert f"unsupported (recorded: {CAUSE}" in line
    assert verbose.out.count("whole upstream error:") == 2 and verbose.out.count("def forward(self, x):") == 2


def test_a_recorded_limitation_that_runs_now_says_so_with_the_command_that_records_it(
        cli: Cli, suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    golden = tmp_path / "golden"
    assert cli("record", "--suite", str(suite), "--golden-dir", str(golden), *BACKENDS).exit_code == 0
    monkeypatch.setenv("RL_MODE", "scriptable")
    result, cells = run_json(cli, suite, golden)
    assert result.exit_code == 0, result.out
    command = (f"harness record --suite {suite} --golden-dir {golden} --config {IDS[0]} --config {IDS[1]} --force")
    assert f"  record them: {command}" in result.out
    assert f"  {IDS[0]} x torchscript-script: now identical; recorded: {CAUSE}" in result.out
    for config_id in IDS:
        assert cells[config_id]["verdict"] == "identical"
        limitation = cells[config_id]["recorded_limitation"]
        assert limitation["status"] == "now runs"  # type: ignore[index]
        assert limitation["record_command"].endswith(f"--config {config_id} --force")  # type: ignore[index]
    again = cli(*command.split()[1:], *BACKENDS)  # the printed command, as printed
    assert again.exit_code == 0, again.out + again.err
    assert GoldenStore(golden).load(IDS[0]).backend_fingerprints["torchscript-script"]["status"] == "ok"
    result, cells = run_json(cli, suite, golden)
    assert result.exit_code == 0 and "record them" not in result.out
    assert cells[IDS[0]]["recorded_limitation"] is None


def test_a_recorded_limitation_that_fails_otherwise_is_an_error_naming_both(
        cli: Cli, suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    golden = tmp_path / "golden"
    assert cli("record", "--suite", str(suite), "--golden-dir", str(golden), *BACKENDS).exit_code == 0
    monkeypatch.setenv("RL_MODE", "lambda")
    result, cells = run_json(cli, suite, golden, "--config", IDS[0])
    assert result.exit_code == 1, result.out
    cell = cells[IDS[0]]
    assert cell["verdict"] == "ERROR"
    assert str(cell["reason"]).startswith("fails differently than recorded with the golden: now ")
    assert "Lambda aren't supported" in str(cell["reason"]) and f"recorded {CAUSE}" in str(cell["reason"])
    detail = str(cell["reason_detail"])
    assert detail.count("<--- HERE") == 2 and f"\n{RECORDED_HEADING}\n" in detail
    assert "(lambda y: y * 2.0)(out)" in result.out and SOURCE_LINE in result.out  # both errors' source lines


def test_torchscript_of_two_configs_of_a_class_that_fails_gives_each_its_own_cause(suite: Path) -> None:
    """torch keeps a type that failed to script half-defined; the next config of the same class raised
    "Can't redefine method: forward" until the backend forgot it."""
    from harness.backends.capture import captured_upstream_messages
    from harness.backends.torchscript import TorchScriptBackend
    from harness.model.case import build_case
    from harness.model.suite import load_suite

    backend = TorchScriptBackend("script")
    for config in load_suite(suite).select(IDS):
        case = build_case(config)
        with captured_upstream_messages(), pytest.raises(RuntimeError, match="python value of type 'float'"):
            backend.prepare(case)


# --- pure pieces --------------------------------------------------------------------------------------------------

TORCHSCRIPT_ERROR = '''
python value of type 'float' cannot be used as a value.:
  File "/models/m.py", line 17
    def forward(self, x):
        out, h_n = self.gru(x)
        return out * SCALE, h_n
                     ~~~~~ <--- HERE
'''


def test_the_whole_message_keeps_every_line_each_printable() -> None:
    detail = full_message(RuntimeError(TORCHSCRIPT_ERROR + "\x1b]8;;evil\x07 tail\r"))
    lines = detail.split("\n")
    assert lines[0] == "RuntimeError: python value of type 'float' cannot be used as a value.:"
    assert lines[0] == first_line(RuntimeError(TORCHSCRIPT_ERROR))
    assert lines[4] == "        return out * SCALE, h_n" and lines[5].endswith("~~~~~ <--- HERE")
    assert lines[6] == "\\x1b]8;;evil\\x07 tail" and all(line == printable(line) for line in lines)
    assert full_message(ValueError("")) == "ValueError: "
    assert full_message(RuntimeError("\x1b[31mred\x1b[0m\nnext")) == "RuntimeError: red\nnext"


def test_the_whole_message_is_bounded_at_a_line() -> None:
    many = full_message(RuntimeError("\n".join(f"line {index:04d}" for index in range(2000))))
    assert len(many) <= DETAIL_LIMIT + 40
    kept = many.split("\n")
    assert kept[-1] == f"... ({2000 - len(kept) + 1} more lines left out)" and kept[-2].startswith("line ")
    one = full_message(RuntimeError("x" * 10000), limit=100)
    assert one == "RuntimeError: " + "x" * 83 + "..."
    two = full_message(RuntimeError("x" * 10000 + "\nsecond"), limit=100)
    assert two.split("\n")[1] == "... (1 more line left out)"


def test_the_lines_that_explain_an_error_are_where_and_the_marker() -> None:
    detail = full_message(RuntimeError(TORCHSCRIPT_ERROR))
    assert explaining_lines(detail) == ['File "/models/m.py", line 17', "      return out * SCALE, h_n",
                                        "                   ~~~~~ <--- HERE"]
    assert explaining_lines("RuntimeError: one line") == []
    assert explaining_lines("E: x\n<--- HERE") == ["<--- HERE"]  # a marker with no line above it
    chain = "E: x\n" + "\n".join(f"  'f{index}' is being compiled since it was called from 'f'" for index in range(20))
    assert len(explaining_lines(chain)) == EXPLAINING_LINES
    assert explaining_lines(f"E: x\nnoise\n{RECORDED_HEADING}\nR: y") == [RECORDED_HEADING]


def test_detail_lines_show_the_explanation_or_everything_under_verbose() -> None:
    detail = full_message(RuntimeError(TORCHSCRIPT_ERROR))
    cell = CellResult(config_id="c", backend="b", verdict=Verdict.ERROR, reason=detail.split("\n")[0],
                      reason_detail=detail)
    short = detail_lines(cell, verbose=False, indent="  ")
    assert short[:1] == ['  File "/models/m.py", line 17'] and len(short) == 4
    assert short[-1] == "  (2 more lines with -v, or in the JSON report's reason_detail)"
    assert detail_lines(cell, verbose=True, indent="  ") == ["  whole upstream error:",
                                                             *(f"    {line}" for line in detail.split("\n"))]
    one_line = CellResult(config_id="c", backend="b", verdict=Verdict.ERROR, reason="E: x", reason_detail="E: x")
    assert detail_lines(one_line, verbose=True) == []


def test_a_failure_is_the_recorded_one_addresses_and_mangled_names_aside() -> None:
    assert same_failure("E: at 0x7f3a in __torch__.___torch_mangle_3.M", "E: at 0x55aa in __torch__.M")
    assert not same_failure("E: python value of type 'float'", "E: python value of type 'int'")
    recorded = RecordedFailure(reason="E: one", detail="E: one\n  where")
    again = failed_again("c", "b", recorded, observed="E: one", detail="E: one\n  here")
    assert (again.verdict, again.reason, again.reason_detail) == (Verdict.UNSUPPORTED, "recorded: E: one",
                                                                  "E: one\n  here")
    assert again.limitation is not None and again.limitation.status is LimitationStatus.REPRODUCED
    other = failed_again("c", "b", recorded, observed="F: two", detail="F: two")
    assert other.verdict is Verdict.ERROR and other.verdict.failing
    assert other.reason == "fails differently than recorded with the golden: now F: two; recorded E: one"
    assert other.reason_detail == f"F: two\n{RECORDED_HEADING}\nE: one\n  where"
    assert other.limitation is not None and other.limitation.status is LimitationStatus.CHANGED
    bare = failed_again("c", "b", RecordedFailure(reason="E: one"), observed="F: two", detail="F: two")
    assert bare.reason_detail == "F: two"  # a golden recorded before the whole error was kept


def test_the_record_line_of_a_recorded_limitation_says_later_runs_pass() -> None:
    assert fingerprint_line({"status": "unsupported", "reason": "E: x", "detail": "E: x"}) == (
        "unsupported for this model, recorded (later runs report it and pass): E: x")
    assert fingerprint_line({"status": "unsupported", "reason": "E: x"}) == "unsupported: E: x"
    assert fingerprint_line({"status": "error", "reason": "E: x"}) == "error: E: x"


def test_a_recorded_failure_is_read_for_a_users_model_only_every_line_printable() -> None:
    import dataclasses

    from harness.judging.limitations import recorded_failure
    from harness.model.config import RnnConfig
    from harness.model.environment import current_environment

    def golden(config: RnnConfig, fingerprint: dict[str, str]) -> Golden:
        return Golden(config=config, tensors={}, weights_sha256="w", inputs_sha256="i", recorded_by="eager",
                      recorded_at="2025-01-01T00:00:00+00:00", environment=current_environment(torch_threads=1),
                      backend_fingerprints={"b": fingerprint})

    user = dataclasses.replace(RnnConfig(), model="m:build")
    crafted = {"status": "unsupported", "reason": "E: \x1b[2Jx", "detail": "E: \x1b[2Jx\n  ::warning::y\r"}
    assert recorded_failure(user, golden(user, crafted), "b") == RecordedFailure(
        reason="E: \\x1b[2Jx", detail="E: \\x1b[2Jx\n  \\x3a:warning::y\\r")
    assert recorded_failure(user, golden(user, {"status": "unsupported", "reason": "E"}), "b") == RecordedFailure(
        reason="E")
    assert recorded_failure(user, golden(user, crafted), "other") is None
    assert recorded_failure(user, golden(user, {"status": "error", "reason": "E"}), "b") is None
    assert recorded_failure(RnnConfig(), golden(RnnConfig(), crafted), "b") is None  # built in: the backends' table
