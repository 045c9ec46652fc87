"""sha256 fingerprints of arrays: the identity of inputs, weights and golden tensors."""

from __future__ import annotations

import hashlib

import numpy as np


def arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name, array in arrays.items():
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def array_sha256(array: np.ndarray) -> str:
    """sha256 of one array's raw C-order bytes (the per-tensor fingerprint in manifests)."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
