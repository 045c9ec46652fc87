"""Fuzzing the artifact gates with mutated real artifacts of each kind (ONNX protobufs, TorchScript and .pt2
zip archives, and the members inside those archives): a gate returns facts or raises GoldenError, never
anything else. The default hypothesis profile keeps this fast; HYPOTHESIS_PROFILE=fuzz digs deeper."""

from __future__ import annotations

import functools
import io
import json
import zipfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from harness.errors import GoldenError
from harness.store.gates import ArtifactFacts, verify_artifact

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
CONFIG = "gru-h8-s0"
KINDS = ("onnx", "torchscript", "torch-export")


@functools.cache
def real(kind: str) -> bytes:
    artifacts = json.loads((GOLDEN / f"{CONFIG}.json").read_text())["artifacts"]
    return (GOLDEN / "artifacts" / next(entry["file"] for entry in artifacts.values()
                                        if entry["kind"] == kind)).read_bytes()


def gated(kind: str, data: bytes, built_in_rnn: bool) -> None:
    try:
        facts = verify_artifact(kind, data, where="fuzzed", built_in_rnn=built_in_rnn)
    except GoldenError as error:
        assert "\n" not in error.message and error.message.startswith("fuzzed: ")
    else:
        assert isinstance(facts, ArtifactFacts) and facts.kind == kind


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """The bytes with a few flips, insertions, deletions, or a truncation."""
    buffer = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, max(len(buffer) - 1, 0)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if action == "flip" and buffer:
            buffer[position] ^= draw(st.integers(1, 255))
        elif action == "insert":
            buffer[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del buffer[position:position + draw(st.integers(1, 8))]
        else:
            del buffer[position:]
    return bytes(buffer)


@st.composite
def member_mutated(draw: st.DrawFn, kind: str) -> bytes:
    """A real archive re-zipped with one member's bytes mutated (a flipped byte in a zip breaks its CRC:
    this reaches the code, pickle and JSON parsers instead)."""
    source = zipfile.ZipFile(io.BytesIO(real(kind)))
    names = source.namelist()
    chosen = draw(st.sampled_from(names))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for name in names:
            content = source.read(name)
            target.writestr(name, draw(mutated(content)) if name == chosen else content)
    return buffer.getvalue()


@given(kind=st.sampled_from(KINDS), data=st.data(), built_in_rnn=st.booleans())
def test_mutated_bytes_are_refused_or_pass_never_crash(kind: str, data: st.DataObject, built_in_rnn: bool) -> None:
    gated(kind, data.draw(mutated(real(kind))), built_in_rnn)


@given(kind=st.sampled_from(("torchscript", "torch-export")), data=st.data(), built_in_rnn=st.booleans())
def test_mutated_archive_members_are_refused_or_pass_never_crash(kind: str, data: st.DataObject,
                                                                 built_in_rnn: bool) -> None:
    gated(kind, data.draw(member_mutated(kind)), built_in_rnn)


@given(kind=st.sampled_from(KINDS), data=st.binary(max_size=512))
def test_arbitrary_bytes_are_refused_never_crash(kind: str, data: bytes) -> None:
    gated(kind, data, True)


# --- export-cache entries: a sound entry with any field of its JSON replaced, or its bytes mutated --------

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


@given(field=st.sampled_from(["schema", "kind", "sha256", "bytes", "producer", "notes", "hmac", "extra"]),
       value=JSON_VALUES, flips=st.lists(st.integers(min_value=0), max_size=3))
def test_a_tampered_cache_entry_is_discarded_with_a_reason_never_served_or_raised(
        tmp_path_factory: Any, field: str, value: Any, flips: list[int]) -> None:
    from harness.backends.base import Artifact
    from harness.store.cache import ExportCache

    cache = ExportCache(tmp_path_factory.mktemp("cache"), secret=b"k" * 32)
    key = "cd" + "0" * 62
    data = real("onnx")
    assert cache.put(key, Artifact(kind="onnx", data=data, producer={"exporter": "x"}), ("a note",)) == ""
    meta_path = next(cache.root.glob(f"*/{key}.json"))
    original = json.loads(meta_path.read_text())
    meta = {**original, field: value}
    meta_path.write_text(json.dumps(meta))
    data_path = next(path for path in cache.root.glob(f"*/{key}.*") if path.suffix != ".json")
    mutated = bytearray(data)
    for flip in flips:
        mutated[flip % len(mutated)] ^= 0xFF
    data_path.write_bytes(bytes(mutated))
    lookup = cache.get(key, built_in_rnn=True)
    if lookup.entry is not None:  # only an untouched entry may be served: the same field value, the same bytes
        assert bytes(mutated) == data and meta == original
        assert lookup.entry.artifact.data == data
    else:
        assert lookup.discarded and "\n" not in lookup.discarded
