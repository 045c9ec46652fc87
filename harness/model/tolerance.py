"""Tolerances: how far a backend may sit from the golden before it is DRIFT.

Calibrated on torch 2.13 / onnxruntime 1.32 (docs/backends.md): the worst honest float32 gap to
eager is 4.8e-7 (ONNX Runtime, hidden 256 GRU), while a 1e-4 change in a float32 value must fail.
An element passes when ``|actual - expected| <= atol + rtol * |expected|``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from dataclasses import dataclass, field

from harness.errors import HarnessError

LOOSE_FLOAT32_ATOL = 1e-3  # looser than this hides real float32 drift: the report warns


class ToleranceError(HarnessError):
    """A tolerance that is not finite, negative, or given without its partner."""


@dataclass(frozen=True, kw_only=True)
class Tolerance:
    """atol and rtol, given together; bitwise demands identical bytes."""

    atol: float
    rtol: float
    bitwise: bool = False
    equal_nan: bool = False  # a NaN matches a NaN at the same index (default: every NaN is a mismatch)
    derivation: str = ""  # how it was chosen, when not from the table (model.calibration)

    def __post_init__(self) -> None:
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ToleranceError(f"{name} must be a number, got {value!r}")
            try:
                number = float(value)
            except OverflowError:
                raise ToleranceError(f"{name} must be finite and >= 0, got an integer beyond float range") from None
            if not math.isfinite(number) or number < 0:
                raise ToleranceError(f"{name} must be finite and >= 0, got {number!r}")

    @classmethod
    def pair(cls, atol: float | None, rtol: float | None, *, where: str) -> Tolerance | None:
        """Both given: a Tolerance; neither: None; one alone: a ToleranceError naming where."""
        if atol is None and rtol is None:
            return None
        if atol is None or rtol is None:
            raise ToleranceError(f"{where}: atol and rtol go together: give both or neither")
        try:
            return cls(atol=atol, rtol=rtol)
        except ToleranceError as error:
            raise ToleranceError(f"{where}: {error.message}") from None

    def describe(self) -> str:
        text = "bitwise" if self.bitwise else f"atol={self.atol:.3g} rtol={self.rtol:g}"
        return text + (" equal_nan" if self.equal_nan else "") + (f" ({self.derivation})" if self.derivation else "")

    def looser_than_float32_sense(self, dtype: str) -> bool:
        """A float32 tolerance this loose lets a real drift pass: worth a warning in the report."""
        return dtype == "float32" and not self.bitwise and max(self.atol, self.rtol) > LOOSE_FLOAT32_ATOL


BITWISE = Tolerance(atol=0.0, rtol=0.0, bitwise=True)

# (backend name pattern, dtype) -> tolerance, most specific first; the first fnmatch wins.
DEFAULT_TOLERANCES: tuple[tuple[str, str, Tolerance], ...] = (
    # cuDNN/cuBLAS reorder reductions; still ten times below a 1e-4 change.
    ("*-cuda", "float32", Tolerance(atol=1e-5, rtol=1e-5)),
    ("*", "float32", Tolerance(atol=2e-6, rtol=1e-5)),
    ("*", "float64", Tolerance(atol=1e-12, rtol=1e-10)),
    # Low precision is calibrated per golden (model.calibration); these only serve goldens without one.
    ("*", "float16", Tolerance(atol=3e-3, rtol=0.0, derivation="uncalibrated default")),
    ("*", "bfloat16", Tolerance(atol=2e-2, rtol=0.0, derivation="uncalibrated default")),
)


@dataclass(frozen=True, kw_only=True)
class TolerancePolicy:
    """The defaults per backend and dtype, a suite case's own tolerance, or one override for every cell
    (in that order of precedence, the override first)."""

    override: Tolerance | None = None
    per_config: dict[str, Tolerance] = field(default_factory=dict)  # from atol/rtol keys of suite cases
    equal_nan: bool = False  # --equal-nan: NaN matches NaN at the same index, in every cell

    def for_cell(self, backend: str, dtype: str, config_id: str = "", calibrated: Tolerance | None = None
                 ) -> Tolerance:
        """calibrated: a low-precision golden's own tolerance, below the override and the suite's in precedence."""
        chosen = self._chosen(backend, dtype, config_id, calibrated)
        return dataclasses.replace(chosen, equal_nan=True) if self.equal_nan else chosen

    def _chosen(self, backend: str, dtype: str, config_id: str, calibrated: Tolerance | None) -> Tolerance:
        if self.override is not None:
            return self.override
        if config_id in self.per_config:
            return self.per_config[config_id]
        if calibrated is not None:
            return calibrated
        for pattern, table_dtype, tolerance in DEFAULT_TOLERANCES:
            if table_dtype == dtype and fnmatch.fnmatchcase(backend, pattern):
                return tolerance
        raise KeyError(f"no default tolerance for backend {backend} and dtype {dtype}")
