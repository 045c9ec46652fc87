"""The pytest plugin, driven with pytester as a user would drive pytest."""

from __future__ import annotations

import dataclasses
import shlex
import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest

import harness.backends.eager
import harness.backends.onnx_runtime
import harness.backends.torchscript
import harness.pytest_plugin.fixture
import harness.pytest_plugin.items
import harness.session.core
import harness.session.fixture
from harness.model.suite import load_suite
from harness.store.golden import GoldenStore
from tests.conftest import COMMITTED_GOLDEN, REFERENCE_ID, perturb_golden

# pytester's in-process runs drop modules first imported inside them; torch cannot be imported twice
# in one process, so everything the plugin imports is imported here, outside the inner runs.
IMPORTED_OUTSIDE = (harness.backends.eager, harness.backends.onnx_runtime, harness.backends.torchscript,
                    harness.pytest_plugin.fixture, harness.pytest_plugin.items, harness.session.core,
                    harness.session.fixture)

FAST = ("--harness-backend", "eager,onnxruntime-legacy")
SELECTED = ("rnn-h8-s0", "gru-h8-s0", "lstm-h8-p4-s0")
K = " or ".join(SELECTED)


def copy_goldens(target: Path, *config_ids: str) -> Path:
    target.mkdir(exist_ok=True)
    for config_id in config_ids:
        for path in COMMITTED_GOLDEN.glob(f"{config_id}.*"):
            shutil.copy2(path, target / path.name)
        for path in (COMMITTED_GOLDEN / "artifacts").glob(f"{config_id}.*"):
            (target / "artifacts").mkdir(exist_ok=True)
            shutil.copy2(path, target / "artifacts" / path.name)
    return target


def nudge(golden_dir: Path, config_id: str) -> None:
    perturb_golden(golden_dir, config_id, "output", (0, 1, 2), 1e-3)


def test_items_per_config_and_backend_with_readable_ids_and_junit(pytester: pytest.Pytester) -> None:
    golden = copy_goldens(pytester.path / "golden", *SELECTED)
    before = {path: path.read_bytes() for path in golden.rglob("*") if path.is_file()}
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest("--harness", *FAST, "-k", K, f"--junitxml={junit}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=5, xfailed=1)  # p4 on the legacy exporter is a known limitation
    configs = len(load_suite(None).configs)
    result.stdout.fnmatch_lines([f"collected {2 * configs} items / {2 * configs - 6} deselected / 6 selected"])
    names = {case.get("name") for case in ElementTree.parse(junit).iter("testcase")}
    assert names == {f"test_golden[{c}-{b}]" for c in SELECTED for b in ("eager", "onnxruntime-legacy")}
    # a plain run writes nothing
    assert {path: path.read_bytes() for path in golden.rglob("*") if path.is_file()} == before


def test_a_perturbed_golden_fails_with_the_cli_report(pytester: pytest.Pytester) -> None:
    golden = copy_goldens(pytester.path / "golden", REFERENCE_ID)
    nudge(golden, REFERENCE_ID)
    result = pytester.runpytest("--harness", "--harness-backend", "eager", "-k", REFERENCE_ID)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        f"*{REFERENCE_ID} x eager: DRIFT (tolerance atol=2e-06 rtol=1e-05); cause: compute changed*",
        "*worst at index (0, 1, 2)*",
    ])
    rerun = pytester.runpytest("--harness", "--harness-backend", "eager", "--lf")
    rerun.assert_outcomes(failed=1)


