"""Regression tests of the harness bugs that the mutation testing of the judging core found
(docs/mutation.md, "Bugs found"): each states the documented behaviour that the bug broke."""

from __future__ import annotations

import io
import re
import struct
import warnings
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from harness.errors import GoldenError
from harness.judging.compare import NonFinite, OracleDistance, compare_tensor, non_finite, oracle_distance
from harness.judging.judge import CaseFacts, Execution, judge_cell
from harness.judging.rnn_checks import growth_line
from harness.model.config import RnnConfig
from harness.model.environment import current_environment
from harness.model.tolerance import BITWISE, Tolerance
from harness.store.files import TensorSpec, read_tensors
from harness.store.golden import Golden
from harness.verdicts import TensorStatus, Verdict

BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
LOOSE = Tolerance(atol=1e-6, rtol=1e-5)


# Bug 1: bfloat16 (a tensor dtype of the store, harness/store/files.py TENSOR_DTYPES) has dtype.kind "V", not
# "f", so ulp_distance raises TypeError, non_finite and oracle_distance skip it. Any bfloat16 tensor that is not
# bitwise equal to its golden crashes compare_tensor (e.g. in the rnn_golden fixture) instead of being judged.


def test_bug1_a_bfloat16_tensor_that_moved_is_judged() -> None:
    expected = np.array([1.0, 2.0], BFLOAT16)
    actual = np.array([1.0, 2.015625], BFLOAT16)  # one bfloat16 ulp above 2
    strict = compare_tensor("y", expected, actual, BITWISE)
    assert (strict.status, strict.mismatched, strict.max_ulps) == (TensorStatus.DRIFT, 1, 1)
    assert compare_tensor("y", expected, actual, Tolerance(atol=0.0, rtol=0.01)).status is TensorStatus.CLOSE


def test_bug1_a_nan_in_a_bfloat16_tensor_is_counted() -> None:
    assert non_finite(np.array([1.0, np.nan], BFLOAT16)) == NonFinite(count=1, first_index=(1,))


def test_bug1_a_bfloat16_result_has_an_oracle_distance() -> None:
    distance = oracle_distance({"output": np.array([1.0, 2.0], BFLOAT16)}, {"output": np.array([1.0, 2.0])})
    assert distance == OracleDistance(max_abs=0.0, max_ulps=0)


# Bug 2: a bfloat16 tensor written by the store cannot be read back. np.save writes ml_dtypes' bfloat16 with
# the header descr '<V2'; read_tensors reads that as a plain void dtype and refuses it against the manifest's
# "bfloat16", so every golden holding bfloat16 (suite or rnn_golden fixture) is "corrupt" the moment after it
# was recorded.


def test_bug2_a_bfloat16_tensor_reads_back(tmp_path: Path) -> None:
    values = np.array([1.0, -2.5, np.inf], BFLOAT16)
    buffer = io.BytesIO()
    np.savez(buffer, y=values)  # what harness.store.files.npz_bytes writes
    path = tmp_path / "t.npz"
    path.write_bytes(buffer.getvalue())
    assert zipfile.ZipFile(path).namelist() == ["y.npy"]
    read = read_tensors(path, {"y": TensorSpec((3,), "bfloat16")}.get)
    assert read["y"].dtype == BFLOAT16 and read["y"].tobytes() == values.tobytes()


def test_bug2_a_two_byte_void_member_is_bfloat16_only(tmp_path: Path) -> None:
    """The '<V2' exception is for a manifest that says bfloat16: a float16 manifest still refuses it."""
    buffer = io.BytesIO()
    np.savez(buffer, y=np.array([1.0, -2.5, np.inf], BFLOAT16))
    path = tmp_path / "t.npz"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(GoldenError, match=r"member 'y.npy' holds \(3,\) \|V2; its manifest declares \(3,\) float16"):
        read_tensors(path, {"y": TensorSpec((3,), "float16")}.get)


