"""Reading the zip archives torch writes (TorchScript .pt, torch.export .pt2, torch.save inside them) without
trusting them: member names stay inside the archive, sizes are bounded, and a pickle's global names are
listed by walking its opcodes (pickletools), never by unpickling it."""

from __future__ import annotations

import io
import pickletools
import re
import warnings
import zipfile
import zlib
from collections.abc import Iterator

from harness.store.gates.facts import MAX_ARCHIVE_MEMBERS, MAX_UNPACKED_BYTES, refused

_TOP = re.compile(r"[A-Za-z0-9_.-]{1,200}")
_PART = re.compile(r"[A-Za-z0-9_.-]{1,200}")
_STRINGS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING",
                      "STRING"})
_MEMO = frozenset({"MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"})
# Opcodes that take a class from outside the GLOBAL names, or from the extension registry: never in torch's pickles.
_REFUSED_OPCODES = frozenset({"INST", "OBJ", "EXT1", "EXT2", "EXT4"})


def read_archive(data: bytes, where: str, kind: str) -> dict[str, bytes]:
    """Every member by its name below the archive's one top folder; GoldenError for anything but a plain zip
    (stored or deflated, as torch writes) of at most MAX_ARCHIVE_MEMBERS members and MAX_UNPACKED_BYTES as
    declared (zipfile never inflates a member past its declared size), with safe, unique names."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, KeyError) as error:
        raise refused(where, f"not a {kind} archive: {error}") from None
    if len(infos) > MAX_ARCHIVE_MEMBERS or sum(info.file_size for info in infos) > MAX_UNPACKED_BYTES:
        raise refused(where, f"{kind} archive of {len(infos)} members unpacks to "
                             f"{sum(info.file_size for info in infos)} bytes, over the bound: refused")
    members: dict[str, bytes] = {}
    tops = set()
    for info in infos:
        top, _, rest = info.filename.partition("/")
        if not _TOP.fullmatch(top) or top in (".", "..") or not rest or not all(
                _PART.fullmatch(part) and part not in (".", "..") for part in rest.split("/")):
            raise refused(where, f"{kind} archive member {info.filename!r} is not a plain relative name: refused")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or info.flag_bits & 0x1:
            raise refused(where, f"{kind} archive member {info.filename!r} is encrypted or packed in a way torch "
                                 "never writes: refused")
        if rest in members:
            raise refused(where, f"{kind} archive member {info.filename!r} appears twice: refused")
        tops.add(top)
        try:
            members[rest] = archive.read(info)
        except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, NotImplementedError) as error:
            raise refused(where, f"{kind} archive member {info.filename!r} cannot be read: {error}") from None
    if len(tops) > 1:
        raise refused(where, f"{kind} archive has {len(tops)} top folders ({', '.join(sorted(tops)[:3])}): refused")
    return members


def pickle_globals(data: bytes, where: str, member: str) -> Iterator[str]:
    """The dotted names of every global a pickle refers to (GLOBAL, and STACK_GLOBAL of two literal strings);
    GoldenError for a pickle that is malformed or names a class in any other way."""
    strings: list[str] = []  # literal strings pushed since the last other opcode (memo puts aside)
    try:
        with warnings.catch_warnings():  # a text-protocol string with a bad escape warns: it is refused anyway
            warnings.simplefilter("ignore")
            operations = list(pickletools.genops(data))
    except (ValueError, KeyError, IndexError, TypeError, EOFError, UnicodeDecodeError, OverflowError) as error:
        raise refused(where, f"{member}: not a pickle torch writes: {error}") from None
    for opcode, argument, _ in operations:
        name = opcode.name
        if name in _REFUSED_OPCODES:
            raise refused(where, f"{member}: pickle opcode {name} takes a class from outside the allow-list: "
                                 "refused")
        if name == "GLOBAL":
            module, _, qualname = str(argument).partition(" ")
            yield f"{module}.{qualname}"
        elif name == "STACK_GLOBAL":
            if len(strings) < 2:
                raise refused(where, f"{member}: pickle builds a global name at run time: refused")
            yield f"{strings[-2]}.{strings[-1]}"
        if name in _STRINGS:
            strings.append(argument if isinstance(argument, str) else repr(argument))
        elif name not in _MEMO:
            strings.clear()


def check_globals(data: bytes, where: str, member: str, allowed: frozenset[str],
                  defined_classes: frozenset[str] = frozenset()) -> None:
    """GoldenError naming the first global of the pickle that is neither allowed nor a class the archive's
    own code defines."""
    for name in pickle_globals(data, where, member):
        if name not in allowed and name not in defined_classes:
            raise refused(where, f"{member}: pickle refers to {name!r}, which torch's own archives never do: "
                                 "refused")
