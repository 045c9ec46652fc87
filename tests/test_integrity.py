"""The store's integrity checks (harness.store.files: confined_tensors_path, check_manifest_path, read_tensors,
verify_tensors, numpy_dtype) and the fingerprints they rely on (harness.model.hashing), on hand-made files:
a file that is not exactly what its manifest declares is refused, with one line naming the file."""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from harness.errors import GoldenError
from harness.model.hashing import array_sha256, arrays_sha256, bytes_sha256
from harness.store.files import (
    MAX_MEMBERS,
    NPY_HEADER_ROOM,
    TensorSpec,
    check_manifest_path,
    confined_tensors_path,
    numpy_dtype,
    read_tensors,
    verify_tensors,
)

DIGEST = "0123456789ab"


def npy(array: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, version=version, allow_pickle=False)
    return buffer.getvalue()


def write_zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def specs(**declared: tuple[tuple[int, ...], str]) -> Any:
    """spec_of for read_tensors: the declared names, None for anything else."""
    def spec_of(name: str) -> TensorSpec | None:
        return TensorSpec(*declared[name]) if name in declared else None
    return spec_of


def refused(path: Path, message: str) -> Any:
    """pytest.raises for a GoldenError that is exactly '<path>: <message>'."""
    return pytest.raises(GoldenError, match=f"^{re.escape(f'{path}: {message}')}$")


# -- numpy_dtype -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["float16", "float32", "float64", "bfloat16"])
def test_numpy_dtype_of_every_tensor_dtype(name: str) -> None:
    dtype = numpy_dtype(name)
    assert str(dtype) == name and dtype.isnative
    assert numpy_dtype("bfloat16") == np.dtype(ml_dtypes.bfloat16) and numpy_dtype("bfloat16").itemsize == 2
    assert TensorSpec((2, 3), name).nbytes == 6 * dtype.itemsize


def test_numpy_dtype_of_bfloat16_does_not_need_numpy_to_know_the_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """np.dtype("bfloat16") only works once ml_dtypes registered the name; the store asks ml_dtypes itself."""
    monkeypatch.delitem(np.sctypeDict, "bfloat16", raising=False)
    with pytest.raises(TypeError):
        np.dtype("bfloat16")
    assert numpy_dtype("bfloat16") == np.dtype(ml_dtypes.bfloat16)


# -- confined_tensors_path and check_manifest_path -------------------------------------------------------


def test_the_store_named_tensors_file_of_this_golden_is_accepted(tmp_path: Path) -> None:
    assert confined_tensors_path(tmp_path, tmp_path / "rnn-h8-s0.json", f"rnn-h8-s0.{DIGEST}.npz") == (
        tmp_path / f"rnn-h8-s0.{DIGEST}.npz")


@pytest.mark.parametrize("tensors_file", [
    f"other.{DIGEST}.npz", f"../rnn-h8-s0.{DIGEST}.npz", f"/tmp/rnn-h8-s0.{DIGEST}.npz", f"sub/rnn-h8-s0.{DIGEST}.npz",
    "rnn-h8-s0.0123456789AB.npz", "rnn-h8-s0.0123456789a.npz", "rnn-h8-s0.npz", f"rnn-h8-s0.{DIGEST}.npy",
    "", None, 7, ["rnn-h8-s0.0123456789ab.npz"],
])
def test_any_other_tensors_file_name_is_refused(tmp_path: Path, tensors_file: object) -> None:
    manifest = tmp_path / "rnn-h8-s0.json"
    with refused(manifest, f"tensors_file {tensors_file!r} is not a tensors file of this golden (expected "
                           f"rnn-h8-s0.<12 hex digits>.npz inside {tmp_path})"):
        confined_tensors_path(tmp_path, manifest, tensors_file)


def test_a_tensors_file_that_is_a_symlink_is_refused_wherever_it_leads(tmp_path: Path) -> None:
    root, outside = tmp_path / "golden", tmp_path / "elsewhere.npz"
    root.mkdir()
    outside.write_bytes(b"")
    (root / f"inside.{DIGEST}.npz").write_bytes(b"")
    manifest, name = root / "g.json", f"g.{DIGEST}.npz"
    for target in (outside, root / f"inside.{DIGEST}.npz"):
        (root / name).unlink(missing_ok=True)
        (root / name).symlink_to(target)
        with refused(manifest, f"tensors_file {name!r} leads outside {root}"):
            confined_tensors_path(root, manifest, name)


def test_a_golden_directory_reached_through_a_symlink_is_fine(tmp_path: Path) -> None:
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    link.symlink_to(real)
    assert confined_tensors_path(link, link / "g.json", f"g.{DIGEST}.npz") == link / f"g.{DIGEST}.npz"
    (real / "g.json").write_text("{}")
    check_manifest_path(link / "g.json")


