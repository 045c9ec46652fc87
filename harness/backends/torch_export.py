"""torch.export: the flat wrapper exported to an ExportedProgram, saved as a .pt2 archive, run on the CPU.

The program saved is loaded back and checked against the one in memory before it is handed out, so a
cell whose serialization changes bits is an error of the export, not drift of the model.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from harness.backends.base import Artifact, Availability, torch_availability
from harness.model.config import RnnConfig
from harness.model.environment import package_version

if TYPE_CHECKING:  # torch is imported when a model is exported or loaded: naming the backend needs none
    from torch.export import ExportedProgram

    from harness.backends.eager import TorchModel
    from harness.model.case import Case

STRICT = False  # torch's default: trace through Python (non-strict) rather than TorchDynamo
# Each node's metadata holds the Python stack trace of its call, with absolute paths of the machine that
# exported it (the checkout, site-packages) and the harness's line numbers: the same model exported from
# two checkouts would differ in bytes. Dropped before saving: it changes no computation.
_MACHINE_SPECIFIC_METADATA = ("stack_trace",)


class TorchExportBackend:
    """``torch.export.export`` of the flat wrapper module, saved and loaded with ``torch.export.save/load``."""

    name = "torch-export"
    export_name = "torch-export"
    device = "cpu"
    description = f"torch.export.export(strict={STRICT}) of a wrapper module, .pt2 archive, CPU"
    uses_torch_kernels = True
    artifact_kind = "torch-export"
    loader_packages: tuple[str, ...] = ("torch",)

    def availability(self) -> Availability:
        return torch_availability("export")

    def loading_availability(self) -> Availability:
        return torch_availability("export")

    def known_limitation(self, config: RnnConfig) -> str | None:
        if config.lengths:
            return "torch.export cannot trace pack_padded_sequence: its lengths decide the shapes"
        if config.reshaped_at_export and (config.export_shape[0] != config.seq_len or config.export_shape[1] == 1):
            return ("torch.export specialises a recurrence to the example's sequence length, and a batch of 1 to 1, "
                    "even with Dim.AUTO: the program guards on the export shape")
        return None

    def is_slow(self, config: RnnConfig) -> bool:
        return False

    def prepare(self, case: Case) -> TorchModel:
        return self.load(self.export(case), case.forward_names)

    def export_options(self) -> dict[str, Any]:
        return {"exporter": "torch.export.export", "saved_with": "torch.export.save", "strict": STRICT}

    def export(self, case: Case) -> Artifact:
        """The exported wrapper as a .pt2 archive, checked to compute bitwise what the program in memory does.

        Raises RuntimeError when the saved and reloaded program computes other bits.
        """
        import torch

        from harness.backends.wrappers import dynamic_shapes, flat_module_for
        from harness.model.tensors import to_torch

        examples = tuple(to_torch(array) for array in case.examples.values())
        program = torch.export.export(flat_module_for(case), examples, strict=STRICT,
                                      dynamic_shapes=dynamic_shapes(case))
        _strip_machine_specific_metadata(program)
        buffer = io.BytesIO()
        torch.export.save(program, buffer)
        data = buffer.getvalue()
        _check_round_trip(program, torch.export.load(io.BytesIO(data)), examples, case.forward_names)
        return Artifact(kind=self.artifact_kind, data=data,
                        producer={**self.export_options(), "versions": {"torch": package_version("torch")}})

    def load(self, artifact: Artifact, output_names: Sequence[str]) -> TorchModel:
        import torch

        from harness.backends.eager import TorchModel

        module = torch.export.load(io.BytesIO(artifact.data)).module()
        return TorchModel(module, "cpu", tuple(output_names))


def _strip_machine_specific_metadata(program: ExportedProgram) -> None:
    """Drop the node metadata that names this machine, in place (see _MACHINE_SPECIFIC_METADATA)."""
    for module in program.graph_module.modules():
        graph = getattr(module, "graph", None)
        for node in graph.nodes if graph is not None else ():
            for key in _MACHINE_SPECIFIC_METADATA:
                node.meta.pop(key, None)


def _check_round_trip(program: ExportedProgram, loaded: ExportedProgram, examples: tuple[Any, ...],
                      output_names: Sequence[str]) -> None:
    """Raise unless the reloaded program's outputs are bitwise those of the program in memory."""
    import torch

    from harness.backends.workloads import as_tuple

    with torch.no_grad():  # a single tensor is one output: zipped as it was, its rows were walked as outputs
        expected = as_tuple(program.module()(*examples))
        actual = as_tuple(loaded.module()(*examples))
    for name, before, after in zip(output_names, expected, actual, strict=True):
        if before.dtype != after.dtype or before.shape != after.shape or not _same_bytes(before, after):
            same_shape = before.shape == after.shape
            distance = (before.double() - after.double()).abs().max().item() if same_shape else float("nan")
            raise RuntimeError(f"torch.export.save/load round trip changed the outputs: {name} max abs {distance:.3g}")


def _same_bytes(left: Any, right: Any) -> bool:
    from harness.model.tensors import to_numpy

    return bool(to_numpy(left.contiguous()).tobytes() == to_numpy(right.contiguous()).tobytes())
