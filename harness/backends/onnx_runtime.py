"""ONNX Runtime: the module exported to ONNX (legacy TorchScript-based or dynamo exporter), then run
in an InferenceSession on the CPU (or CUDA) execution provider.

Session settings are pinned because they change bits (docs/backends.md): one intra-op thread and
ORT_ENABLE_ALL graph optimisation.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from harness.backends.base import Artifact, Availability
from harness.backends.deadline import terminate_at_deadline
from harness.model.config import RnnConfig
from harness.model.environment import importable, package_version

if TYPE_CHECKING:  # loading a stored model needs onnxruntime only: `harness replay` runs without torch
    from harness.model.case import Case

Exporter = Literal["legacy", "dynamo"]
OPSET = {"legacy": 17, "dynamo": 18}  # the dynamo exporter exports 18 and converts down when asked for less
# The dynamo exporter unrolls a plain RNN into per-step nodes: export time grows with the steps
# (about 45 ms a step here; 79 s for 500 steps).
SLOW_UNROLLED_STEPS = 64
_PROVIDER = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
# The dynamo exporter writes each node's Python stack trace, absolute paths included, into its metadata:
# the same model exported from two checkouts would differ in bytes. Stripped: it changes no computation.
_MACHINE_SPECIFIC_METADATA = ("pkg.torch.onnx.stack_trace",)


KEEPS_SEQUENCE_LENGTH = ("the dynamo exporter keeps the example's sequence length in the graph, even with Dim.AUTO "
                         "(a plain RNN then returns the export's steps only; LSTM and GRU fail in a Reshape)")
PACKED_DYNAMO = ("the dynamo exporter goes through torch.export, which cannot trace pack_padded_sequence "
                 "(its lengths decide shapes)")


def exporter_packages(exporter: Exporter) -> tuple[str, ...]:
    """What exporting needs beyond onnx: onnxscript for the dynamo exporter, where torch can export at all.
    In a torch-free install nothing exports, and loading a stored ONNX file (replay, bundle) needs neither
    torch nor onnxscript: its absence must not make a dynamo artifact unavailable there."""
    return ("onnxscript",) if exporter == "dynamo" and importable("torch") else ()


@dataclass(frozen=True)
class OrtModel:
    session: Any  # onnxruntime.InferenceSession
    output_names: tuple[str, ...]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The outputs; CellBudgetExceeded when the cell's time budget ends the run (an endless Loop)."""
        import onnxruntime

        run_options = onnxruntime.RunOptions()
        with terminate_at_deadline(run_options):
            results = self.session.run(list(self.output_names), inputs, run_options)
        return dict(zip(self.output_names, results, strict=True))


