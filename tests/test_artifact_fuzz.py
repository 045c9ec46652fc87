"""Fuzzing the artifact gates with mutated real artifacts of each kind (ONNX protobufs, TorchScript and .pt2
zip archives, and the members inside those archives): a gate returns facts or raises GoldenError, never
anything else. The default hypothesis profile keeps this fast; HYPOTHESIS_PROFILE=fuzz digs deeper."""

from __future__ import annotations

import functools
import io
import json
import zipfile
from pathlib import Path

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
