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
    """sha256 of one array's meaning: dtype with byte order, shape, then its C-order bytes (the per-tensor
    fingerprint of golden manifests since schema /2: relabelling the same bytes changes it)."""
    digest = hashlib.sha256(f"harness-tensor/2|{array.dtype.str}|{tuple(array.shape)}|".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def bytes_sha256(array: np.ndarray) -> str:
    """sha256 of the raw bytes only: the per-tensor fingerprint of schema /1 manifests (read, never written)."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
