"""The environment facts that change RNN bits across machines: ATen's CPU capability, the oneDNN and MKL
builds, onnxruntime's providers. Recorded in goldens and reports; a golden recorded before them says nothing."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import torch

from harness.model.environment import Environment, environment_differences, torch_build_facts
from harness.session.execution import environment_now
from tests.conftest import REFERENCE_ID, CliResult

CONFIG_TEXT = """PyTorch built with:
  - Intel(R) oneAPI Math Kernel Library Version 2024.2-Product Build 20240605 for Intel(R) 64 architecture
  - Intel(R) MKL-DNN v3.12.0 (Git Hash 80afa71049cd69a3df32adcccb623b12cd7baa22)
  - CPU capability usage: AVX512
"""


def test_build_facts_are_read_from_torchs_config_text() -> None:
    assert torch_build_facts(CONFIG_TEXT, "AVX512") == {"cpu_capability": "AVX512", "onednn": "v3.12.0",
                                                        "mkl": "2024.2"}
    assert torch_build_facts("PyTorch built with:\n  - GCC 13.3\n", "DEFAULT") == {
        "cpu_capability": "DEFAULT", "onednn": "none", "mkl": "none"}


def test_the_environment_now_holds_them_from_torch_and_onnxruntime() -> None:
    import onnxruntime

    environment = environment_now(1)
    assert environment.cpu_capability == torch.backends.cpu.get_cpu_capability()
    assert environment.onednn.startswith("v") and environment.mkl[0].isdigit()
    assert environment.ort_providers == tuple(onnxruntime.get_available_providers())
    assert Environment.from_dict(json.loads(json.dumps(environment.to_dict()))) == environment


def test_a_changed_capability_is_a_bit_changing_difference_and_an_unrecorded_one_is_none() -> None:
    now = environment_now(1)
    avx2 = dataclasses.replace(now, cpu_capability="AVX2", onednn="v3.7.1")
    assert environment_differences(avx2, now) == [f"cpu_capability: AVX2 -> {now.cpu_capability}",
                                                  f"onednn: v3.7.1 -> {now.onednn}"]
    older = Environment.from_dict({key: value for key, value in now.to_dict().items()
                                   if key not in ("cpu_capability", "onednn", "mkl", "ort_providers")})
    assert environment_differences(older, now) == []  # recorded before these facts were kept


def test_harness_env_and_new_goldens_record_them(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    shown = cli("env", "--json")
    document = json.loads(shown.out)
    assert document["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert "CPUExecutionProvider" in document["ort_providers"]
    recorded = cli("record", "--config", REFERENCE_ID, "--golden-dir", str(tmp_path), "--reference-only")
    assert recorded.exit_code == 0, recorded.err
    manifest = json.loads((tmp_path / f"{REFERENCE_ID}.json").read_text())
    assert manifest["environment"]["onednn"] == document["onednn"]
    assert manifest["environment"]["mkl"] == document["mkl"]
