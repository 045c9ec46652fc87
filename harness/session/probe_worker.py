"""`python -m harness.session.probe_worker`: the fresh interpreter of the fresh-process probe.

Computes every selected config x backend once and prints one JSON line each:
{"config": id, "backend": name, "sha256": hex or "error: ..."}.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from harness.backends import get_backend
from harness.backends.capture import first_line
from harness.model.case import build_case
from harness.session.engine import execute, pinned_threads
from harness.model.hashing import arrays_sha256
from harness.model.suite import load_suite


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.session.probe_worker")
    parser.add_argument("--suite", type=Path)
    parser.add_argument("--config", action="append", default=[])
    parser.add_argument("--backend", action="append", default=[])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--all", action="store_true")
    args = parser.parse_args(argv)
    configs = load_suite(args.suite).select(args.config)
    with pinned_threads(args.threads):
        for config in configs:
            case = build_case(config)
            for name in args.backend:
                try:
                    backend = get_backend(name)
                    if backend.is_slow(config) and not args.all:
                        continue
                    sha = arrays_sha256(execute(case, backend).first)
                except Exception as error:  # reported back as this cell's result
                    sha = f"error: {first_line(error)}"
                print(json.dumps({"config": config.id, "backend": name, "sha256": sha}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
