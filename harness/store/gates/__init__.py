"""One gate per artifact kind: what stored bytes may contain before anything loads them.

Every reader of an artifact (the golden store, the export cache, bundle) calls `verify_artifact` on the
bytes; nothing here imports torch, and onnx only where an ONNX model is parsed.
"""

from __future__ import annotations

from harness.errors import GoldenError
from harness.store.gates.facts import ArtifactFacts

__all__ = ["ArtifactFacts", "verify_artifact"]


def verify_artifact(kind: str, data: bytes, *, where: str, built_in_rnn: bool) -> ArtifactFacts:
    """The facts of an artifact whose bytes can neither run code nor touch a file nor exceed static bounds;
    GoldenError ("<where>: <what is refused and why>") otherwise. With `built_in_rnn`, an artifact with no
    recurrence, or an output that depends on no input, is refused too."""
    if kind == "onnx":
        from harness.store.gates.onnx_gate import verify_onnx

        return verify_onnx(data, where=where, built_in_rnn=built_in_rnn)
    if kind == "torchscript":
        from harness.store.gates.torchscript_gate import verify_torchscript

        return verify_torchscript(data, where=where, built_in_rnn=built_in_rnn)
    if kind == "torch-export":
        from harness.store.gates.torch_export_gate import verify_torch_export

        return verify_torch_export(data, where=where, built_in_rnn=built_in_rnn)
    raise GoldenError(f"{where}: unknown artifact kind {kind!r}: refused")
