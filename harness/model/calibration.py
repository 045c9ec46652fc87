"""Tolerances for float16 and bfloat16, calibrated against the float64 oracle instead of borrowed from a table.

No fixed table is honest across precisions: eager torch itself is 2e-4..5e-4 (float16) and 2e-3..3e-3
(bfloat16) from the mathematics on the default suite. As in PyTorch's own accuracy check for torch.compile
(torch._dynamo.utils.same: a low-precision result is wrong only when it is further from float64 than
eager at that precision is, by a multiplier of 2-3), a backend passes when it is within

    atol = MULTIPLIER x E + ABSOLUTE_TERM[dtype]        (rtol 0)

of the golden, E being the largest distance of the golden (eager at that precision) to the float64 oracle
on the module's own weights and inputs. MULTIPLIER = 3 was derived from the default suite's low-precision
configs on every backend that runs them: the largest ratio |backend - eager| / E measured was 2.2 (the ONNX
reference evaluator, LSTM float16). ABSOLUTE_TERM is a quarter of the dtype's epsilon: half an ulp of
rounding at the top of tanh's range, for outputs eager happens to compute almost exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.model.tolerance import Tolerance

MULTIPLIER = 3.0
EPSILON = {"float16": 2.0**-10, "bfloat16": 2.0**-7}
ABSOLUTE_TERM = {dtype: epsilon / 4 for dtype, epsilon in EPSILON.items()}


@dataclass(frozen=True, kw_only=True)
class Calibration:
    """A low-precision golden's tolerance and how it was derived."""

    dtype: str
    eager_error: float  # max |golden - float64 oracle| over every tensor
    multiplier: float = MULTIPLIER
    absolute_term: float = 0.0

    @property
    def atol(self) -> float:
        return self.multiplier * self.eager_error + self.absolute_term

    @property
    def derivation(self) -> str:
        return (f"calibrated: {self.multiplier:g} x {self.eager_error:.2g} (eager {self.dtype} to the float64 "
                f"oracle) + {self.absolute_term:.2g} (a quarter of {self.dtype}'s epsilon)")

    def plausible(self) -> bool:
        """Made by this harness: its multiplier and absolute term for the dtype, and eager at most one epsilon
        from the float64 oracle (the suite's worst is 0.54 epsilon in float16, 0.35 in bfloat16)."""
        if self.dtype not in EPSILON:
            return False
        return (self.multiplier == MULTIPLIER and self.absolute_term == ABSOLUTE_TERM[self.dtype]
                and 0 <= self.eager_error <= EPSILON[self.dtype])

    def tolerance(self) -> Tolerance:
        return Tolerance(atol=self.atol, rtol=0.0, derivation=self.derivation)

    def to_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "atol": self.atol, "rtol": 0.0, "multiplier": self.multiplier,
                "eager_error_to_float64": self.eager_error, "absolute_term": self.absolute_term,
                "derivation": self.derivation}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """From a manifest already validated against its schema."""
        return cls(dtype=data["dtype"], eager_error=data["eager_error_to_float64"], multiplier=data["multiplier"],
                   absolute_term=data["absolute_term"])


def calibrate(reference: dict[str, np.ndarray], oracle: dict[str, np.ndarray], dtype: str) -> Calibration:
    """The calibration of a low-precision golden from its tensors and the float64 oracle of its case."""
    error = max(float(np.max(np.abs(reference[name].astype(np.float64) - oracle[name]), initial=0.0))
                for name in reference)
    return Calibration(dtype=dtype, eager_error=error, absolute_term=ABSOLUTE_TERM[dtype])
