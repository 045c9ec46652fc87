"""Writers to one golden directory take turns: concurrent forced records with different backend sets
never commit a manifest whose tensors file the other deleted, and nothing is left behind."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from harness.store.golden import GoldenStore
from tests.conftest import REFERENCE_ID, CliResult

Cli = Callable[..., CliResult]
RECORDS_PER_WRITER = 6
WRITER = """
import sys
from harness.cli import main
golden, backends = sys.argv[1], sys.argv[2:]
flags = [flag for backend in backends for flag in ("--backend", backend)]
for _ in range({count}):
    code = main(["record", "--config", "{config}", "--force", "--golden-dir", golden, *flags])
    if code:
        sys.exit(code)
"""


def test_concurrent_forced_records_leave_one_whole_golden(golden_copy: Callable[..., Path]) -> None:
    golden = golden_copy(REFERENCE_ID)
    script = WRITER.format(count=RECORDS_PER_WRITER, config=REFERENCE_ID)
    writers = [subprocess.Popen([sys.executable, "-c", script, str(golden), *backends],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for backends in (["eager"], ["eager", "onnxruntime-legacy"])]
    for writer in writers:
        out, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err
        assert out.count("rewrote") == RECORDS_PER_WRITER
    store = GoldenStore(golden)
    loaded = store.load(REFERENCE_ID)  # the committed manifest names a tensors file that exists and verifies
    assert loaded.config.id == REFERENCE_ID
    assert store.leftovers() == ()
    tensors_files = sorted(path.name for path in golden.glob(f"{REFERENCE_ID}.*.npz"))
    assert len(tensors_files) == 1


def test_a_golden_directory_that_cannot_be_created_is_one_line(cli: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the golden directory's parent should be", encoding="utf-8")
    golden = blocker / "golden"
    result = cli("record", "--config", REFERENCE_ID, "--golden-dir", str(golden), "--reference-only")
    assert result.exit_code == 2
    assert result.err.strip() == f"harness: error: {golden}: cannot write goldens: Not a directory"
    assert blocker.read_text(encoding="utf-8").startswith("a file where")
