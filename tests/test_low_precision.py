"""float16 and bfloat16: built, run and stored on every backend that can, judged with a tolerance calibrated
on the float64 oracle per golden; a 1e-2 change in a float16 value still fails."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import torch

from harness.model.calibration import ABSOLUTE_TERM, MULTIPLIER, Calibration, calibrate
from harness.model.config import RnnConfig
from harness.model.inputs import build_inputs
from harness.model.tensors import to_numpy, to_torch
from harness.model.tolerance import Tolerance, TolerancePolicy
from harness.store.golden import GoldenStore
from tests.conftest import CliResult, perturb_golden

F16, BF16 = "rnn-h8-f16-s0", "rnn-h8-bf16-s0"


def test_calibration_is_m_times_eagers_error_to_float64_plus_a_quarter_epsilon() -> None:
    oracle = {"output": np.array([0.5, -0.25], dtype=np.float64), "h_n": np.array([0.125])}
    golden = {"output": np.array([0.5004, -0.25], dtype=np.float16), "h_n": np.array([0.125], dtype=np.float16)}
    calibration = calibrate(golden, oracle, "float16")
    error = float(abs(np.float64(np.float16(0.5004)) - 0.5))
    assert calibration.eager_error == pytest.approx(error)
    assert calibration.atol == pytest.approx(MULTIPLIER * error + 2.0**-12)
    assert ABSOLUTE_TERM == {"float16": 2.0**-12, "bfloat16": 2.0**-9}
    assert Calibration.from_dict(json.loads(json.dumps(calibration.to_dict()))) == calibration
    tolerance = calibration.tolerance()
    assert tolerance.rtol == 0 and tolerance.atol == calibration.atol
    assert tolerance.describe().startswith(f"atol={calibration.atol:.3g} rtol=0 (calibrated: 3 x ")


def test_the_calibrated_tolerance_ranks_below_an_override_and_a_suite_tolerance() -> None:
    calibrated = Tolerance(atol=1e-3, rtol=0.0, derivation="calibrated")
    own, override = Tolerance(atol=5e-3, rtol=0.0), Tolerance(atol=1.0, rtol=0.0)
    assert TolerancePolicy().for_cell("eager", "float16", F16, calibrated) is calibrated
    assert TolerancePolicy(per_config={F16: own}).for_cell("eager", "float16", F16, calibrated) is own
    assert TolerancePolicy(override=override, per_config={F16: own}).for_cell("eager", "float16", F16,
                                                                               calibrated) is override
    assert TolerancePolicy().for_cell("eager", "float16", F16).derivation == "uncalibrated default"


def test_bfloat16_crosses_between_numpy_and_torch_bitwise() -> None:
    inputs = build_inputs(RnnConfig(dtype="bfloat16", initial_state="random"))
    assert {array.dtype for array in inputs.values()} == {np.dtype(ml_dtypes.bfloat16)}
    tensor = to_torch(inputs["h0"])
    assert tensor.dtype == torch.bfloat16
    assert to_numpy(tensor).tobytes() == inputs["h0"].tobytes() and to_numpy(tensor).dtype == inputs["h0"].dtype


def test_committed_low_precision_goldens_store_their_calibration() -> None:
    from tests.conftest import COMMITTED_GOLDEN

    store = GoldenStore(COMMITTED_GOLDEN)
    for config_id, dtype in ((F16, "float16"), (BF16, "bfloat16")):
        golden = store.load(config_id)
        assert golden.calibration is not None and golden.calibration.dtype == dtype
        assert golden.calibration.multiplier == MULTIPLIER
        assert 0 < golden.calibration.eager_error < (1e-3 if dtype == "float16" else 1e-2)
        assert golden.tensors["output"].dtype.name == dtype


def test_a_clean_float16_run_passes_with_a_tolerance_the_report_explains(
        cli: Callable[..., CliResult], golden_copy: Callable[..., Path], tmp_path: Path) -> None:
    golden_dir = golden_copy(F16, BF16)
    report = tmp_path / "r.json"
    result = cli("run", "--golden-dir", str(golden_dir), "--config", F16, "--config", BF16, "--json", str(report),
                 "--quiet", "-v")  # a passing run explains its calibrated tolerances under -v (and when failing)
    assert result.exit_code == 0, result.out + result.err
    assert "Tolerances not from the table (float16/bfloat16: calibrated on the float64 oracle, per golden):" \
        in result.out
    assert f"  {F16}: atol=" in result.out and "(eager float16 to the float64 oracle)" in result.out
    cells = json.loads(report.read_text())["cells"]
    ort = next(cell for cell in cells if (cell["config"], cell["backend"]) == (F16, "onnxruntime-legacy"))
    assert ort["verdict"] == "close" and ort["tolerance"]["derivation"].startswith("calibrated: 3 x ")
    assert ort["max_abs"] <= ort["tolerance"]["atol"]
    bf16_ort = next(cell for cell in cells if (cell["config"], cell["backend"]) == (BF16, "onnxruntime-dynamo"))
    assert bf16_ort["verdict"] == "unsupported" and "no bfloat16 kernels" in bf16_ort["reason"]


def test_a_float16_value_moved_by_1e_2_fails(cli: Callable[..., CliResult], golden_copy: Callable[..., Path]) -> None:
    golden_dir = golden_copy(F16)
    perturb_golden(golden_dir, F16, "output", (1, 2, 3), 1e-2)
    result = cli("run", "--golden-dir", str(golden_dir), "--config", F16, "--backend", "eager", "--quiet")
    assert result.exit_code == 1, result.out
    assert f"{F16} x eager: DRIFT (tolerance atol=" in result.out and "calibrated: 3 x " in result.out


def test_an_edited_calibration_cannot_make_a_drift_pass(cli: Callable[..., CliResult],
                                                       golden_copy: Callable[..., Path]) -> None:
    """A manifest whose calibrated tolerance was loosened is refused (replay relies on it); a run recomputes it
    from the golden's tensors and its own float64 oracle anyway."""
    golden_dir = golden_copy(F16)
    manifest = golden_dir / f"{F16}.json"
    document = json.loads(manifest.read_text())
    document["calibrated_tolerance"]["multiplier"] = 1000.0
    manifest.write_text(json.dumps(document))
    result = cli("replay", "--golden-dir", str(golden_dir), "--config", F16, "--quiet")
    assert result.exit_code == 2 and result.err == "", result.out + result.err  # its cells are CORRUPT, reported
    [refused] = [line for line in result.out.splitlines() if "; record it again: harness record" in line]
    assert "calibrated_tolerance" in refused and "(edited?)" in refused
    assert re.search(r"FAILED: (\d+) cells: \1 CORRUPT; ", result.out)


def test_a_calibration_edited_within_bounds_still_cannot_loosen_a_run(cli: Callable[..., CliResult],
                                                                      golden_copy: Callable[..., Path]) -> None:
    """Tensors moved and the manifest's eager error inflated to the largest accepted (one epsilon) together: the
    run takes the stricter of the recorded and the recomputed calibration, so the tolerance stays below
    3 x 2^-10 + 2^-12 = 3.2e-3 whatever is edited, and a 5e-3 change fails."""
    golden_dir = golden_copy(F16)
    perturb_golden(golden_dir, F16, "output", (1, 2, 3), 5e-3)
    manifest = golden_dir / f"{F16}.json"
    document = json.loads(manifest.read_text())
    document["calibrated_tolerance"]["eager_error_to_float64"] = 2.0**-10  # one epsilon: the largest accepted
    manifest.write_text(json.dumps(document))
    result = cli("run", "--golden-dir", str(golden_dir), "--config", F16, "--backend", "eager", "--quiet")
    assert result.exit_code == 1 and f"{F16} x eager: DRIFT" in result.out, result.out
