"""`harness show`: a golden's tensors (with their axis meanings), hashes and provenance."""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.model.case import tensor_axes
from harness.store.golden import Golden
from harness.model.hashing import array_sha256

MAX_PRINTED_ELEMENTS = 400


def show_document(golden: Golden, manifest_path: str) -> dict[str, Any]:
    """Everything about one golden, tensor values included (float32 values round-trip exactly)."""
    axes = tensor_axes(golden.config)
    return {
        "config_id": golden.config.id,
        "config_hash": golden.config.content_hash,
        "config": golden.config.to_dict(),
        "manifest": manifest_path,
        "tensors": {
            name: {
                "shape": list(array.shape),
                "axes": list(axes.get(name, ())),
                "dtype": str(array.dtype),
                "sha256": array_sha256(array),
                "values": array.tolist(),
            }
            for name, array in golden.tensors.items()
        },
        "weights_sha256": golden.weights_sha256,
        "inputs_sha256": golden.inputs_sha256,
        "recorded_by": golden.recorded_by,
        "recorded_at": golden.recorded_at,
        "environment": golden.environment.to_dict(),
    }


def show_lines(golden: Golden, manifest_path: str) -> list[str]:
    config = golden.config
    axes = tensor_axes(config)
    environment = golden.environment
    lines = [
        f"{config.id}  (content hash {config.content_hash[:16]}; {manifest_path})",
        "  config: " + ", ".join(f"{key}={value}" for key, value in config.to_dict().items()),
        f"  weights sha256 {golden.weights_sha256}",
        f"  inputs  sha256 {golden.inputs_sha256}",
        f"  recorded by {golden.recorded_by} at {golden.recorded_at}; "
        + ", ".join(f"{name} {version}" for name, version in environment.packages.items())
        + f"; python {environment.python}; {environment.machine}; {environment.cpu}; "
        f"torch threads {environment.torch_threads}",
    ]
    for name, array in golden.tensors.items():
        lines.append(f"  {name}: shape {tuple(array.shape)} = ({', '.join(axes.get(name, ()))}), {array.dtype}, "
                     f"sha256 {array_sha256(array)[:16]}")
        if array.size <= MAX_PRINTED_ELEMENTS:
            text = np.array2string(array, precision=6, suppress_small=False, max_line_width=110)
            lines += [f"    {line}" for line in text.splitlines()]
        else:
            lines.append(f"    {array.size} values: min {array.min():.6g}, max {array.max():.6g}, "
                         f"mean {array.mean():.6g} (--json prints them all)")
    return lines
