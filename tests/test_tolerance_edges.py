"""Edges of tolerances (harness.model.tolerance): what a Tolerance accepts, how pairs are given, how one is
described and warned about, and which one a cell gets."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from harness.model.tolerance import BITWISE, DEFAULT_TOLERANCES, Tolerance, ToleranceError, TolerancePolicy


@pytest.mark.parametrize("value", [True, False, "1e-3", None, [1e-3]])
def test_a_tolerance_must_be_a_number(value: Any) -> None:
    with pytest.raises(ToleranceError, match=f"^{re.escape(f'atol must be a number, got {value!r}')}$"):
        Tolerance(atol=value, rtol=0.0)
    with pytest.raises(ToleranceError, match=r"^rtol must be a number"):
        Tolerance(atol=0.0, rtol=value)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, -1e-9, -1])
def test_a_tolerance_must_be_finite_and_not_negative(value: float) -> None:
    with pytest.raises(ToleranceError, match=rf"^rtol must be finite and >= 0, got {float(value)!r}$"):
        Tolerance(atol=1e-6, rtol=value)
    with pytest.raises(ToleranceError, match=r"^atol must be finite and >= 0"):
        Tolerance(atol=value, rtol=1e-6)


def test_an_integer_beyond_float_range_is_no_tolerance() -> None:
    with pytest.raises(ToleranceError, match=r"^atol must be finite and >= 0, got an integer beyond float range$"):
        Tolerance(atol=10**400, rtol=0.0)


@pytest.mark.parametrize("value", [0, 0.0, 1, 1e-300, 1.7976931348623157e308])
def test_any_finite_non_negative_number_is_a_tolerance(value: float) -> None:
    tolerance = Tolerance(atol=value, rtol=value)
    assert (tolerance.atol, tolerance.rtol, tolerance.bitwise, tolerance.equal_nan) == (value, value, False, False)


def test_pair_gives_both_or_neither() -> None:
    assert Tolerance.pair(None, None, where="--atol/--rtol") is None
    assert Tolerance.pair(1e-3, 0, where="x") == Tolerance(atol=1e-3, rtol=0)
    for atol, rtol in ((1e-3, None), (None, 1e-3)):
        with pytest.raises(ToleranceError,
                           match=r"^suite\.toml case 3: atol and rtol go together: give both or neither$"):
            Tolerance.pair(atol, rtol, where="suite.toml case 3")


def test_pair_names_where_a_bad_value_came_from() -> None:
    with pytest.raises(ToleranceError, match=r"^--atol/--rtol: rtol must be finite and >= 0, got -1\.0$") as caught:
        Tolerance.pair(1e-3, -1.0, where="--atol/--rtol")
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize(("tolerance", "text"), [
    (BITWISE, "bitwise"),
    (Tolerance(atol=0.0, rtol=0.0, bitwise=True, equal_nan=True), "bitwise equal_nan"),
    (Tolerance(atol=2e-6, rtol=1e-5), "atol=2e-06 rtol=1e-05"),
    (Tolerance(atol=0, rtol=0.5, equal_nan=True), "atol=0 rtol=0.5 equal_nan"),
])
def test_describe(tolerance: Tolerance, text: str) -> None:
    assert tolerance.describe() == text


@pytest.mark.parametrize(("tolerance", "dtype", "loose"), [
    (Tolerance(atol=2e-3, rtol=0.0), "float32", True),
    (Tolerance(atol=0.0, rtol=2e-3), "float32", True),
    (Tolerance(atol=1e-3, rtol=1e-3), "float32", False),  # exactly the limit is not looser
    (Tolerance(atol=2e-6, rtol=1e-5), "float32", False),
    (Tolerance(atol=2e-3, rtol=0.0), "float64", False),
    (Tolerance(atol=1.0, rtol=1.0, bitwise=True), "float32", False),
])
def test_looser_than_float32_sense(tolerance: Tolerance, dtype: str, loose: bool) -> None:
    assert tolerance.looser_than_float32_sense(dtype) is loose


def test_the_default_table_per_backend_and_dtype() -> None:
    policy = TolerancePolicy()
    assert policy.for_cell("onnxruntime-legacy-cuda", "float32") == Tolerance(atol=1e-5, rtol=1e-5)
    assert policy.for_cell("eager", "float32") == Tolerance(atol=2e-6, rtol=1e-5)
    assert policy.for_cell("eager-cuda", "float64") == Tolerance(atol=1e-12, rtol=1e-10)
    assert [row[2] for row in DEFAULT_TOLERANCES] == [policy.for_cell("x-cuda", "float32"),
                                                      policy.for_cell("x", "float32"), policy.for_cell("x", "float64"),
                                                      policy.for_cell("x", "float16"), policy.for_cell("x", "bfloat16")]
    # Low precision has only a fallback: goldens carry their own calibrated tolerance (model.calibration).
    assert policy.for_cell("x", "float16") == Tolerance(atol=3e-3, rtol=0.0, derivation="uncalibrated default")


def test_a_dtype_without_a_default_is_named() -> None:
    with pytest.raises(KeyError, match="no default tolerance for backend eager and dtype int8"):
        TolerancePolicy().for_cell("eager", "int8")


def test_a_suite_case_tolerance_applies_to_its_config_only_and_the_override_to_every_cell() -> None:
    own = Tolerance(atol=1e-4, rtol=0.0)
    policy = TolerancePolicy(per_config={"gru-h8-s0": own})
    assert policy.for_cell("eager", "float32", "gru-h8-s0") is own
    assert policy.for_cell("eager", "float32", "rnn-h8-s0") == Tolerance(atol=2e-6, rtol=1e-5)
    assert policy.for_cell("eager", "float32") == Tolerance(atol=2e-6, rtol=1e-5)
    override = TolerancePolicy(override=BITWISE, per_config={"gru-h8-s0": own})
    assert override.for_cell("eager", "float32", "gru-h8-s0") is BITWISE


def test_equal_nan_is_added_to_whichever_tolerance_is_chosen() -> None:
    own = Tolerance(atol=1e-4, rtol=0.0)
    policy = TolerancePolicy(per_config={"gru-h8-s0": own}, equal_nan=True)
    assert policy.for_cell("eager", "float32", "gru-h8-s0") == Tolerance(atol=1e-4, rtol=0.0, equal_nan=True)
    assert policy.for_cell("eager", "float64") == Tolerance(atol=1e-12, rtol=1e-10, equal_nan=True)
    assert TolerancePolicy(override=BITWISE, equal_nan=True).for_cell("eager", "float32") == Tolerance(
        atol=0.0, rtol=0.0, bitwise=True, equal_nan=True)
    assert TolerancePolicy().for_cell("eager", "float32").equal_nan is False
    assert own.equal_nan is False  # the chosen tolerance itself is left alone


def test_a_calibrated_tolerance_is_chosen_and_described_with_its_derivation() -> None:
    calibrated = Tolerance(atol=1.5e-3, rtol=0.0, derivation="calibrated: 3 x 0.0004 + 0.00024")
    chosen = TolerancePolicy(equal_nan=True).for_cell("eager", "float16", "rnn-h8-f16-s0", calibrated)
    assert (chosen.atol, chosen.derivation, chosen.equal_nan) == (1.5e-3, calibrated.derivation, True)
    assert chosen.describe() == "atol=0.0015 rtol=0 equal_nan (calibrated: 3 x 0.0004 + 0.00024)"
    assert Tolerance(atol=2e-6, rtol=1e-5).describe() == "atol=2e-06 rtol=1e-05"