def test_missing_goldens_fail_until_updated_and_force_rewrites(pytester: pytest.Pytester) -> None:
    args = ("--harness", "--harness-backend", "eager", "-k", REFERENCE_ID)
    golden = pytester.path / "golden"
    no_directory = pytester.runpytest(*args)
    assert no_directory.ret == pytest.ExitCode.USAGE_ERROR
    no_directory.stderr.fnmatch_lines([f"*golden directory {golden} does not exist*"])
    golden.mkdir()
    missing = pytester.runpytest(*args)
    missing.assert_outcomes(failed=1)
    missing.stdout.fnmatch_lines([f"*no golden *{REFERENCE_ID}.json; record it: pytest --harness "  # fnmatch: [[] is [
                                  f"--harness-golden-dir={golden} --harness-update -k '[[]{REFERENCE_ID}-'"])
    recorded = pytester.runpytest(*args, "--harness-update")
    recorded.assert_outcomes(passed=1)
    recorded.stdout.fnmatch_lines(["*harness: goldens written*", f"recorded {golden / REFERENCE_ID}.json"])
    nudge(golden, REFERENCE_ID)
    pytester.runpytest(*args, "--harness-update").assert_outcomes(failed=1)  # existing: not rewritten
    rewritten = pytester.runpytest(*args, "--harness-update", "--harness-force-update")
    rewritten.assert_outcomes(passed=1)
    rewritten.stdout.fnmatch_lines([f"rewritten {golden / REFERENCE_ID}.json"])
    pytester.runpytest(*args).assert_outcomes(passed=1)


def test_failing_items_and_the_summary_say_the_command_that_accepts_them(pytester: pytest.Pytester) -> None:
    golden = copy_goldens(pytester.path / "golden", *SELECTED)
    for config_id in ("rnn-h8-s0", "gru-h8-s0"):
        nudge(golden, config_id)
    args = ("--harness", "--harness-backend", "eager", f"--harness-golden-dir={golden}", "-k", K)
    result = pytester.runpytest(*args)
    result.assert_outcomes(failed=2, passed=1)
    update = f"pytest --harness --harness-golden-dir={golden} --harness-update --harness-force-update -k"
    each = [line.split("accept it (re-record the golden): ", 1)[1] for line in result.outlines
            if "accept it (re-record the golden): " in line]
    # (with CI set, pytest's short summary repeats each failure's message whole: the same lines again)
    assert sorted(set(each)) == sorted(f"{update} '[{config_id}-'" for config_id in ("rnn-h8-s0", "gru-h8-s0"))
    result.stdout.fnmatch_lines(["*harness: accept these results*"])
    [summary] = [line for line in result.outlines if line.startswith("re-record the goldens of the 2 failing")]
    command = summary.split(": ", 1)[1]
    assert command == f"{update} '[rnn-h8-s0- or [gru-h8-s0-'"  # the configs in the order their items ran
    pasted = pytester.runpytest(*shlex.split(command)[1:], "--harness-backend", "eager")
    pasted.assert_outcomes(passed=2)  # exactly the failing configs, rewritten
    pytester.runpytest(*args).assert_outcomes(passed=3)


def test_a_corrupt_golden_fails_only_its_own_items_with_the_command_that_records_it(
        pytester: pytest.Pytester) -> None:
    golden = copy_goldens(pytester.path / "golden", REFERENCE_ID, "gru-h8-s0")
    [tensors] = golden.glob("gru-h8-s0.*.npz")
    tensors.write_bytes(tensors.read_bytes()[:300])
    result = pytester.runpytest("--harness", "--harness-backend", "eager", f"--harness-golden-dir={golden}",
                                "-k", f"{REFERENCE_ID} or gru-h8-s0")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*gru-h8-s0 x eager: CORRUPT*", f"*{tensors}: corrupt golden tensors file*record it "
                                 f"again: pytest --harness --harness-golden-dir={golden} --harness-update "
                                 "--harness-force-update -k '[[]gru-h8-s0-'"])


EXPORTS_UNDER_PYTEST = """
import torch

from harness.backends import get_backend
from harness.model.case import build_case
from harness.model.config import RnnConfig
from harness.session.artifacts import obtain


def test_the_harness_exports():
    obtain(build_case(RnnConfig()), get_backend("torch-export"), None)  # no cache: exported here
    assert False, "failing, so that pytest shows the log it captured"


def test_torch_export_alone():
    torch.export.export(torch.nn.GRU(3, 4), (torch.randn(5, 2, 3),))
    assert False, "failing, so that pytest shows the log it captured"
"""


