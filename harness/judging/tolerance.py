"""Tolerances: how far a backend may sit from the golden before it is DRIFT.

Calibrated on torch 2.13 / onnxruntime 1.32 (shared/FINDINGS.md): the worst honest float32 gap to
eager is 4.8e-7 (ONNX Runtime, hidden 256 GRU), while a 1e-4 change in a float32 value must fail.
An element passes when ``|actual - expected| <= atol + rtol * |expected|``.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Tolerance:
    """atol and rtol, given together; bitwise demands identical bytes."""

    atol: float
    rtol: float
    bitwise: bool = False

    def describe(self) -> str:
        return "bitwise" if self.bitwise else f"atol={self.atol:g} rtol={self.rtol:g}"


BITWISE = Tolerance(atol=0.0, rtol=0.0, bitwise=True)

# (backend name pattern, dtype) -> tolerance, most specific first; the first fnmatch wins.
DEFAULT_TOLERANCES: tuple[tuple[str, str, Tolerance], ...] = (
    # cuDNN/cuBLAS reorder reductions; still ten times below a 1e-4 change.
    ("*-cuda", "float32", Tolerance(atol=1e-5, rtol=1e-5)),
    ("*", "float32", Tolerance(atol=2e-6, rtol=1e-5)),
    ("*", "float64", Tolerance(atol=1e-12, rtol=1e-10)),
)


@dataclass(frozen=True, kw_only=True)
class TolerancePolicy:
    """The defaults per backend and dtype, or one override for every cell."""

    override: Tolerance | None = None

    def for_cell(self, backend: str, dtype: str) -> Tolerance:
        if self.override is not None:
            return self.override
        for pattern, table_dtype, tolerance in DEFAULT_TOLERANCES:
            if table_dtype == dtype and fnmatch.fnmatchcase(backend, pattern):
                return tolerance
        raise KeyError(f"no default tolerance for backend {backend} and dtype {dtype}")
