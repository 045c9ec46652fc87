"""The ONNX reference evaluator: the same ONNX export as ONNX Runtime's, run by
``onnx.reference.ReferenceEvaluator``, onnx's own pure-NumPy implementation of the ONNX operators.

Next to ONNX Runtime it is a second, independent reading of one graph: when both move away from eager,
the exporter wrote the wrong graph; when only ORT does, ORT computes the graph wrongly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.backends.base import Artifact, Availability
from harness.backends.onnx_runtime import (
    KEEPS_SEQUENCE_LENGTH,
    OPSET,
    PACKED_DYNAMO,
    Exporter,
    OnnxRuntimeBackend,
    exporter_packages,
)
from harness.model.config import RnnConfig
from harness.model.environment import importable

if TYPE_CHECKING:  # loading a stored model needs onnx only: `harness replay` runs without torch
    from harness.model.case import Case


@dataclass(frozen=True, kw_only=True)
class ReferenceModel:
    evaluator: Any  # onnx.reference.ReferenceEvaluator
    output_names: tuple[str, ...]
    declared_dtypes: dict[str, np.dtype[Any]]  # output name -> the element type the graph declares

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The named outputs, each in the dtype the graph declares."""
        results = self.evaluator.run(list(self.output_names), inputs)
        # The reference ops follow NumPy's promotion rules, not the graph's types (RNN's Y_h, for one, is
        # never cast back to X's dtype); ORT and the goldens hold the declared type, so compare values in it.
        # None of the default suite's outputs needed the cast (onnx 1.23.2, NumPy promotion kept float32).
        arrays = [np.asarray(result) for result in results]
        return {name: array.astype(self.declared_dtypes.get(name, array.dtype), copy=False)
                for name, array in zip(self.output_names, arrays, strict=True)}


class OnnxReferenceBackend:
    """ONNX Runtime's export (the very same code and cache entry), evaluated by onnx.reference."""

    device = "cpu"
    uses_torch_kernels = False
    autograd = False  # an ONNX model computes the forward pass only
    artifact_kind = "onnx"
    loader_packages: tuple[str, ...] = ("onnx",)  # replay loads its ONNX files with onnx alone

    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter
        self._exporting = OnnxRuntimeBackend(exporter)  # exports only: its sessions are never made here
        self.name = f"onnx-reference-{exporter}"
        self.export_name = self._exporting.export_name  # "onnx-<exporter>": one cached export for ORT and this
        self.description = (f"torch.onnx.export(dynamo={exporter == 'dynamo'}, opset {OPSET[exporter]}) "
                            "-> onnx.reference.ReferenceEvaluator (NumPy)")

    def availability(self) -> Availability:
        # What exporting needs (as for ORT) and what evaluating needs; onnxruntime is neither.
        for package in ("onnx", *exporter_packages(self.exporter)):
            if not importable(package):
                return Availability(available=False, reason=f"package {package} is not installed")
        return Availability(available=True)

    def loading_availability(self) -> Availability:
        if not importable("onnx"):
            return Availability(available=False, reason="package onnx is not installed")
        return Availability(available=True)

    def known_limitation(self, config: RnnConfig) -> str | None:
        """Failures measured with torch 2.13 / onnx 1.23.2 on the default suite; each is still tried."""
        if self.exporter == "dynamo" and config.reshaped_at_export and config.export_shape[0] != config.seq_len:
            return KEEPS_SEQUENCE_LENGTH
        if config.lengths and self.exporter == "dynamo":
            return PACKED_DYNAMO
        if config.lengths:
            return IGNORES_SEQUENCE_LENS
        if config.proj_size and self.exporter == "legacy":
            return self._exporting.known_limitation(config)  # the export itself fails, as for ORT
        if config.proj_size:
            return ("the dynamo exporter writes a plain ONNX LSTM without the projection (proj_size), "
                    "which the reference evaluator's LSTM cannot compute either")
        if config.cell == "rnn_relu" and self.exporter == "legacy":
            # The dynamo exporter unrolls a plain RNN into MatMul/Add/Relu nodes, which it evaluates.
            return "the reference evaluator's ONNX RNN op knows only Tanh and Affine activations, not Relu"
        return None

    def is_slow(self, config: RnnConfig) -> bool:
        # The evaluator itself took at most 0.7 s a cell (load and two runs) on the default suite; what is
        # slow is exporting long unrolled plain RNNs, the very export ORT's dynamo cells tag slow.
        return self._exporting.is_slow(config)

    def prepare(self, case: Case) -> ReferenceModel:
        return self.load(self.export(case), case.forward_names)

    def export_options(self) -> dict[str, Any]:
        return self._exporting.export_options()

    def export(self, case: Case) -> Artifact:
        return self._exporting.export(case)

    def load(self, artifact: Artifact, output_names: Sequence[str]) -> ReferenceModel:
        import onnx
        from onnx.reference import ReferenceEvaluator

        model = onnx.load_from_string(artifact.data)
        _refuse_sequence_lens(model)
        declared = {output.name: onnx.helper.tensor_dtype_to_np_dtype(output.type.tensor_type.elem_type)
                    for output in model.graph.output if output.type.tensor_type.elem_type}
        return ReferenceModel(evaluator=ReferenceEvaluator(model), output_names=tuple(output_names),
                              declared_dtypes=declared)


IGNORES_SEQUENCE_LENS = ("the reference evaluator's RNN/GRU/LSTM take sequence_lens and never read it (onnx 1.23.2): "
                         "they would run every padded step")
_SEQUENCE_LENS_INPUT = 4  # RNN, GRU and LSTM alike: X, W, R, B, sequence_lens, initial_h[, initial_c, P]


def _refuse_sequence_lens(model: Any) -> None:
    """Raise for a model whose recurrent nodes are given sequence_lens: the evaluator would silently compute
    the padded steps too (measured: 0.7-1.4 off on packed sequences), so it must not run them at all."""
    for node in model.graph.node:
        if node.op_type in ("RNN", "GRU", "LSTM") and len(node.input) > _SEQUENCE_LENS_INPUT \
                and node.input[_SEQUENCE_LENS_INPUT]:
            raise NotImplementedError(f"{node.op_type} node {node.name or '(unnamed)'} has sequence_lens, which "
                                      "onnx.reference ignores")