class OnnxRuntimeBackend:
    """torch.onnx.export (dynamo=False or True) followed by an onnxruntime InferenceSession."""

    uses_torch_kernels = False
    autograd = False  # an ONNX model computes the forward pass only
    artifact_kind = "onnx"
    loader_packages: tuple[str, ...] = ("onnxruntime",)

    def __init__(self, exporter: Exporter, device: str = "cpu") -> None:
        self.exporter = exporter
        self.device = device
        suffix = "" if device == "cpu" else f"-{device}"
        self.name = f"onnxruntime-{exporter}{suffix}"
        self.export_name = f"onnx-{exporter}"  # the same export for ORT CPU, CUDA and the reference evaluator
        self.description = (
            f"torch.onnx.export(dynamo={exporter == 'dynamo'}, opset {OPSET[exporter]}) "
            f"-> onnxruntime {_PROVIDER[device]}"
        )

    def availability(self) -> Availability:
        return self._available(("onnx", "onnxruntime", *exporter_packages(self.exporter)))

    def loading_availability(self) -> Availability:
        return self._available(self.loader_packages)

    def _available(self, packages: tuple[str, ...]) -> Availability:
        for package in packages:
            if not importable(package):
                return Availability(available=False, reason=f"package {package} is not installed")
        import onnxruntime

        if _PROVIDER[self.device] not in onnxruntime.get_available_providers():
            return Availability(available=False, reason=f"onnxruntime has no {_PROVIDER[self.device]} here")
        return Availability(available=True)

    def known_limitation(self, config: RnnConfig) -> str | None:
        """Failures measured with torch 2.13 / onnxruntime 1.32; each is still tried."""
        if config.lengths and self.exporter == "dynamo":
            return PACKED_DYNAMO
        if self.exporter == "dynamo" and config.reshaped_at_export and config.export_shape[0] != config.seq_len:
            return KEEPS_SEQUENCE_LENGTH
        if config.dtype == "bfloat16":
            return ("ONNX Runtime has no bfloat16 kernels for RNN/LSTM/GRU (the legacy export is refused as an invalid "
                    "graph; the dynamo one finds no kernel)")
        if config.proj_size and self.exporter == "legacy":
            return "the legacy ONNX exporter cannot export LSTM with projections (proj_size)"
        if config.proj_size:
            return ("the dynamo exporter writes a plain ONNX LSTM without the projection (proj_size), "
                    "which ONNX Runtime then rejects")
        if config.dtype == "float64" and self.exporter == "legacy":
            return "ONNX Runtime has no float64 kernel for the ONNX RNN/LSTM/GRU ops the legacy exporter emits"
        if config.dtype == "float64" and config.cell in ("lstm", "gru"):
            return f"ONNX Runtime has no float64 {config.cell.upper()} kernel"
        return None

    def is_slow(self, config: RnnConfig) -> bool:
        steps = config.seq_len * config.num_layers * config.num_directions
        return self.exporter == "dynamo" and config.cell.startswith("rnn") and steps > SLOW_UNROLLED_STEPS

    def prepare(self, case: Case) -> OrtModel:
        return self.load(self.export(case), case.forward_names)

    def export_options(self) -> dict[str, Any]:
        stripped = list(_MACHINE_SPECIFIC_METADATA) if self.exporter == "dynamo" else []
        return {"exporter": "torch.onnx.export", "dynamo": self.exporter == "dynamo",
                "opset_version": OPSET[self.exporter], "stripped_metadata": stripped}

    def export(self, case: Case) -> Artifact:
        versions = {name: package_version(name) for name in ("torch", "onnx", "onnxscript")}
        return Artifact(kind="onnx", data=self._export(case), producer={**self.export_options(), "versions": versions})

    def load(self, artifact: Artifact, output_names: Sequence[str]) -> OrtModel:
        return self._session(artifact.data, output_names, threads=1, optimize=True)

    def probe_pairs(self, case: Case) -> dict[str, tuple[OrtModel, OrtModel]]:
        """Session settings that should not change bits, each as (pinned, other): one export for all."""
        model_bytes, names = self._export(case), case.forward_names
        pinned = self._session(model_bytes, names, threads=1, optimize=True)
        return {
            "ort-threads": (pinned, self._session(model_bytes, names, threads=os.cpu_count() or 1, optimize=True)),
            "ort-optimization": (pinned, self._session(model_bytes, names, threads=1, optimize=False)),
        }

    def _session(self, model_bytes: bytes, output_names: Sequence[str], *, threads: int, optimize: bool) -> OrtModel:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        level = onnxruntime.GraphOptimizationLevel
        options.graph_optimization_level = level.ORT_ENABLE_ALL if optimize else level.ORT_DISABLE_ALL
        options.log_severity_level = 4  # errors reach us as exceptions; keep stderr clean
        provider = _PROVIDER[self.device]
        session = onnxruntime.InferenceSession(model_bytes, options, providers=[provider])
        if provider not in session.get_providers():
            # ORT silently falls back to the CPU when a provider fails to load.
            raise RuntimeError(f"onnxruntime fell back to {session.get_providers()} instead of {provider}")
        return OrtModel(session, tuple(output_names))

    def _export(self, case: Case) -> bytes:
        import torch

        from harness.backends.wrappers import dynamic_axes, dynamic_shapes, flat_module_for
        from harness.model.tensors import to_torch

        wrapper = flat_module_for(case)
        examples = tuple(to_torch(array) for array in case.examples.values())
        inputs, outputs = case.input_names, case.forward_names
        if self.exporter == "dynamo":
            with _torchlib_registry_built_once():
                program = torch.onnx.export(
                    wrapper, examples, dynamo=True, opset_version=OPSET["dynamo"], verbose=False,
                    input_names=inputs, output_names=outputs, dynamic_shapes=dynamic_shapes(case),
                )
            if program is None:
                raise RuntimeError("torch.onnx.export(dynamo=True) returned no ONNXProgram")
            return _without_machine_specific_metadata(program.model_proto)
        buffer = io.BytesIO()
        torch.onnx.export(
            wrapper, examples, buffer,  # type: ignore[arg-type]  # file-like objects are accepted
            dynamo=False, opset_version=OPSET["legacy"], input_names=inputs, output_names=outputs,
            dynamic_axes=dynamic_axes(case) or None,
        )
        return buffer.getvalue()


def _without_machine_specific_metadata(model: Any) -> bytes:
    """The model's bytes without the metadata that names this checkout's paths (see above)."""
    for node in [*model.graph.node, *(node for function in model.functions for node in function.node)]:
        kept = [entry for entry in node.metadata_props if entry.key not in _MACHINE_SPECIFIC_METADATA]
        if len(kept) != len(node.metadata_props):
            del node.metadata_props[:]
            node.metadata_props.extend(kept)
    return bytes(model.SerializeToString())


_REGISTRIES: dict[Any, Any] = {}  # opset version -> the dynamo exporter's ONNX op registry, built once


@contextlib.contextmanager
def _torchlib_registry_built_once() -> Iterator[None]:
    """The dynamo exporter rebuilds its registry of ONNX functions from torchlib on every call (0.6 s here:
    most of a small model's export, and 30 s of a cold default run). It depends on the opset alone, so
    within one process each opset's registry is built once and handed out again; the exported bytes are
    the same (tests/test_artifacts.py). Where torch's internals differ, nothing is patched."""
    try:
        from torch.onnx._internal.exporter import _registration

        registry_class = _registration.ONNXRegistry
        original = registry_class.__dict__["from_torchlib"].__func__
    except (ImportError, AttributeError, KeyError):
        yield
        return

    def from_torchlib(cls: Any, /, opset_version: Any = None, **kwargs: Any) -> Any:
        if kwargs or cls is not registry_class:
            return original(cls, opset_version, **kwargs) if opset_version is not None else original(cls, **kwargs)
        if opset_version not in _REGISTRIES:
            _REGISTRIES[opset_version] = original(cls) if opset_version is None else original(cls, opset_version)
        return _REGISTRIES[opset_version]

    registry_class.from_torchlib = classmethod(from_torchlib)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        registry_class.from_torchlib = classmethod(original)  # type: ignore[method-assign,assignment]