def test_a_manifest_symlink_is_refused_only_when_it_leads_out(tmp_path: Path) -> None:
    root = tmp_path / "golden"
    root.mkdir()
    (root / "real.json").write_text("{}")
    (tmp_path / "outside.json").write_text("{}")
    check_manifest_path(root / "real.json")
    (root / "inside.json").symlink_to(root / "real.json")
    check_manifest_path(root / "inside.json")
    (root / "out.json").symlink_to(tmp_path / "outside.json")
    with refused(root / "out.json", f"is a symlink leading outside {root}"):
        check_manifest_path(root / "out.json")


# -- read_tensors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])  # bfloat16: tests/test_judging_regressions.py
def test_every_tensor_dtype_reads_back_exactly(tmp_path: Path, dtype: str) -> None:
    values = np.array([[0.0, -0.0, 1.5], [np.inf, -np.inf, np.nan]], dtype=numpy_dtype(dtype))
    empty = np.zeros((0, 3), numpy_dtype(dtype))
    path = write_zip(tmp_path / "t.npz", {"output.npy": npy(values), "h_n.npy": npy(empty)})
    read = read_tensors(path, specs(output=((2, 3), dtype), h_n=((0, 3), dtype)))
    assert list(read) == ["output", "h_n"] and read["output"].dtype == values.dtype
    assert read["output"].tobytes() == values.tobytes() and read["h_n"].shape == (0, 3)
    assert read["output"].flags.writeable and read["output"].flags.c_contiguous


@pytest.mark.parametrize("version", [(1, 0), (2, 0)])
@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_npy_format_1_and_2_stored_or_deflated_are_read(tmp_path: Path, version: tuple[int, int],
                                                         compression: int) -> None:
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    path = write_zip(tmp_path / "t.npz", {"output.npy": npy(values, version)}, compression)
    assert read_tensors(path, specs(output=((2, 3), "float32")))["output"].tolist() == values.tolist()


def test_other_npy_formats_are_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "t.npz", {"output.npy": npy(np.zeros(2, np.float32), (3, 0))})
    with refused(path, "corrupt golden tensors file: member 'output.npy' is .npy format 3.0; goldens use 1.0 or 2.0"):
        read_tensors(path, specs(output=((2,), "float32")))


