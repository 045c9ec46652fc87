"""Planting hostile inputs: a sandbox holding a temporary copy of the reference golden, a sentinel
directory outside it, suite and report files, and the actions cases.toml describes (writes, JSON
edits, symlinks, rewritten .npz members, zip bombs built by hand)."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import shutil
import signal
import struct
import tempfile
import tomllib
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tests.conftest import COMMITTED_GOLDEN, REFERENCE_ID

CASES_FILE = Path(__file__).resolve().parent / "cases.toml"
REFERENCE_TENSORS = next(COMMITTED_GOLDEN.glob(f"{REFERENCE_ID}.*.npz")).name
OTHER_TENSORS = next(COMMITTED_GOLDEN.glob("rnn-h8-s1.*.npz")).name  # another golden's (re-recording renames it)
CHUNK = 4 * 1024**2  # zero bytes per repeated deflate chunk of a bomb
Action = dict[str, Any]


@dataclass(frozen=True)
class Sandbox:
    """tmp/golden (the reference golden), tmp/outside (victim.json, victim.npz), tmp/suites, tmp/reports."""

    root: Path

    @property
    def golden(self) -> Path:
        return self.root / "golden"

    @property
    def outside(self) -> Path:
        return self.root / "outside"

    def expand(self, text: str) -> str:
        """{root}, {golden}, {outside}, {tensors} (the reference .npz name), {other_tensors} (rnn-h8-s1's),
        {committed} (the repo's golden/)."""
        for token, value in (("{root}", self.root), ("{golden}", self.golden), ("{outside}", self.outside),
                             ("{tensors}", REFERENCE_TENSORS), ("{other_tensors}", OTHER_TENSORS),
                             ("{committed}", COMMITTED_GOLDEN)):
            text = text.replace(token, str(value))
        return text

    def path(self, relative: str) -> Path:
        return self.root / self.expand(relative)


def make_sandbox(root: Path) -> Sandbox:
    """A fresh sandbox under root; the committed goldens are only ever read."""
    sandbox = Sandbox(root)
    for folder in ("golden", "outside", "suites", "reports"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    manifest = COMMITTED_GOLDEN / f"{REFERENCE_ID}.json"
    tensors = COMMITTED_GOLDEN / REFERENCE_TENSORS
    shutil.copyfile(manifest, sandbox.golden / manifest.name)
    shutil.copyfile(tensors, sandbox.golden / tensors.name)
    # The victims are a real golden's files: a loader that followed a path out would even succeed.
    shutil.copyfile(manifest, sandbox.outside / "victim.json")
    shutil.copyfile(tensors, sandbox.outside / "victim.npz")
    (root / "reports" / "report.json").write_bytes(real_report_bytes())
    return sandbox


@functools.cache
def real_report_bytes() -> bytes:
    """A real run report: `harness run --config rnn-h8-s0 --backend eager --json r.json`, made once."""
    from harness.cli import main

    with tempfile.TemporaryDirectory() as folder:
        golden = Path(folder) / "golden"
        golden.mkdir()
        for name in (f"{REFERENCE_ID}.json", REFERENCE_TENSORS):
            shutil.copyfile(COMMITTED_GOLDEN / name, golden / name)
        report = Path(folder) / "r.json"
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = main(["run", "--config", REFERENCE_ID, "--backend", "eager", "--golden-dir", str(golden),
                         "--json", str(report)])
        assert code == 0, "the reference run must pass to give a real report"
        return report.read_bytes()


class Hang(Exception):
    """A call ran past its time limit: a hostile input that hangs the harness is a bug too."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise Hang inside the block (main thread, SIGALRM) once it has run for `seconds`."""

    def expire(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def load_cases() -> list[dict[str, Any]]:
    return list(tomllib.loads(CASES_FILE.read_text(encoding="utf-8"))["case"])


def snapshot(directory: Path) -> dict[str, tuple[str, bytes | str]]:
    """Every entry under directory (symlinks not followed): relative path -> (kind, bytes or link target)."""
    entries: dict[str, tuple[str, bytes | str]] = {}
    for folder, subfolders, files in os.walk(directory):
        for name in [*subfolders, *files]:
            path = Path(folder) / name
            key = str(path.relative_to(directory))
            if path.is_symlink():
                entries[key] = ("link", os.readlink(path))
            elif path.is_dir():
                entries[key] = ("dir", "")
            else:
                entries[key] = ("file", path.read_bytes())
    return entries


# --- actions --------------------------------------------------------------------------------------


def apply(sandbox: Sandbox, action: Action) -> None:
    """Carry out one action of a case (see ACTIONS)."""
    fields = dict(action)
    operation = ACTIONS[fields.pop("op")]
    operation(sandbox, sandbox.path(fields.pop("path")), **fields)


def _write(sandbox: Sandbox, path: Path, *, text: str) -> None:
    path.write_bytes(text.encode("utf-8"))


def _write_hex(sandbox: Sandbox, path: Path, *, hex: str) -> None:  # `hex`: the field's name in cases.toml
    path.write_bytes(bytes.fromhex(hex))


def _repeat(sandbox: Sandbox, path: Path, *, text: str, count: int, prefix: str = "", suffix: str = "") -> None:
    path.write_bytes((prefix + text * count + suffix).encode("utf-8"))


def _replace(sandbox: Sandbox, path: Path, *, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"case data: {old!r} is not in {path.name}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _keys(key: str | list[Any]) -> list[Any]:
    return key if isinstance(key, list) else key.split(".")


def _parent(document: Any, keys: list[Any]) -> Any:
    for key in keys[:-1]:
        document = document[int(key)] if isinstance(document, list) else document[key]
    return document


def _json_set(sandbox: Sandbox, path: Path, *, key: str | list[Any], json_value: str) -> None:
    """Set a field to a raw JSON value (placeholders expanded in it)."""
    document = json.loads(path.read_text(encoding="utf-8"))
    keys = _keys(key)
    parent = _parent(document, keys)
    value = json.loads(sandbox.expand(json_value))
    if isinstance(parent, list):
        parent[int(keys[-1])] = value
    else:
        parent[keys[-1]] = value
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")


def _json_delete(sandbox: Sandbox, path: Path, *, key: str | list[Any]) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    keys = _keys(key)
    parent = _parent(document, keys)
    del parent[int(keys[-1]) if isinstance(parent, list) else keys[-1]]
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")


def _symlink(sandbox: Sandbox, path: Path, *, target: str) -> None:
    path.unlink(missing_ok=True)
    path.symlink_to(sandbox.expand(target))


def _delete(sandbox: Sandbox, path: Path) -> None:
    path.unlink()


def _truncate(sandbox: Sandbox, path: Path, *, size: int) -> None:
    """Cut a file to size bytes, or extend it (sparse, zeros) to size."""
    os.truncate(path, size)


def _mkdir(sandbox: Sandbox, path: Path) -> None:
    if path.exists():
        path.unlink()
    path.mkdir()


def _copy(sandbox: Sandbox, path: Path, *, source: str) -> None:
    shutil.copyfile(sandbox.path(source), path)  # {committed}/... expands to an absolute path


def _npz_member(sandbox: Sandbox, path: Path, *, member: str, kind: str, **fields: Any) -> None:
    """Rewrite one member of an .npz (the others kept, in order):
    object | big_endian | fortran | float64 | transpose (a relabelled array); copy (of member `source`);
    drop; short (the data cut by `cut` bytes); raw (the bytes of `text`); header (a hand-written .npy
    header `header` of `version`, then `data` zero bytes); many (members until there are `count`)."""
    members = read_members(path)
    original = members.get(member)
    array = np.load(io.BytesIO(original), allow_pickle=False) if original is not None else None
    if kind == "object":
        members[member] = npy_bytes(np.array([{"evil": 1}], dtype=object))
    elif kind == "big_endian":
        assert array is not None
        members[member] = npy_bytes(array.astype(array.dtype.newbyteorder(">")))
    elif kind == "fortran":
        assert array is not None
        members[member] = npy_bytes(np.asfortranarray(array))
    elif kind == "float64":
        assert array is not None
        members[member] = npy_bytes(array.astype(np.float64))
    elif kind == "transpose":
        assert array is not None
        members[member] = npy_bytes(np.ascontiguousarray(array.swapaxes(0, 1)))
    elif kind == "copy":
        members[member] = members[fields["source"]]
    elif kind == "drop":
        del members[member]
    elif kind == "short":
        assert original is not None
        members[member] = original[: len(original) - fields["cut"]]
    elif kind == "header":
        header = npy_header(sandbox.expand(fields["header"]), tuple(fields.get("version", (1, 0))))
        members[member] = header + bytes(fields["data"])
    elif kind == "raw":
        members[member] = fields["text"].encode("latin1")
    elif kind == "many":
        source = members[fields["source"]]
        for number in range(fields["count"] - len(members)):
            members[f"{member}{number}.npy"] = source
    else:
        raise AssertionError(f"case data: unknown npz_member kind {kind!r}")
    write_members(path, members)


def _bomb(sandbox: Sandbox, path: Path, *, member: str, shape: list[int], zeros: int,
          claim: int | None = None, crc_of_claim: bool = False) -> None:
    """Replace `member` with a deflate bomb: an .npy header declaring `shape` (float32), then `zeros`
    zero bytes in a stream of a few MB; the zip's directory says it inflates to `claim` bytes (default:
    the truth), with the CRC-32 of everything or (crc_of_claim) of those first bytes only. The other
    members are kept after it."""
    others = {name: data for name, data in read_members(path).items() if name != member}
    header = npy_header(f"{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple(shape)}, }}")
    path.write_bytes(deflate_bomb_zip(member, header, zeros, claim, crc_of_claim=crc_of_claim))
    with zipfile.ZipFile(path, "a") as archive:
        for name, data in others.items():
            archive.writestr(name, data)


ZIP_CENTRAL_FIELDS = {"extract_version": 6, "flag_bits": 8, "compress_type": 10}  # offsets in a directory entry


def _zip_field(sandbox: Sandbox, path: Path, *, member: str, field: str, value: int) -> None:
    """Set one 2-byte field of a member's central directory entry (what zipfile trusts when opening)."""
    data = bytearray(path.read_bytes())
    start = 0
    while (start := data.find(b"PK\x01\x02", start)) >= 0:
        name_length = struct.unpack_from("<H", data, start + 28)[0]
        if data[start + 46: start + 46 + name_length] == member.encode():
            struct.pack_into("<H", data, start + ZIP_CENTRAL_FIELDS[field], value)
            path.write_bytes(bytes(data))
            return
        start += 4
    raise AssertionError(f"case data: no member {member!r} in {path.name}")


ZIP_METHODS = {"stored": zipfile.ZIP_STORED, "deflated": zipfile.ZIP_DEFLATED, "bzip2": zipfile.ZIP_BZIP2,
               "lzma": zipfile.ZIP_LZMA}


def _npz_compress(sandbox: Sandbox, path: Path, *, method: str) -> None:
    """Rewrite every member with a compression method (np.savez_compressed writes deflated members)."""
    members = read_members(path)
    with zipfile.ZipFile(path, "w", compression=ZIP_METHODS[method]) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _zip_flip(sandbox: Sandbox, path: Path, *, member: str, offset: int, mask: int = 0xFF) -> None:
    """XOR one byte of a member's stored (compressed) data, `offset` bytes after its local header."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
    data[info.header_offset + 30 + name_length + extra_length + offset] ^= mask
    path.write_bytes(bytes(data))


def _copy_artifacts(sandbox: Sandbox, path: Path) -> None:
    """The reference golden's stored artifacts, copied into path (the golden directory's artifacts/)."""
    path.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((COMMITTED_GOLDEN / f"{REFERENCE_ID}.json").read_text(encoding="utf-8"))
    for entry in manifest["artifacts"].values():
        shutil.copyfile(COMMITTED_GOLDEN / "artifacts" / entry["file"], path / entry["file"])


def rnn_with_a_bomb(export: Path) -> bytes:
    """The reference's real ONNX export, its first output also adding 0 x the sum of 2 GiB of zeros made by a
    984-byte ConstantOfShape: a recurrence and outputs that depend on the input, so only the size bound
    can refuse it."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(export))
    output = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [f"{name}__inner" if name == output else name for name in node.output]
    model.graph.initializer.extend([helper.make_tensor("bomb_shape", TensorProto.INT64, [1], [2**29]),
                                    helper.make_tensor("bomb_zero", TensorProto.FLOAT, [], [0.0])])
    model.graph.node.extend([helper.make_node("ConstantOfShape", ["bomb_shape"], ["bomb"]),
                             helper.make_node("ReduceSum", ["bomb"], ["bomb_total"], keepdims=0),
                             helper.make_node("Mul", ["bomb_total", "bomb_zero"], ["bomb_nothing"]),
                             helper.make_node("Add", [f"{output}__inner", "bomb_nothing"], [output])])
    return bytes(model.SerializeToString())


def _plant(sandbox: Sandbox, path: Path, *, backend: str, craft: str) -> None:
    """A crafted artifact in place of the backend's stored one, the manifest (path) re-sealed as an attacker
    would: file name, sha256, size, and for ONNX the structure recomputed from the planted bytes. Payloads
    that run code or map a file aim at the sentinel directory, so the snapshot check catches them."""
    import hashlib

    from harness.judging.structure import onnx_structure
    from harness.store.artifacts import artifact_file_name
    from tests import test_artifact_gates as crafts

    manifest = json.loads(path.read_text(encoding="utf-8"))
    with np.load(sandbox.golden / manifest["tensors_file"]) as tensors:
        golden = {name: tensors[name] for name in manifest["tensors"]}
    marker = sandbox.outside / "planted-code-ran"
    data = {"constant": lambda: crafts.constant_model(golden),
            "external-data": lambda: crafts.external_data_model("README.md"),
            "foreign-domain": crafts.foreign_domain_model,
            "loop-2-63": crafts.endless_loop_model,
            "bomb-2gb": lambda: rnn_with_a_bomb(COMMITTED_GOLDEN / "artifacts" / manifest["artifacts"][backend]
                                                ["file"]),
            "pickled-weight": lambda: crafts.pickled_weight_archive(marker),
            "from-file": lambda: crafts.from_file_archive(marker)}[craft]()
    entry = manifest["artifacts"][backend]
    sha256 = hashlib.sha256(data).hexdigest()
    entry.update(file=artifact_file_name(manifest["config_id"], entry["kind"], sha256), sha256=sha256,
                 bytes=len(data))
    if entry["kind"] == "onnx":
        entry["structure"] = onnx_structure(data).to_dict()
    (sandbox.golden / "artifacts" / entry["file"]).write_bytes(data)
    path.write_text(json.dumps(manifest, indent=1), encoding="utf-8")


ACTIONS: dict[str, Callable[..., None]] = {
    "write": _write, "write_hex": _write_hex, "repeat": _repeat, "replace": _replace, "json_set": _json_set,
    "json_delete": _json_delete, "symlink": _symlink, "delete": _delete, "truncate": _truncate, "mkdir": _mkdir,
    "copy": _copy, "npz_member": _npz_member, "bomb": _bomb, "zip_field": _zip_field, "npz_compress": _npz_compress,
    "zip_flip": _zip_flip, "copy_artifacts": _copy_artifacts, "plant": _plant,
}


# --- .npy and .npz by hand ------------------------------------------------------------------------


def read_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def write_members(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=True)  # object arrays: the pickle attack itself
    return buffer.getvalue()


def npy_header(literal: str, version: tuple[int, int] = (1, 0)) -> bytes:
    """An .npy preamble written by hand: magic, version, length, the header text padded to 64 bytes."""
    length_format = "<H" if version == (1, 0) else "<I"
    preamble = 6 + 2 + struct.calcsize(length_format)
    text = literal.encode("latin1")
    padding = -(preamble + len(text) + 1) % 64
    text += b" " * padding + b"\n"
    return b"\x93NUMPY" + bytes(version) + struct.pack(length_format, len(text)) + text


@functools.cache
def _deflated(prefix: bytes, zeros: int) -> bytes:
    """A raw deflate stream of prefix then `zeros` zero bytes, built from one compressed chunk repeated:
    every chunk ends in a full flush (history reset, byte aligned), so equal chunks compress equally."""
    assert zeros % CHUNK == 0, "zeros must be a multiple of CHUNK"
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(prefix) + compressor.flush(zlib.Z_FULL_FLUSH)
    chunk = compressor.compress(bytes(CHUNK)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return head + chunk * (zeros // CHUNK) + compressor.flush(zlib.Z_FINISH)


def crc32_of_zeros(crc: int, count: int) -> int:
    """zlib.crc32(bytes(count), crc) without reading count bytes: on zero data the CRC register is linear
    over GF(2), so count zero bytes are one 32x32 bit-matrix power (the trick of zlib's crc32_combine)."""

    def times(matrix: list[int], vector: int) -> int:
        total = 0
        for column in matrix:
            if not vector:
                break
            if vector & 1:
                total ^= column
            vector >>= 1
        return total

    operator = [0xEDB88320] + [1 << bit for bit in range(31)]  # the register after one zero bit
    for _ in range(3):  # 2, 4, 8 bits: one zero byte
        operator = [times(operator, column) for column in operator]
    register = ~crc & 0xFFFFFFFF
    while count:
        if count & 1:
            register = times(operator, register)
        operator = [times(operator, column) for column in operator]
        count >>= 1
    return ~register & 0xFFFFFFFF


def deflate_bomb_zip(member: str, prefix: bytes, zeros: int, claim: int | None = None, *,
                     crc_of_claim: bool = False) -> bytes:
    """A one-member ZIP_DEFLATED zip (zip64 sizes) whose member inflates to prefix + `zeros` zero bytes;
    its directory records `claim` as the inflated size (default: the true size) and the CRC-32 of all
    of it, or (crc_of_claim) of the first `claim` bytes, so that a reader stopping there sees no fault."""
    stream = _deflated(prefix, zeros)
    size = len(prefix) + zeros
    claimed = size if claim is None else claim
    covered = claimed if crc_of_claim else size
    assert covered >= len(prefix), "the claim must cover the .npy header"
    crc = crc32_of_zeros(zlib.crc32(prefix), covered - len(prefix))
    name = member.encode()
    extra = struct.pack("<HHQQ", 1, 16, claimed, len(stream))  # zip64: uncompressed, compressed size
    dos_date = 0x21  # 1980-01-01
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 45, 0, zipfile.ZIP_DEFLATED, 0, dos_date, crc,
                        0xFFFFFFFF, 0xFFFFFFFF, len(name), len(extra)) + name + extra
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 45, 45, 0, zipfile.ZIP_DEFLATED, 0, dos_date, crc,
                          0xFFFFFFFF, 0xFFFFFFFF, len(name), len(extra), 0, 0, 0, 0, 0) + name + extra
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local) + len(stream), 0)
    return local + stream + central + end
