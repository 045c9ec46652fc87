"""The dtypes a config may have, as NumPy dtypes (bfloat16 comes from ml_dtypes, which NumPy knows no name for)."""

from __future__ import annotations

from typing import Any

import numpy as np

LOW_PRECISION = ("float16", "bfloat16")  # judged with a tolerance calibrated against the float64 oracle


def numpy_dtype(name: str) -> np.dtype[Any]:
    """The native-order NumPy dtype of a config or manifest dtype name."""
    if name == "bfloat16":
        import ml_dtypes

        bfloat16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
        return bfloat16
    return np.dtype(name)