@pytest.mark.parametrize("compression", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_other_compression_methods_are_refused(tmp_path: Path, compression: int) -> None:
    path = write_zip(tmp_path / "t.npz", {"output.npy": npy(np.zeros(2, np.float32))}, compression)
    with refused(path, f"corrupt golden tensors file: member 'output.npy' is encrypted or compressed with method "
                       f"{compression}; goldens are stored or deflated"):
        read_tensors(path, specs(output=((2,), "float32")))


def test_a_missing_tensors_file(tmp_path: Path) -> None:
    with refused(tmp_path / "gone.npz", "golden tensors file is missing"):
        read_tensors(tmp_path / "gone.npz", specs())


def test_a_file_that_is_not_a_zip_is_corrupt_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "t.npz"
    path.write_bytes(b"not a zip at all")
    with refused(path, "corrupt golden tensors file: File is not a zip file"):
        read_tensors(path, specs())


def test_up_to_max_members_are_read_and_one_more_is_refused(tmp_path: Path) -> None:
    one = npy(np.zeros(1, np.float32))
    declared = {f"t{i}": ((1,), "float32") for i in range(MAX_MEMBERS + 1)}
    full = write_zip(tmp_path / "full.npz", {f"t{i}.npy": one for i in range(MAX_MEMBERS)})
    assert len(read_tensors(full, specs(**declared))) == MAX_MEMBERS
    over = write_zip(tmp_path / "over.npz", {f"t{i}.npy": one for i in range(MAX_MEMBERS + 1)})
    with refused(over, f"{MAX_MEMBERS + 1} members in a tensors file: refused"):
        read_tensors(over, specs(**declared))


@pytest.mark.parametrize("member", ["extra.npy", "output", "output.npz", "dir/output.npy"])
def test_a_member_the_manifest_does_not_declare_is_refused(tmp_path: Path, member: str) -> None:
    path = write_zip(tmp_path / "t.npz", {member: npy(np.zeros(2, np.float32))})
    with refused(path, f"holds {member!r}, which its manifest does not declare"):
        read_tensors(path, specs(output=((2,), "float32")))  # "output" is declared, but only as output.npy


def test_declaring_more_than_the_byte_limit_is_refused_before_reading(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "t.npz", {"a.npy": npy(np.zeros(4, np.float32)), "b.npy": npy(np.zeros(4, np.float32))})
    with refused(path, "declares more than 1024 MiB of tensors: refused"):
        read_tensors(path, specs(a=((2**27,), "float32"), b=((2**27 + 1,), "float32")))
    at_the_limit = specs(a=((2**27,), "float32"), b=((2**27,), "float32"))  # exactly 1 GiB: read, then refused
    with refused(path, "member 'a.npy' holds (4,) <f4; its manifest declares (134217728,) float32 (<f4)"):
        read_tensors(path, at_the_limit)


def test_a_member_that_inflates_beyond_its_declared_size_is_refused_unread(tmp_path: Path) -> None:
    spec = TensorSpec((4,), "float32")
    limit = spec.nbytes + NPY_HEADER_ROOM
    data = npy(np.zeros(4, np.float32))
    over = write_zip(tmp_path / "over.npz", {"a.npy": data + b"\0" * (limit + 1 - len(data))})
    with refused(over, f"member 'a.npy' inflates to {limit + 1} bytes, but its manifest declares (4,) float32 "
                       f"(16 bytes): refused before reading"):
        read_tensors(over, specs(a=((4,), "float32")))
    at = write_zip(tmp_path / "at.npz", {"a.npy": data + b"\0" * (limit - len(data))})
    with refused(at, "member 'a.npy' holds 17 bytes of data, expected 16"):  # within the room: read, then refused
        read_tensors(at, specs(a=((4,), "float32")))


@pytest.mark.parametrize(("stored", "held"), [
    (np.zeros(3, np.float32), "(3,) <f4"),  # another shape
    (np.zeros(2, np.float64), "(2,) <f8"),  # another dtype
    (np.zeros(2, ">f4"), "(2,) >f4"),  # another byte order: the same size, other numbers
    (np.zeros(2, np.float16), "(2,) <f2"),
])
def test_a_member_header_must_declare_exactly_the_manifests_shape_and_dtype(
    tmp_path: Path, stored: np.ndarray, held: str
) -> None:
    path = write_zip(tmp_path / "t.npz", {"output.npy": npy(stored)})
    with refused(path, f"member 'output.npy' holds {held}; its manifest declares (2,) float32 (<f4)"):
        read_tensors(path, specs(output=((2,), "float32")))


def test_fortran_order_is_refused(tmp_path: Path) -> None:
    values = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    path = write_zip(tmp_path / "t.npz", {"output.npy": npy(values)})
    with refused(path, "member 'output.npy' holds (2, 3) <f4 (Fortran order); its manifest declares (2, 3) float32 "
                       "(<f4)"):
        read_tensors(path, specs(output=((2, 3), "float32")))


def test_object_arrays_are_refused_without_unpickling(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"evil": 1}, None], dtype=object), allow_pickle=True)
    path = write_zip(tmp_path / "t.npz", {"output.npy": buffer.getvalue()})
    with refused(path, "member 'output.npy' holds (2,) |O; its manifest declares (2,) float32 (<f4)"):
        read_tensors(path, specs(output=((2,), "float32")))


@pytest.mark.parametrize(("extra", "held"), [(-4, 12), (-1, 15), (1, 17), (2, 17), (100, 17)])
def test_the_data_after_the_header_must_be_exactly_the_declared_bytes(tmp_path: Path, extra: int, held: int) -> None:
    data = npy(np.zeros(4, np.float32))
    member = data[:extra] if extra < 0 else data + b"\0" * extra
    path = write_zip(tmp_path / "t.npz", {"output.npy": member})
    with refused(path, f"member 'output.npy' holds {held} bytes of data, expected 16"):
        read_tensors(path, specs(output=((4,), "float32")))


def test_a_truncated_header_is_corrupt(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "t.npz", {"output.npy": npy(np.zeros(4, np.float32))[:20]})
    with pytest.raises(GoldenError, match=f"^{re.escape(str(path))}: corrupt golden tensors file: "):
        read_tensors(path, specs(output=((4,), "float32")))


def test_an_encrypted_member_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "t.npz", {"output.npy": npy(np.zeros(2, np.float32))})
    data = bytearray(path.read_bytes())
    central = data.index(b"PK\x01\x02")  # the central directory entry: its flag bits are at offset 8
    data[central + 8] |= 0x1
    path.write_bytes(bytes(data))
    with refused(path, "corrupt golden tensors file: member 'output.npy' is encrypted or compressed with method 8; "
                       "goldens are stored or deflated"):
        read_tensors(path, specs(output=((2,), "float32")))