def test_a_failing_test_shows_no_upstream_debug_logging_from_the_harness_exports(pytester: pytest.Pytester) -> None:
    """torch's structured trace log answers pytest's log capture at DEBUG (the second test shows it does): the
    harness holds it quiet while it exports (the first shows nothing)."""
    pytester.makepyfile(test_exports=EXPORTS_UNDER_PYTEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")  # a fresh process: torch.export imported there
    result.assert_outcomes(failed=2)
    harness_part, alone = result.stdout.str().split("_ test_torch_export_alone _")
    assert "_ test_the_harness_exports _" in harness_part and "torch.__trace" not in harness_part
    assert "DEBUG    torch.__trace" in alone


def test_a_path_option_given_apart_from_its_value_is_refused(pytester: pytest.Pytester) -> None:
    elsewhere = pytester.path / "elsewhere"
    result = pytester.runpytest("--harness", "--harness-golden-dir", str(elsewhere))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*write --harness-golden-dir={elsewhere} (with '='): given apart, pytest takes*"])


def test_stale_goldens_are_reported_and_fail_under_strict(pytester: pytest.Pytester) -> None:
    golden = copy_goldens(pytester.path / "golden", REFERENCE_ID)
    stale = GoldenStore(golden).load(REFERENCE_ID)
    other = dataclasses.replace(stale, config=dataclasses.replace(stale.config, hidden_size=5), artifacts={})
    GoldenStore(golden).write(other)  # rnn-h5-s0: in no suite
    args = ("--harness", "--harness-backend", "eager", "-k", REFERENCE_ID)
    lenient = pytester.runpytest(*args)
    lenient.assert_outcomes(passed=1)
    assert lenient.ret == 0
    lenient.stdout.fnmatch_lines(["*stale goldens*",
                                  "*1 golden in * used by no config of the suite*harness prune*--yes",
                                  "*rnn-h5-s0*"])
    strict = pytester.runpytest(*args, "--harness-strict")
    assert strict.ret == 1


def test_shards_partition_the_items(pytester: pytest.Pytester) -> None:
    collected = []
    for shard in ("1/3", "2/3", "3/3"):
        result = pytester.runpytest("--harness", "--harness-backend", "eager", "--harness-shard", shard,
                                    "--collect-only", "-q")
        collected.append({line for line in result.outlines if "test_golden[" in line})
    union = set().union(*collected)
    assert len(union) == sum(len(part) for part in collected) == len(load_suite(None).configs)


def test_xdist_runs_the_items_in_parallel(pytester: pytest.Pytester) -> None:
    copy_goldens(pytester.path / "golden", *SELECTED)
    result = pytester.runpytest_subprocess("--harness", *FAST, "-k", K, "-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=5, xfailed=1)


USER_TEST = '''
import torch


def build_and_run():
    torch.manual_seed(7)
    gru = torch.nn.GRU(input_size=3, hidden_size=6, num_layers=2).eval()
    x = torch.linspace(-1, 1, 4 * 2 * 3).reshape(4, 2, 3)
    with torch.no_grad():
        return gru(x)


def test_my_gru(rnn_golden):
    rnn_golden.check("my-gru", build_and_run())
'''


def test_a_user_project_adopts_the_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TEST)
    first = pytester.runpytest()
    first.assert_outcomes(failed=1)
    first.stdout.fnmatch_lines(["*no golden*my-gru.json; record it with pytest --harness-update*"])
    pytester.runpytest("--harness-update").assert_outcomes(passed=1)
    pytester.runpytest().assert_outcomes(passed=1)
    golden = pytester.path / "rnn_golden"  # next to the test file
    tensors_file = next(golden.glob("my-gru.*.npz"))
    manifest = golden / "my-gru.json"
    arrays = dict(np.load(tensors_file))
    arrays["h_n"] = arrays["h_n"].copy()
    arrays["h_n"][1, 0, 4] += np.float32(5e-4)
    import json

    from harness.model.hashing import array_sha256
    from harness.store.files import atomic_write, npz_bytes
    document = json.loads(manifest.read_text())
    document["tensors"]["h_n"]["sha256"] = array_sha256(arrays["h_n"])
    atomic_write(tensors_file, npz_bytes(arrays))
    manifest.write_text(json.dumps(document))
    failed = pytester.runpytest()
    failed.assert_outcomes(failed=1)
    failed.stdout.fnmatch_lines([
        "*golden 'my-gru' (*my-gru.json): DRIFT (tolerance atol=2e-06 rtol=1e-05)*",
        "*h_n    drift: 1/24 elements (4.2%) outside tolerance*",
        "*worst at index (1, 0, 4)*",
        "*pytest --harness-update --harness-force-update*",
    ])
    assert "Traceback" not in failed.stdout.str()


TWO_TESTS_ONE_NAME = '''
import torch


def outputs(seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        return torch.nn.RNN(4, 8).eval()(torch.ones(3, 5, 4))


def test_first(rnn_golden):
    rnn_golden.check("shared", outputs(0))


def test_second(rnn_golden):
    rnn_golden.check("shared", outputs(1))
'''


def test_two_tests_using_one_golden_name_fail_naming_both(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=TWO_TESTS_ONE_NAME)
    result = pytester.runpytest("--harness-update")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*shared.json is used by two tests: test_user.py::test_first and "
                                 "test_user.py::test_second; give each check its own name*"])


