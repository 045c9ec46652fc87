"""TorchScript: the module scripted (through a thin wrapper) or traced, run on the CPU."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from harness.backends.base import Artifact, Availability, torch_availability
from harness.model.config import RnnConfig
from harness.model.environment import package_version

if TYPE_CHECKING:  # torch is imported when a model is made or loaded: naming the backend needs none
    import torch

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
    loader_packages: tuple[str, ...] = ("torch",)

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self.name = f"torchscript-{mode}"
        self.export_name = self.name
        self.description = f"torch.jit.{mode} of a wrapper module, CPU"

    def availability(self) -> Availability:
        return torch_availability("jit")

    def loading_availability(self) -> Availability:
        return torch_availability("jit")

    def known_limitation(self, config: RnnConfig) -> str | None:
        return None

    def is_slow(self, config: RnnConfig) -> bool:
        return False

    def prepare(self, case: Case) -> TorchModel:
        return self.load(self.export(case), case.forward_names)

    def export_options(self) -> dict[str, Any]:
        return {"exporter": f"torch.jit.{self.mode}", "saved_with": "torch.jit.save",
                "stripped": ["*.debug_pkl (source ranges with this machine's paths)"]}

    def export(self, case: Case) -> Artifact:
        """The scripted or traced wrapper, saved as a TorchScript archive (.pt)."""
        import torch

        from harness.backends.wrappers import flat_module_for
        from harness.model.tensors import to_torch

        wrapper = flat_module_for(case)
        if self.mode == "script" and case.needs_flattening:
            # The user's model is scripted as it is (tuple arguments and all); the flattening around it takes
            # *args, which TorchScript cannot script, so it is traced: tracing keeps the scripted code.
            examples = tuple(to_torch(array) for array in case.examples.values())
            compiled = torch.jit.trace(  # type: ignore[no-untyped-call]
                flat_module_for(case, _scripted(case.module)), examples)
        elif self.mode == "script":
            compiled = _scripted(wrapper)
        else:
            examples = tuple(to_torch(array) for array in case.examples.values())
            compiled = torch.jit.trace(wrapper, examples)  # type: ignore[no-untyped-call]
        buffer = io.BytesIO()
        torch.jit.save(compiled, buffer)
        return Artifact(kind="torchscript", data=_without_debug_info(buffer.getvalue()),
                        producer={**self.export_options(), "versions": {"torch": package_version("torch")}})

    def load(self, artifact: Artifact, output_names: Sequence[str]) -> TorchModel:
        import torch

        from harness.backends.eager import TorchModel

        module = torch.jit.load(io.BytesIO(artifact.data), map_location="cpu")  # type: ignore[no-untyped-call]
        return TorchModel(module.eval(), "cpu", tuple(output_names), warm_up=True)


def _scripted(module: torch.nn.Module) -> torch.jit.ScriptModule:
    import torch

    try:
        return torch.jit.script(module)
    except Exception:
        _forget_uncompiled_types()
        raise


def _forget_uncompiled_types() -> None:
    """Drop the module types a failed torch.jit.script left half-defined. torch keeps them (keyed by class) in
    its shared type store with `forward` already declared, so scripting another instance of the same class -
    the next config of the same user's model - raised "Can't redefine method: forward" instead of its own
    cause. A dropped type is built afresh next time, under a new mangled name."""
    from torch.jit._recursive import concrete_type_store

    for module_class, types in list(concrete_type_store.type_store.items()):
        compiled = [found for found in types if found in concrete_type_store.methods_compiled]
        if compiled:
            concrete_type_store.type_store[module_class] = compiled
        else:
            del concrete_type_store.type_store[module_class]


def _without_debug_info(archive: bytes) -> bytes:
    """The TorchScript archive without its `.debug_pkl` members: they map code to source ranges, absolute
    paths of this checkout and venv included, so the same module saved from two machines differed in bytes
    (and they are half the archive). torch.jit.load does not need them; the computation is unchanged."""
    source = zipfile.ZipFile(io.BytesIO(archive))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for member in source.infolist():
            if not member.filename.endswith(".debug_pkl"):
                target.writestr(member, source.read(member.filename))
    return buffer.getvalue()
