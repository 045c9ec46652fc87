"""Finding a golden from its manifest alone: a suite golden or a fixture golden, whichever it is."""

from __future__ import annotations

from pathlib import Path

from harness.errors import GoldenError
from harness.store.documents import read_json
from harness.store.golden import SCHEMA as SUITE_SCHEMA
from harness.store.golden import SCHEMA_FAMILY as SUITE_FAMILY
from harness.store.golden import Golden, GoldenStore
from harness.store.paths import MAX_STEM, file_stem
from harness.store.user_golden import SCHEMA as USER_SCHEMA
from harness.store.user_golden import SCHEMA_FAMILY as USER_FAMILY
from harness.store.user_golden import UserGolden, UserGoldenStore


def load_any_golden(manifest: Path) -> Golden | UserGolden:
    """The verified golden whose manifest is at this path, no suite needed; GoldenError naming the file.
    A path named after a whole id too long for a file name leads to the file named after its stem."""
    if len(manifest.stem) > MAX_STEM:
        manifest = manifest.with_name(f"{file_stem(manifest.stem)}{manifest.suffix}")
    GoldenStore(manifest.parent).require_directory()
    if not manifest.is_file():
        raise GoldenError(f"{manifest}: no such golden (neither a suite golden nor an rnn_golden fixture golden)")
    document = read_json(manifest, what="golden manifest", error=GoldenError)
    schema = document.get("schema") if isinstance(document, dict) else None
    if isinstance(schema, str) and schema.startswith(SUITE_FAMILY):
        return GoldenStore(manifest.parent).load(manifest.stem)
    if isinstance(schema, str) and schema.startswith(USER_FAMILY):
        return UserGoldenStore(manifest.parent).load(manifest.stem)
    raise GoldenError(f"{manifest}: unknown golden schema {schema!r}; this harness reads {SUITE_SCHEMA} "
                      f"and {USER_SCHEMA}")
