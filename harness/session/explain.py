"""`harness explain ID --backend B`: one cell run (or replayed from its stored artifact) and localised whatever
its verdict (harness.session.localise)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from harness.backends.base import Artifact
from harness.judging.results import CellResult, RunReport
from harness.session.localise import localise_replayed_cell, localise_run_cell

if TYPE_CHECKING:
    from harness.session.core import Session


def explain(session: Session, *, stored: bool) -> RunReport:
    """`harness explain ID --backend B`: the session's one cell run (or, stored, replayed) and localised whatever
    its verdict."""
    if stored:
        from harness.session.replay import replay

        report = replay(session)
        cells = tuple(_stored_localised(session, cell) for cell in report.cells)
    else:
        report = session.run()
        cells = tuple(localise_run_cell(session, session.config(cell.config_id), cell, force=True)
                      for cell in report.cells)
    return dataclasses.replace(report, cells=cells)


def _stored_localised(session: Session, cell: CellResult) -> CellResult:
    from harness.backends import get_backend
    from harness.errors import GoldenError

    config = session.config(cell.config_id)
    golden = session.golden(config)
    entry = golden.artifacts.get(cell.backend) if golden else None
    if golden is None or entry is None or not cell.tensors:
        return cell
    try:
        stored = session.store.verified_artifact(golden, cell.backend)
    except GoldenError:  # the replay has said so already
        return cell
    artifact = Artifact(kind=entry.kind, data=stored.data, producer=entry.producer)
    return localise_replayed_cell(session, config, cell, backend=get_backend(cell.backend), artifact=artifact,
                                  inputs=golden.inputs(), golden_weights_sha256=golden.weights_sha256,
                                  bounded=stored.facts.bounded, force=True)
