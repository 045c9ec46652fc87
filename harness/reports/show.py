"""`harness show`: a golden's tensors (with their axis meanings, for suite goldens), hashes and
provenance, read from its manifest alone. Works for suite goldens and rnn_golden fixture goldens."""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.model.axes import tensor_axes
from harness.model.hashing import array_sha256
from harness.reports.text import json_safe, printable_lines
from harness.store.golden import Golden
from harness.store.user_golden import UserGolden

MAX_PRINTED_ELEMENTS = 400


def show_document(golden: Golden | UserGolden, manifest_path: str) -> dict[str, Any]:
    """Everything about one golden, tensor values included (float32 values round-trip exactly;
    non-finite values are the strings "nan", "inf" and "-inf", as everywhere in harness JSON)."""
    axes = tensor_axes(golden.config) if isinstance(golden, Golden) else {}
    document: dict[str, Any] = {"kind": "suite" if isinstance(golden, Golden) else "fixture",
                                "manifest": manifest_path}
    if isinstance(golden, Golden):
        document.update(config_id=golden.config.id, config_hash=golden.config.content_hash,
                        config=golden.config.to_dict(), recorded_by=golden.recorded_by,
                        artifacts={backend: entry.to_dict() for backend, entry in golden.artifacts.items()})
    else:
        document["name"] = golden.name
    document.update(
        tensors={name: {"shape": list(array.shape), "axes": list(axes.get(name, ())), "dtype": str(array.dtype),
                        "sha256": array_sha256(array), "non_finite": int(np.count_nonzero(~np.isfinite(array))),
                        "values": array.tolist()}
                 for name, array in golden.tensors.items()},
        weights_sha256=golden.weights_sha256, inputs_sha256=golden.inputs_sha256,
        recorded_at=golden.recorded_at, environment=golden.environment.to_dict(),
    )
    return dict(json_safe(document))


def show_lines(golden: Golden | UserGolden, manifest_path: str) -> list[str]:
    """What `harness show` prints, every line printable (the manifest's strings are escaped)."""
    environment = golden.environment
    provenance = (", ".join(f"{name} {version}" for name, version in environment.packages.items())
                  + f"; python {environment.python}; {environment.machine}; {environment.cpu}; "
                  f"torch threads {environment.torch_threads}")
    if isinstance(golden, Golden):
        config = golden.config
        axes = tensor_axes(config)
        lines = [f"{config.id}  (content hash {config.content_hash[:16]}; {manifest_path})",
                 "  config: " + ", ".join(f"{key}={value}" for key, value in config.to_dict().items()),
                 f"  recorded by {golden.recorded_by} at {golden.recorded_at}; {provenance}"]
    else:
        axes = {}
        lines = [f"{golden.name}  (rnn_golden fixture golden; {manifest_path})",
                 f"  recorded at {golden.recorded_at}; {provenance}"]
    lines += [f"  weights sha256 {golden.weights_sha256 or '(not recorded: outputs were given, not the model)'}",
              f"  inputs  sha256 {golden.inputs_sha256 or '(not recorded)'}"]
    for name, array in golden.tensors.items():
        meaning = f" = ({', '.join(axes[name])})" if name in axes else ""
        lines.append(f"  {name}: shape {tuple(array.shape)}{meaning}, {array.dtype}, sha256 {array_sha256(array)[:16]}")
        if array.size <= MAX_PRINTED_ELEMENTS:
            text = np.array2string(array, precision=6, suppress_small=False, max_line_width=110)
            lines += [f"    {line}" for line in text.splitlines()]
        elif array.size:
            lines.append(f"    {array.size} values: min {np.nanmin(array):.6g}, max {np.nanmax(array):.6g}, "
                         f"mean {np.nanmean(array):.6g} (--json prints them all)")
    if isinstance(golden, Golden):
        lines += _artifact_lines(golden)
    return printable_lines(lines)


def artifact_lines(golden: Golden) -> list[str]:
    """Each stored artifact: file, size, how it was made and (ONNX) its recurrent nodes and op count; printable."""
    return printable_lines(_artifact_lines(golden))


def _artifact_lines(golden: Golden) -> list[str]:
    lines = [f"  artifacts ({len(golden.artifacts)}, in artifacts/):"] if golden.artifacts else []
    for backend, entry in golden.artifacts.items():
        producer = entry.producer
        made = ", ".join(f"{key}={value}" for key, value in producer.items() if key != "versions")
        versions = ", ".join(f"{name} {version}" for name, version in producer.get("versions", {}).items())
        lines.append(f"    {backend}: {entry.file} ({entry.size} bytes; {made}; {versions})")
        structure = entry.structure
        if structure:
            nodes = "; ".join(f"{node['op_type']}(" + ", ".join(f"{k}={v}" for k, v in node["attributes"].items())
                              + ")" for node in structure["recurrent_nodes"]) or "no RNN/LSTM/GRU node"
            lines.append(f"      {sum(structure['op_histogram'].values())} ops, opsets {structure['opsets']}, "
                         f"{structure['producer']}: {nodes}")
    return lines