MODEL_TEST = '''
import torch


def test_model_form(rnn_golden):
    torch.manual_seed(int("SEED"))
    lstm = torch.nn.LSTM(4, 6).eval()
    rnn_golden.check("my-lstm", model=lstm, inputs=torch.ones(3, 2, 4))
'''


def test_fixture_goldens_have_their_own_directory_and_the_model_form_attributes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=MODEL_TEST.replace("SEED", "0"))
    suite_dir = pytester.path / "suite-goldens"
    pytester.runpytest("--harness-update", f"--harness-golden-dir={suite_dir}").assert_outcomes(passed=1)
    assert (pytester.path / "rnn_golden" / "my-lstm.json").is_file()  # next to the test file
    assert not suite_dir.exists()  # --harness-golden-dir is for suite goldens only
    pytester.makepyfile(test_user=MODEL_TEST.replace("SEED", "1"))  # other weights, same inputs
    drift = pytester.runpytest()
    drift.assert_outcomes(failed=1)
    drift.stdout.fnmatch_lines(["*golden 'my-lstm' (*my-lstm.json): DRIFT (tolerance atol=2e-06 rtol=1e-05); "
                                "cause: weights changed*"])
    moved = pytester.path / "elsewhere"
    pytester.runpytest("--harness-update", f"--harness-fixture-golden-dir={moved}").assert_outcomes(passed=1)
    assert (moved / "my-lstm.json").is_file()


def test_the_plugin_takes_the_tolerance_options(pytester: pytest.Pytester) -> None:
    golden = copy_goldens(pytester.path / "golden", REFERENCE_ID)
    nudge(golden, REFERENCE_ID)  # 1e-3 at one element
    args = ("--harness", "--harness-backend", "eager", "-k", REFERENCE_ID)
    pytester.runpytest(*args).assert_outcomes(failed=1)
    loose = pytester.runpytest(*args, "--harness-atol", "2e-3", "--harness-rtol", "0")
    loose.assert_outcomes(passed=1)
    alone = pytester.runpytest(*args, "--harness-atol", "2e-3")
    assert alone.ret == pytest.ExitCode.USAGE_ERROR
    alone.stderr.fnmatch_lines(["*--atol/--rtol: atol and rtol go together: give both or neither*"])
    bitwise = pytester.runpytest(*args, "--harness-atol", "1", "--harness-rtol", "1", "--harness-bitwise")
    assert bitwise.ret == pytest.ExitCode.USAGE_ERROR  # --bitwise excludes a tolerance
    bitwise = pytester.runpytest(*args, "--harness-bitwise")
    bitwise.assert_outcomes(failed=1)
    bitwise.stdout.fnmatch_lines(["*DRIFT (tolerance bitwise)*"])
