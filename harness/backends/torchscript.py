"""TorchScript: the module scripted (through a thin wrapper) or traced, run on the CPU."""

from __future__ import annotations

from typing import Literal

import torch

from harness.backends.base import Availability
from harness.backends.eager import TorchModel
from harness.backends.wrappers import flat_module_for
from harness.model.case import Case
from harness.model.config import RnnConfig

Mode = Literal["script", "trace"]


class TorchScriptBackend:
    """``torch.jit.script`` or ``torch.jit.trace`` of the flat wrapper module.

    Scripting ``nn.RNN`` directly yields a module without ``forward`` in torch 2.13, so the wrapper
    (whose ``forward`` calls the RNN) is what gets scripted.
    """

    device = "cpu"
    uses_torch_kernels = True

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self.name = f"torchscript-{mode}"
        self.description = f"torch.jit.{mode} of a wrapper module, CPU"

    def availability(self) -> Availability:
        if not hasattr(torch, "jit"):
            return Availability(available=False, reason="this torch has no torch.jit")
        return Availability(available=True)

    def known_limitation(self, config: RnnConfig) -> str | None:
        return None

    def is_slow(self, config: RnnConfig) -> bool:
        return False

    def prepare(self, case: Case) -> TorchModel:
        wrapper = flat_module_for(case)
        if self.mode == "script":
            compiled = torch.jit.script(wrapper)
        else:
            examples = tuple(torch.from_numpy(array) for array in case.inputs.values())
            compiled = torch.jit.trace(wrapper, examples)  # type: ignore[no-untyped-call]
        return TorchModel(compiled, "cpu", tuple(case.output_names))
