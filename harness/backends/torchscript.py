"""TorchScript: the module scripted (through a thin wrapper) or traced, run on the CPU."""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from harness.backends.base import Artifact, Availability
from harness.model.config import RnnConfig
from harness.model.environment import package_version

if TYPE_CHECKING:  # torch is imported when a model is made or loaded: naming the backend needs none
    from harness.backends.eager import TorchModel
    from harness.model.case import Case

Mode = Literal["script", "trace"]


class TorchScriptBackend:
    """``torch.jit.script`` or ``torch.jit.trace`` of the flat wrapper module.

    Scripting ``nn.RNN`` directly yields a module without ``forward`` in torch 2.13, so the wrapper
    (whose ``forward`` calls the RNN) is what gets scripted.
    """

    device = "cpu"
    uses_torch_kernels = True
    artifact_kind = "torchscript"
    loader_packages = ("torch",)

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self.name = f"torchscript-{mode}"
        self.description = f"torch.jit.{mode} of a wrapper module, CPU"

    def availability(self) -> Availability:
        if importlib.util.find_spec("torch") is None:
            return Availability(available=False, reason="package torch is not installed")
        import torch

        if not hasattr(torch, "jit"):
            return Availability(available=False, reason="this torch has no torch.jit")
        return Availability(available=True)

    def known_limitation(self, config: RnnConfig) -> str | None:
        return None

    def is_slow(self, config: RnnConfig) -> bool:
        return False

    def prepare(self, case: Case) -> TorchModel:
        return self.load(self.export(case), case.output_names)

    def export_options(self) -> dict[str, Any]:
        return {"exporter": f"torch.jit.{self.mode}", "saved_with": "torch.jit.save"}

    def export(self, case: Case) -> Artifact:
        """The scripted or traced wrapper, saved as a TorchScript archive (.pt)."""
        import torch

        from harness.backends.wrappers import flat_module_for

        wrapper = flat_module_for(case)
        if self.mode == "script":
            compiled = torch.jit.script(wrapper)
        else:
            examples = tuple(torch.from_numpy(array) for array in case.inputs.values())
            compiled = torch.jit.trace(wrapper, examples)  # type: ignore[no-untyped-call]
        buffer = io.BytesIO()
        torch.jit.save(compiled, buffer)
        return Artifact(kind="torchscript", data=buffer.getvalue(),
                        producer={**self.export_options(), "versions": {"torch": package_version("torch")}})

    def load(self, artifact: Artifact, output_names: Sequence[str]) -> TorchModel:
        import torch

        from harness.backends.eager import TorchModel

        module = torch.jit.load(io.BytesIO(artifact.data), map_location="cpu")  # type: ignore[no-untyped-call]
        return TorchModel(module.eval(), "cpu", tuple(output_names))