# -- verify_tensors --------------------------------------------------------------------------------------


def manifest_entries(arrays: dict[str, np.ndarray], digest: Any = array_sha256) -> dict[str, Any]:
    return {name: {"sha256": digest(array)} for name, array in arrays.items()}


def test_verify_accepts_tensors_matching_their_manifest(tmp_path: Path) -> None:
    arrays = {"output": np.arange(4, dtype=np.float32), "h_n": np.zeros((0, 2), np.float64)}
    verify_tensors(tmp_path / "t.npz", arrays, manifest_entries(arrays), schema_version=2)
    verify_tensors(tmp_path / "t.npz", arrays, manifest_entries(arrays, bytes_sha256), schema_version=1)


def test_verify_names_missing_and_extra_tensors(tmp_path: Path) -> None:
    arrays = {"output": np.zeros(2, np.float32)}
    with refused(tmp_path / "t.npz", "holds tensors ['output'], manifest lists ['c_n', 'output']"):
        verify_tensors(tmp_path / "t.npz", arrays, {**manifest_entries(arrays), "c_n": {"sha256": ""}},
                       schema_version=2)
    with refused(tmp_path / "t.npz", "holds tensors ['h_n', 'output'], manifest lists ['output']"):
        verify_tensors(tmp_path / "t.npz", {**arrays, "h_n": arrays["output"]}, manifest_entries(arrays),
                       schema_version=2)


def test_verify_refuses_an_edited_tensor(tmp_path: Path) -> None:
    arrays = {"output": np.zeros(2, np.float32), "h_n": np.ones(2, np.float32)}
    one_ulp_up = np.nextafter(np.float32(1), np.float32(2))
    edited = {"output": arrays["output"], "h_n": np.array([1.0, one_ulp_up], np.float32)}
    for version, digest in ((2, array_sha256), (1, bytes_sha256)):
        with refused(tmp_path / "t.npz", "tensor 'h_n' does not match the sha256 in its manifest (edited or corrupt)"):
            verify_tensors(tmp_path / "t.npz", edited, manifest_entries(arrays, digest), schema_version=version)


def test_schema_2_hashes_meaning_so_relabelled_bytes_fail_while_schema_1_hashed_bytes_only(tmp_path: Path) -> None:
    values = np.arange(4, dtype=np.float32)
    for relabelled in (values.view(np.int32), values.reshape(2, 2), values.astype(">f4").view(">f4").byteswap()):
        assert relabelled.tobytes() == values.tobytes()
        assert array_sha256(relabelled) != array_sha256(values) and bytes_sha256(relabelled) == bytes_sha256(values)
        with pytest.raises(GoldenError, match="does not match the sha256"):
            verify_tensors(tmp_path / "t.npz", {"x": relabelled}, manifest_entries({"x": values}), schema_version=2)
        verify_tensors(tmp_path / "t.npz", {"x": relabelled}, manifest_entries({"x": values}, bytes_sha256),
                       schema_version=1)


# -- hashing ---------------------------------------------------------------------------------------------


def test_array_sha256_is_the_documented_digest() -> None:
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert array_sha256(values) == hashlib.sha256(b"harness-tensor/2|<f4|(2, 3)|" + values.tobytes()).hexdigest()
    assert bytes_sha256(values) == hashlib.sha256(values.tobytes()).hexdigest()
    transposed = values.T  # not contiguous: hashed in C order, like its contiguous copy
    assert array_sha256(transposed) == array_sha256(np.ascontiguousarray(transposed))
    assert bytes_sha256(transposed) == hashlib.sha256(np.ascontiguousarray(transposed).tobytes()).hexdigest()


def test_arrays_sha256_covers_names_dtypes_shapes_bytes_and_order() -> None:
    a, b = np.zeros(2, np.float32), np.ones(2, np.float32)
    base = arrays_sha256({"output": a, "h_n": b})
    assert base == hashlib.sha256(b"output|<f4|(2,)|" + a.tobytes() + b"h_n|<f4|(2,)|" + b.tobytes()).hexdigest()
    variants = [{"h_n": b, "output": a}, {"output": a, "c_n": b}, {"output": a.view(np.int32), "h_n": b},
                {"output": a.reshape(2, 1), "h_n": b}, {"output": a, "h_n": b.copy() * 2}, {"output": a}]
    assert base not in {arrays_sha256(arrays) for arrays in variants}
    assert arrays_sha256({"output": a.reshape(1, 2).T.T, "h_n": b[::1]}) != arrays_sha256({})
    assert arrays_sha256({"x": np.arange(4.0)[::2]}) == arrays_sha256({"x": np.array([0.0, 2.0])})
