"""A debugging bundle of one exported model that Polygraphy and ONNX runtimes read as they are: the model,
its inputs and the golden outputs in Polygraphy's JSON formats and in the ONNX backend-test layout, plus
the provenance beside them (Polygraphy's formats carry no metadata).

Written with numpy and the standard library (onnx only for the .pb files): no torch, no Polygraphy.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import secrets
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.reports.files import OutputError

MODEL = "model.onnx"
INPUTS = "inputs.json"
GOLDEN = "golden.json"
DESCRIPTION = "harness.json"
README = "README.txt"
DATA_SET = "test_data_set_0"
# Run from inside the bundle: relative paths keep the commands valid wherever the bundle is moved.
CHECK_COMMAND = f"polygraphy run {MODEL} --onnxrt --load-inputs {INPUTS} --load-outputs {GOLDEN}"
# golden.json holds final outputs only, so `debug reduce` cannot localize an ONNX-vs-eager difference: every
# subgraph fed ONNX Runtime's own intermediate values reproduces ONNX Runtime's output and fails alike. It can
# localize a difference between ONNX Runtime (per-node reference) and another ONNX runtime, TensorRT here.
# Constants are folded first: on the legacy export as stored (a Shape/Expand chain builds the zero initial
# state) reduce stops with "The following outputs were not found in the model: {''}".
REDUCE_COMMAND = " && ".join((
    f"polygraphy surgeon sanitize {MODEL} --fold-constants -o folded.onnx",
    f"polygraphy run folded.onnx --onnxrt --load-inputs {INPUTS} --onnx-outputs '*' --save-outputs layerwise.json",
    f"polygraphy data merge {INPUTS} layerwise.json -o layerwise_inputs.json",
    "polygraphy debug reduce folded.onnx -o reduced.onnx --load-inputs layerwise_inputs.json --check "
    "polygraphy run polygraphy_debug.onnx --trt --load-inputs layerwise_inputs.json --load-outputs layerwise.json",
))
_RESERVED = ("check_command", "reduce_command", "files")


@dataclass(frozen=True, kw_only=True)
class Bundle:
    """One exported model with its inputs and golden outputs, and where they came from."""

    model_bytes: bytes  # the ONNX model as stored
    inputs: dict[str, np.ndarray]  # named graph inputs, in graph input order
    outputs: dict[str, np.ndarray]  # the golden outputs, by graph output name, in graph output order
    runner_name: str  # e.g. "harness-golden:eager"; deterministic, unlike Polygraphy's own names
    description: dict[str, Any]  # provenance for harness.json: config id, backend, golden path, sha256s, versions
    tolerance: tuple[float, float] | None = None  # (atol, rtol) the harness judges this cell with

    @property
    def check_command(self) -> str:
        """Polygraphy's check, at the harness's own tolerance for the cell when it is known (Polygraphy's
        default, 1e-5, would pass a float64 golden the harness holds to 1e-12)."""
        if self.tolerance is None:
            return CHECK_COMMAND
        atol, rtol = self.tolerance
        return f"{CHECK_COMMAND} --atol {atol:g} --rtol {rtol:g}"


def write_bundle(bundle: Bundle, out_dir: Path) -> tuple[Path, ...]:
    """Write the bundle into out_dir (new, or an empty directory) and return the written paths.

    Files are written into a hidden sibling directory that is renamed to out_dir at the end, so out_dir
    never holds half a bundle. A user's files are never overwritten: OutputError (exit 2) instead.
    """
    _check_out_dir(out_dir)
    staging = out_dir.parent / f".{out_dir.name}.partial-{secrets.token_hex(6)}"
    try:
        staging.mkdir()  # honours the umask, unlike tempfile.mkdtemp's 0o700
    except OSError as error:
        raise OutputError(f"{out_dir}: cannot create the bundle: {error.strerror or error}") from None
    try:
        names = _write_files(bundle, staging)
        _move_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return tuple(out_dir / name for name in names)


def _check_out_dir(out_dir: Path) -> None:
    """The bundle goes into a new directory or an empty real one, named: never through a symlink, never into
    '.' or '..' (which rename cannot replace), never over a file or a device."""
    wanted = "give a new or empty directory for the bundle"
    if out_dir.name in ("", ".", ".."):
        raise OutputError(f"{out_dir}: is the current or a parent directory; {wanted}, by name")
    parent = out_dir.parent
    if not parent.is_dir():
        raise OutputError(f"{out_dir}: directory {parent} does not exist; create it or choose another path")
    try:
        mode: int | None = out_dir.lstat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as error:
        raise OutputError(f"{out_dir}: cannot be inspected: {error.strerror or error}") from None
    if mode is not None and stat.S_ISLNK(mode):
        raise OutputError(f"{out_dir}: is a symlink; {wanted} (the bundle is never written through a link)")
    if mode is not None and not stat.S_ISDIR(mode):
        kind = "a file" if stat.S_ISREG(mode) else "a special file"
        raise OutputError(f"{out_dir}: exists and is {kind}, not a directory; {wanted}")
    if mode is not None and any(out_dir.iterdir()):
        raise OutputError(f"{out_dir}: exists and is not empty; {wanted}")


def _move_into_place(staging: Path, out_dir: Path) -> None:
    """rename(2) replaces an empty directory atomically and refuses a non-empty one, so a file created in
    out_dir since the check is never lost."""
    try:
        os.rename(staging, out_dir)
    except OSError as error:
        raise OutputError(f"{out_dir}: cannot move the bundle into place: {error.strerror or error}") from None


def _write_files(bundle: Bundle, directory: Path) -> list[str]:
    """Every file of the bundle, harness.json last (it holds the others' sha256); the relative names."""
    _check_names(bundle)
    contents: dict[str, bytes] = {
        MODEL: bundle.model_bytes,
        INPUTS: _json_bytes([_polygraphy_arrays(bundle.inputs)]),
        GOLDEN: _json_bytes(_run_results(bundle)),
        **_backend_test_files(bundle),
        README: _readme(bundle).encode("utf-8"),
    }
    (directory / DATA_SET).mkdir()
    for name, data in contents.items():
        (directory / name).write_bytes(data)
    files = {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()}
    commands = {"check_command": bundle.check_command, "reduce_command": REDUCE_COMMAND}
    (directory / DESCRIPTION).write_bytes(_json_bytes({**bundle.description, **commands, "files": files}))
    return [*contents, DESCRIPTION]


def _check_names(bundle: Bundle) -> None:
    """Mistakes of the caller, not the user: Polygraphy would reject them only later and less clearly."""
    clashes = [key for key in _RESERVED if key in bundle.description]
    if clashes:
        raise ValueError(f"description keys {clashes} are written by the bundle itself")
    if not bundle.inputs or not bundle.outputs:
        raise ValueError("a bundle needs at least one input and one output")


def _polygraphy_array(array: np.ndarray) -> dict[str, str]:
    """Polygraphy's encoding of an ndarray (polygraphy/json/serde.py): base64 of np.save, no pickle."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return {"array": base64.b64encode(buffer.getvalue()).decode("ascii"), "polygraphy_class": "ndarray"}


def _polygraphy_arrays(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, str]]:
    return {name: _polygraphy_array(array) for name, array in arrays.items()}


def _run_results(bundle: Bundle) -> dict[str, Any]:
    """Polygraphy's RunResults (polygraphy/comparator/struct.py): one runner with one iteration."""
    outputs = {name: {"values": _polygraphy_array(array), "polygraphy_class": "LazyArray"}
               for name, array in bundle.outputs.items()}
    iteration = {"outputs": outputs, "runtime": 0.0, "runner_name": bundle.runner_name,
                 "polygraphy_class": "IterationResult"}
    return {"lst": [[bundle.runner_name, [iteration]]], "polygraphy_class": "RunResults"}


def _backend_test_files(bundle: Bundle) -> dict[str, bytes]:
    """test_data_set_0/input_i.pb and output_i.pb: TensorProtos named after the graph's tensors, in order."""
    from onnx import numpy_helper

    files = {}
    for kind, arrays in (("input", bundle.inputs), ("output", bundle.outputs)):
        for index, (name, array) in enumerate(arrays.items()):
            files[f"{DATA_SET}/{kind}_{index}.pb"] = numpy_helper.from_array(array, name=name).SerializeToString()
    return files


def _readme(bundle: Bundle) -> str:
    return (
        f"Debugging bundle of one exported model: model.onnx, its inputs (inputs.json and "
        f"{DATA_SET}/, the ONNX backend-test layout) and the golden outputs of {bundle.runner_name} "
        f"(golden.json); provenance in {DESCRIPTION}.\n"
        f"Check, from this directory: {bundle.check_command}\n"
        "Localize where another ONNX runtime (TensorRT below) departs from ONNX Runtime, node by node "
        f"(needs onnx_graphsurgeon; golden.json has final outputs only): {REDUCE_COMMAND}\n"
    )


def _json_bytes(document: Any) -> bytes:
    """Strict JSON (no NaN or Infinity), UTF-8, ending in a newline."""
    return (json.dumps(document, indent=2, allow_nan=False) + "\n").encode("utf-8")
