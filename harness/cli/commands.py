"""The subcommands behind `harness`: each parses nothing, calls the library, prints, returns an exit code."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from harness.backends import CUDA_BACKENDS, DEFAULT_BACKENDS
from harness.model.config import RnnConfig
from harness.errors import EXIT_DRIFT, EXIT_OK, HarnessError
from harness.store.golden import GoldenStore, default_golden_dir
from harness.model.suite import Suite, load_suite
from harness.judging.tolerance import BITWISE, Tolerance, TolerancePolicy

if TYPE_CHECKING:
    from harness.session.probes import ProbeResult
    from harness.judging.results import RunReport


def _suite(args: argparse.Namespace) -> Suite:
    return load_suite(args.suite)


def _store(args: argparse.Namespace) -> GoldenStore:
    return GoldenStore(args.golden_dir or default_golden_dir())


def cmd_list(args: argparse.Namespace) -> int:
    suite = _suite(args)
    reference = RnnConfig().to_dict()
    width = max(len(config_id) for config_id in suite.ids())
    for config in suite.configs:
        fields = ", ".join(f"{key}={value}" for key, value in config.to_dict().items()
                           if value != reference[key] or key == "cell")
        print(f"{config.id.ljust(width)}  {config.content_hash[:12]}  {fields}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace, *, live_reference: bool = False) -> int:
    from harness.backends import expand_backend_names
    from harness.session.engine import RunOptions, run_suite
    from harness.reports.terminal import report_lines
    from harness.model.shard import parse_shard, select_shard

    options = RunOptions(
        backends=tuple(args.backend or _default_backends()),
        include_slow=args.all,
        policy=_tolerance_policy(args),
        threads=_threads(args),
        require_available=bool(args.backend),
        live_reference=live_reference,
    )
    suite = _suite(args)
    store = GoldenStore(default_golden_dir()) if live_reference else _store(args)
    configs = suite.select(args.config)
    shard = ""
    if args.shard:
        index, count = parse_shard(args.shard)
        configs, shard = select_shard(configs, index, count), f"{index}/{count}"
    with progress_bar(len(configs) * len(expand_backend_names(options.backends)), quiet=args.quiet) as advance:
        report = run_suite(configs, store, options, suite_source=suite.source, on_cell=advance)
    report = dataclasses.replace(report, label=args.label, shard=shard)
    print("\n".join(report_lines(report)))
    probes = _run_probes(args, configs) if args.probes else ()
    _write_run_files(args, report, probes)
    return max(report.exit_code, EXIT_DRIFT if any(probe.failing for probe in probes) else EXIT_OK)


def _write_run_files(args: argparse.Namespace, report: RunReport, probes: tuple[ProbeResult, ...]) -> None:
    from harness.reports.ci_files import junit_xml, run_markdown
    from harness.reports.html import run_html
    from harness.reports.json_report import write_json

    if args.json:
        write_json(report, args.json, probes=probes)
    _write_files([(args.junit, lambda: junit_xml(report)), (args.html, lambda: run_html(report))],
                 extra=[str(args.json)] if args.json else [])
    _write_summary(args.markdown, lambda: run_markdown(report))


def cmd_merge(args: argparse.Namespace) -> int:
    from harness.reports.merge import merge_lines, merge_reports, merged_document
    from harness.reports.ci_files import merge_markdown
    from harness.reports.html import merge_html

    merged = merge_reports(args.reports)
    print("\n".join(merge_lines(merged)))
    _write_files([(args.json, lambda: json.dumps(merged_document(merged), indent=2) + "\n"),
                  (args.html, lambda: merge_html(merged))])
    _write_summary(args.markdown, lambda: merge_markdown(merged))
    return merged.exit_code


def _write_files(outputs: list[tuple[Path | None, Callable[[], str | bytes]]], extra: list[str] | None = None) -> None:
    """Render and write each requested file (None: not requested); say where they went."""
    written = list(extra or [])
    for path, render in outputs:
        if path is not None:
            content = render()
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
            written.append(str(path))
    if written:
        print(f"written: {', '.join(written)}")


def _write_summary(path: Path | None, render: Callable[[], str]) -> None:
    """The Markdown summary: to path when asked, and to $GITHUB_STEP_SUMMARY whenever it is set."""
    from harness.reports.ci_files import write_markdown

    if path is not None or os.environ.get("GITHUB_STEP_SUMMARY"):
        places = write_markdown(render(), path)
        print(f"Markdown summary written to {', '.join(places)}")


@contextlib.contextmanager
def progress_bar(total: int, *, quiet: bool) -> Iterator[Callable[[object], None]]:
    """A tqdm bar on stderr for interactive runs; a no-op off a TTY or with --quiet."""
    if quiet or not sys.stderr.isatty():
        yield lambda _cell: None
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="cell", file=sys.stderr, leave=False) as bar:
        yield lambda _cell: bar.update(1)


def cmd_probe(args: argparse.Namespace) -> int:
    from harness.reports.probes import SCHEMA, probe_documents

    configs = _suite(args).select(args.config)
    results = _run_probes(args, configs)
    document = {"schema": SCHEMA, "probes": probe_documents(results)}
    _write_files([(args.json, lambda: json.dumps(document, indent=2) + "\n")])
    return EXIT_DRIFT if any(result.failing for result in results) else EXIT_OK


def _run_probes(args: argparse.Namespace, configs: tuple[RnnConfig, ...]) -> tuple[ProbeResult, ...]:
    from harness.reports.probes import probe_lines
    from harness.session.probes import ProbeOptions, run_probes

    if args.repeats < 1:
        raise HarnessError(f"--repeats must be at least 1, got {args.repeats}")
    from harness.session.engine import resolve_backends

    backends = tuple(args.backend or _default_backends())
    resolve_backends(backends, required=bool(args.backend))
    options = ProbeOptions(backends=backends, repeats=args.repeats, threads=_threads(args),
                           fresh_process=not args.no_fresh_process, include_slow=args.all,
                           strict_settings=args.strict_settings)
    results = run_probes(configs, options, args.suite)
    print("\n".join(["", *probe_lines(results)]))
    return results


def cmd_check(args: argparse.Namespace) -> int:
    return cmd_run(args, live_reference=True)


def cmd_record(args: argparse.Namespace) -> int:
    from harness.session.record import record_golden

    store = _store(args)
    configs = _suite(args).select(args.config)
    existing = [config.id for config in configs if store.exists(config.id)]
    if args.config and existing and not args.force:
        raise HarnessError(f"{store.manifest_path(existing[0])}: golden exists; pass --force to overwrite it "
                           f"(it prints what changed)")
    kept = 0
    for config in configs:
        if config.id in existing and not args.force:
            kept += 1
            continue
        fingerprinted = () if args.reference_only else tuple(args.backend or _default_backends())
        result = record_golden(config, store, force=args.force, threads=_threads(args),
                               fingerprint_backends=fingerprinted, include_slow=args.all)
        print(f"{'rewrote' if result.replaced else 'recorded'} {result.config_id} -> {result.path}")
        for change in result.changes:
            print(f"  {change}")
        if not result.replaced:
            for backend, line in result.fingerprints.items():
                print(f"  fingerprint {backend}: {line}")
    if kept:
        print(f"kept {kept} existing goldens (pass --force to rewrite them)")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from harness.reports.show import show_document, show_lines

    store = _store(args)
    config_id = args.config_id
    _suite(args).select([config_id])  # an unknown id is an error naming the suite
    golden = store.load(config_id)
    path = str(store.manifest_path(config_id))
    if args.json:
        print(json.dumps(show_document(golden, path), indent=2))
    else:
        print("\n".join(show_lines(golden, path)))
    return EXIT_OK


def cmd_env(args: argparse.Namespace) -> int:
    from harness.session.engine import environment_now

    environment = environment_now(_threads(args))
    if args.json:
        print(json.dumps(environment.to_dict(), indent=2))
        return EXIT_OK
    for key, value in environment.to_dict().items():
        if isinstance(value, dict):
            print(f"{key}:")
            for name, version in value.items():
                print(f"  {name}: {version}")
        else:
            print(f"{key}: {' '.join(value) if isinstance(value, list) else value}")
    return EXIT_OK


def _default_backends() -> tuple[str, ...]:
    import torch

    return DEFAULT_BACKENDS + (CUDA_BACKENDS if torch.cuda.is_available() else ())


def _tolerance_policy(args: argparse.Namespace) -> TolerancePolicy:
    if (args.atol is None) != (args.rtol is None):
        raise HarnessError("--atol and --rtol go together: give both or neither")
    if args.bitwise and args.atol is not None:
        raise HarnessError("--bitwise excludes --atol/--rtol")
    if args.bitwise:
        return TolerancePolicy(override=BITWISE)
    if args.atol is not None:
        if args.atol < 0 or args.rtol < 0:
            raise HarnessError("--atol and --rtol must be non-negative")
        return TolerancePolicy(override=Tolerance(atol=args.atol, rtol=args.rtol))
    return TolerancePolicy()


def _threads(args: argparse.Namespace) -> int:
    if args.threads < 1:
        raise HarnessError(f"--threads must be at least 1, got {args.threads}")
    return int(args.threads)


COMMANDS = {"list": cmd_list, "run": cmd_run, "check": cmd_check, "probe": cmd_probe, "record": cmd_record,
            "show": cmd_show, "merge": cmd_merge, "env": cmd_env}