# Bug 3: harness/judging/compare.py _value_fields silences only "invalid" floating-point errors. Comparing the
# largest float64 values of opposite sign overflows the subtraction, and a valid finite tolerance (Tolerance
# accepts any finite rtol) overflows atol + rtol * |expected|: numpy warns "overflow encountered in ...".
# Under -W error, pytest's filterwarnings = error, or a user's pytest using the rnn_golden fixture, the comparison
# raises RuntimeWarning instead of reporting DRIFT (max_abs inf) or CLOSE.


def test_bug3_the_largest_float64_values_of_opposite_sign_compare_without_a_warning() -> None:
    big = np.finfo(np.float64).max
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = compare_tensor("x", np.array([big]), np.array([-big]), LOOSE)
    assert (result.status, result.max_abs, result.max_ulps) == (TensorStatus.DRIFT, np.inf, 2 * 0x7FEFFFFFFFFFFFFF)


def test_bug3_a_tolerance_bound_that_overflows_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = compare_tensor("x", np.array([2.0]), np.array([3.0]), Tolerance(atol=0.0, rtol=1e308))
    assert result.status is TensorStatus.CLOSE


# Bug 4: harness/judging/rnn_checks.py growth_line treats "first quarter error 0, last quarter > 0" as growth
# (`or first == 0 < last`) but then formats the ratio last / first: ZeroDivisionError. A DRIFT whose early time
# steps are bitwise equal and whose later steps moved (sequences of 4+ steps) crashes judge_cell's analysis, so
# `harness run` dies with a traceback instead of reporting the drift.


def test_bug4_an_error_that_appears_after_an_exact_first_quarter_grows() -> None:
    line = growth_line(np.array([0.0, 0.0, 0.0, 1e-3]))
    assert line.startswith("error by time step: first quarter mean 0.0e+00, last quarter mean 1.0e-03")
    assert line.endswith("grows along the sequence (from exact at the start): the signature of a recurrence bug")


def test_bug4_judging_a_late_drift_reports_it() -> None:
    config = RnnConfig(input="random", seq_len=4, batch=1)
    golden_tensors = {"output": np.zeros((4, 1, 8), np.float32), "h_n": np.zeros((1, 1, 8), np.float32)}
    late = {"output": golden_tensors["output"].copy(), "h_n": golden_tensors["h_n"].copy()}
    late["output"][3, 0, 0] = late["h_n"][0, 0, 0] = 1e-3  # the last step drifts; h_n stays consistent
    golden = Golden(config=config, tensors=golden_tensors, weights_sha256="w", inputs_sha256="i", recorded_by="eager",
                    recorded_at="2026-01-01T00:00:00+00:00", environment=current_environment(torch_threads=1))
    facts = CaseFacts(config=config, inputs_sha256="i", weights_sha256="w", oracle={},
                      variant_oracle=lambda variant: {})
    execution = Execution(first=late, second={k: v.copy() for k, v in late.items()}, notes=(), prepare_seconds=0.0,
                          run_seconds=0.0)
    cell = judge_cell(facts, "eager", golden, execution, LOOSE)
    assert cell.verdict is Verdict.DRIFT and "grows along the sequence" in cell.analysis[0]


# Bug 5: harness/store/files.py read_tensors reports a damaged zip as f"corrupt golden tensors file: {error or
# type(error).__name__}", meaning to name the exception when its message is empty. An exception object is always
# true, so the name never appears: a member whose data stops before its declared size (zipfile raises a bare
# EOFError) is reported as "<path>: corrupt golden tensors file: " with nothing after the colon.


def test_bug5_a_damaged_zip_with_an_empty_error_message_still_says_what_happened(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.zeros(100, np.float32))
    member = buffer.getvalue()[:-360]  # the header and 40 of the 400 data bytes
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as writer:
        writer.writestr("y.npy", member)
    data = bytearray(archive.getvalue())
    central = data.index(b"PK\x01\x02")  # the central directory claims the 360 missing bytes too
    data[central + 20:central + 28] = struct.pack("<II", len(member) + 360, len(member) + 360)
    path = tmp_path / "t.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(GoldenError, match=f"^{re.escape(str(path))}: corrupt golden tensors file: EOFError$"):
        read_tensors(path, {"y": TensorSpec((100,), "float32")}.get)
