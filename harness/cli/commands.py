"""The subcommands behind `harness`: each takes the parsed option values, calls the session or a
report, prints, and returns an exit code. Heavy imports (torch) happen only in commands that compute."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec

from harness.errors import EXIT_DRIFT, EXIT_OK, HarnessError
from harness.model.environment import importable
from harness.reports.files import Render, check_output_paths, step_summary_path, write_outputs, write_summary
from harness.reports.text import printable

if TYPE_CHECKING:
    from harness.judging.results import ProbeResult
    from harness.session.core import Session

Values = dict[str, Any]
P = ParamSpec("P")
REPORT_FILES = ("json", "junit", "markdown", "html")
# What a torch-free install (README: Installing without torch) can do instead, for the one line below.
TORCH_FREE = "replay, show, list, env, review, merge, atlas, bundle and prune work without it"


def needs_torch(command: Callable[P, int]) -> Callable[P, int]:
    """The command builds and runs models: where torch cannot be imported (a torch-free install) it says so in
    one line, exit 2, before anything is loaded, instead of an ImportError's traceback."""
    name = command.__name__.removeprefix("cmd_")

    @functools.wraps(command)
    def checked(*args: P.args, **kwargs: P.kwargs) -> int:
        if not importable("torch"):
            raise HarnessError(f"harness {name} needs torch, which cannot be imported here ({TORCH_FREE}); "
                               f"install the full harness with: pip install -c constraints.txt -e .")
        return command(*args, **kwargs)

    return checked


def _session(values: Values, **overrides: Any) -> Session:
    from harness.session.parallel_session import session_for
    from harness.session.settings import settings_from

    return session_for(settings_from(values, **overrides))


def cmd_list(values: Values) -> int:
    from harness.model.config import RnnConfig
    from harness.model.suite import load_suite
    from harness.session.settings import settings_from

    suite = load_suite(values["suite"], max_memory=settings_from(values).max_memory)
    if values["list_backends"]:
        from harness.backends.catalog import backend_catalog
        from harness.reports.backend_list import backend_lines

        print("\n".join(backend_lines(backend_catalog(suite), suite.source)))
        return EXIT_OK
    reference = RnnConfig().to_dict()
    width = max(len(config_id) for config_id in suite.ids())
    for config in suite.configs:
        fields = ", ".join(f"{key}={value}" for key, value in config.to_dict().items()
                           if value != reference.get(key) or key == "cell")
        tolerance = suite.tolerances.get(config.id)
        own = f"  (tolerance {tolerance.describe()})" if tolerance else ""
        print(f"{config.id.ljust(width)}  {config.content_hash[:12]}  {fields}{own}")
    return EXIT_OK


@needs_torch
def cmd_run(values: Values, *, live_reference: bool = False) -> int:
    check_output_paths(values.get(name) for name in REPORT_FILES)
    session = _session(values, live_reference=live_reference)
    probe_settings = _probe_settings(values) if values["probes"] else None
    total = len(session.configs) * len(session.backend_names)
    with progress_bar(total, quiet=values["quiet"]) as advance:
        report = session.run(on_cell=advance)
    _print_report(values, report)
    probes = _run_probes(session, probe_settings) if probe_settings else ()
    _write_run_files(values, report, probes)
    return max(report.exit_code, EXIT_DRIFT if any(probe.failing for probe in probes) else EXIT_OK)


@needs_torch
def cmd_check(values: Values) -> int:
    return cmd_run(values, live_reference=True)


def cmd_replay(values: Values) -> int:
    """The stored artifacts under today's runtimes, judged like a run; never imports torch for ONNX ones."""
    from harness.session.replay import replay, replayed_backend_names

    check_output_paths(values.get(name) for name in REPORT_FILES)
    session = _session(values)
    with progress_bar(len(session.configs) * len(replayed_backend_names(session)), quiet=values["quiet"]) as advance:
        report = replay(session, on_cell=advance)
    _print_report(values, report)
    _write_run_files(values, report, ())
    return report.exit_code


def _print_report(values: Values, report: Any) -> None:
    """The terminal report, folded to the terminal's width (120 columns off a terminal, or $COLUMNS); verdicts in
    colour at a terminal unless NO_COLOR is set, plain text elsewhere (CI logs, pipes)."""
    import shutil

    from harness.reports.colour import colour_wanted, coloured
    from harness.reports.terminal import report_lines

    width = shutil.get_terminal_size((120, 24)).columns
    lines = report_lines(report, verbose=values["verbose"], table=bool(values.get("table")), width=width)
    print("\n".join(coloured(lines) if colour_wanted(sys.stdout, os.environ) else lines))


def cmd_bundle(values: Values) -> int:
    """One config's stored ONNX artifact, inputs and golden outputs, as Polygraphy and ONNX runtimes read them."""
    from harness.session.bundle import bundle_for

    session = _session(values)
    backends = session.settings.backends
    if len(backends) != 1:
        raise HarnessError("harness bundle takes exactly one --backend (an ONNX one, e.g. onnxruntime-legacy)")
    written, command = bundle_for(session, values["config_id"], backends[0], values["out"])
    print(f"wrote {len(written)} files to {values['out']}:")
    for path in written:
        print(f"  {path}")
    print(f"check it: {command}")
    return EXIT_OK


def _write_run_files(values: Values, report: Any, probes: tuple[ProbeResult, ...]) -> None:
    from harness.reports.ci_files import github_annotations, junit_xml, run_markdown
    from harness.reports.html import run_html
    from harness.reports.json_report import report_json

    if os.environ.get("GITHUB_ACTIONS") == "true":  # a GitHub Actions step: each failing cell an annotation
        for command in github_annotations(report):
            print(command)

    _write([(values["json"], lambda: report_json(report, probes)), (values["junit"], lambda: junit_xml(report)),
            (values["html"], lambda: run_html(report))],
           markdown=(values["markdown"], lambda: run_markdown(report)))


def cmd_merge(values: Values) -> int:
    from harness.reports.ci_files import merge_markdown
    from harness.reports.html import merge_html
    from harness.reports.merge import merge_lines, merge_reports, merged_document
    from harness.reports.text import json_safe

    check_output_paths(values.get(name) for name in ("json", "markdown", "html"))
    merged = merge_reports(values["reports"])
    print("\n".join(merge_lines(merged)))
    _write([(values["json"], lambda: json.dumps(json_safe(merged_document(merged)), indent=2, allow_nan=False) + "\n"),
            (values["html"], lambda: merge_html(merged))],
           markdown=(values["markdown"], lambda: merge_markdown(merged)))
    return merged.exit_code


def cmd_atlas(values: Values) -> int:
    """Replay reports under several onnxruntime releases as a release x cell matrix (docs/atlas.md)."""
    from harness.reports.atlas import build_atlas
    from harness.reports.atlas_views import atlas_html, atlas_lines, atlas_markdown

    check_output_paths(values.get(name) for name in ("markdown", "html"))
    atlas = build_atlas(values["reports"], not_replayed=values["not_replayed"] or ())
    print("\n".join(atlas_lines(atlas)))
    _write([(values["html"], lambda: atlas_html(atlas))], markdown=(values["markdown"], lambda: atlas_markdown(atlas)))
    return atlas.exit_code


def _write(outputs: list[tuple[Path | None, Render]],
           markdown: tuple[Path | None, Callable[[], str]] | None = None) -> None:
    """Write the requested report files and say where they went; a failed write is one line, exit 2."""
    written = write_outputs(outputs)
    if markdown is not None and (markdown[0] is not None or step_summary_path()):
        written += write_summary(markdown[1](), markdown[0])
    if written:
        print(f"written: {', '.join(written)}")


@contextlib.contextmanager
def progress_bar(total: int, *, quiet: bool) -> Iterator[Callable[[object], None]]:
    """A tqdm bar on stderr for interactive runs; a no-op off a TTY or with --quiet."""
    if quiet or not sys.stderr.isatty():
        yield lambda _cell: None
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="cell", file=sys.stderr, leave=False) as bar:
        yield lambda _cell: bar.update(1)


@needs_torch
def cmd_probe(values: Values) -> int:
    from harness.reports.probes import probes_json

    check_output_paths([values["json"]])
    if values.get("isa"):
        return _isa_probe(values)
    session = _session(values)
    results = _run_probes(session, _probe_settings(values))
    _write([(values["json"], lambda: probes_json(results))])
    return EXIT_DRIFT if any(result.failing for result in results) else EXIT_OK


def _isa_probe(values: Values) -> int:
    """`harness probe --isa`: the cells under CPU-dispatch settings, each in fresh processes (docs/portability.md)."""
    from harness.reports.isa import isa_json, isa_lines
    from harness.session.isa_probe import run_isa_probe

    report = run_isa_probe(_session(values))
    print("\n".join(isa_lines(report)))
    _write([(values["json"], lambda: isa_json(report))])
    return report.exit_code


def _probe_settings(values: Values) -> Any:
    from harness.session.settings import probe_settings_from

    return probe_settings_from(values)


def _run_probes(session: Session, settings: Any) -> tuple[ProbeResult, ...]:
    from harness.reports.probes import probe_lines
    from harness.session.probes import run_probes

    results = run_probes(session, settings)
    print("\n".join(["", *probe_lines(results)]))
    return results


@needs_torch
def cmd_record(values: Values) -> int:
    session = _session(values)
    configs = session.configs
    store = session.store
    existing = [config.id for config in configs if store.exists(config.id)]
    if values["config"] and existing and not values["force"]:
        _, corrupt = store.previous(existing[0], force=True)
        state = f" and is corrupt ({corrupt})" if corrupt else ""
        raise HarnessError(f"{store.manifest_path(existing[0])}: golden exists{state}; pass --force to overwrite it "
                           f"(it prints what changed)")
    if store.root.exists() and not store.root.is_dir():
        store.require_directory()
    session.require_models()  # a model reference that cannot be imported stops record before any work
    announce = not store.root.exists()  # said once a golden is in it: a record that fails creates nothing
    kept = 0
    for config in configs:
        if config.id in existing and not values["force"]:
            kept += 1
            continue
        result = session.record(config, force=values["force"], fingerprint=not values["reference_only"])
        if announce:
            print(f"created golden directory {store.root}")
            announce = False
        for leftover in result.cleaned:
            print(printable(f"removed {leftover} (no manifest refers to it: a temporary or orphaned file)"))
        print(f"{'rewrote' if result.replaced else 'recorded'} {result.config_id} -> {result.path}")
        if result.corrupt:
            print(printable(f"  the golden it replaced was corrupt: {result.corrupt}"))
        for change in result.changes:  # read from the golden it replaced
            print(printable(f"  {change}"))
        if not result.changes:
            for backend, line in result.fingerprints.items():
                print(f"  fingerprint {backend}: {line}")
    if kept:
        print(f"kept {kept} existing golden{'s' if kept != 1 else ''} (pass --force to rewrite them)")
    return EXIT_OK


def cmd_show(values: Values) -> int:
    from harness.reports.show import show_document, show_lines
    from harness.reports.text import printable_json
    from harness.store.golden import default_golden_dir
    from harness.store.lookup import load_any_golden

    argument = values["golden"]
    manifest = Path(argument)
    if manifest.suffix != ".json":
        manifest = (values["golden_dir"] or default_golden_dir()) / f"{argument}.json"
    golden = load_any_golden(manifest)
    if values["print_json"]:
        print(printable_json(show_document(golden, str(manifest))))
    else:
        print("\n".join(show_lines(golden, str(manifest))))
    return EXIT_OK


def cmd_prune(values: Values) -> int:
    from harness.session.core import Session
    from harness.session.settings import settings_from

    session = Session(settings_from(values))
    paths = session.prune(delete=values["yes"])
    stale = session.stale_goldens() if not values["yes"] else ()
    if not paths:
        print(f"no stale goldens in {session.golden_dir}: every golden is used by a config of {session.suite.source}")
        return EXIT_OK
    verb = "removed" if values["yes"] else "would remove"
    for path in paths:  # file names from the golden directory: printable, never a second line or a command
        print(printable(f"{verb} {path}"))
    if values["yes"]:
        print(f"removed {len(paths)} file{'s' if len(paths) != 1 else ''} of stale goldens from {session.golden_dir}")
    else:
        print(f"{len(stale)} stale golden{'s' if len(stale) != 1 else ''} (used by no config of "
              f"{session.suite.source}); delete them with: {session.cli_command('prune')} --yes")
    return EXIT_OK


def cmd_env(values: Values) -> int:
    """The fingerprint; without torch (a torch-free install) its CUDA and torch build fields say "not checked"."""
    from harness.model.environment import current_environment
    from harness.session.execution import environment_now
    from harness.session.settings import settings_from

    threads = settings_from(values).threads
    environment = environment_now(threads) if importable("torch") else current_environment(torch_threads=threads)
    if values["print_json"]:
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


def cmd_review(values: Values) -> int:
    """What changed in the golden directory since a base, for a reviewer; 0 when it ran (1 with --fail-on-change
    when anything changed). Reads manifests, tensors and artifact bytes only: no model is built, no module imported."""
    from harness.reports.review import review_lines, review_markdown
    from harness.session.review import review_goldens
    from harness.store.golden import default_golden_dir

    check_output_paths([values["output"]])
    review = review_goldens(values["golden_dir"] or default_golden_dir(), values["base"])
    markdown = values["review_format"] == "markdown"
    text = review_markdown(review) if markdown else "\n".join(review_lines(review)) + "\n"
    if values["output"] is not None:
        _write([(values["output"], lambda: text)])
    else:
        print(text, end="")
    return EXIT_DRIFT if values["fail_on_change"] and review.changed else EXIT_OK


@needs_torch
def cmd_explain(values: Values) -> int:
    """One cell, run (or replayed with --stored) and localised whatever its verdict; exit as for run."""
    from harness.reports.localisation import explain_lines
    from harness.session.explain import explain

    check_output_paths(values.get(name) for name in REPORT_FILES)
    backends = values.get("backend") or []
    if len(backends) != 1 or "," in backends[0]:
        raise HarnessError("harness explain needs exactly one --backend NAME")
    session = _session(values, configs=(values["config_id"],))
    session.config(values["config_id"])  # an unknown id: one line naming the suite
    report = explain(session, stored=bool(values.get("stored")))
    _print_report(values, report)
    print("\n".join(explain_lines(report.cells)))
    _write_run_files({**dict.fromkeys(REPORT_FILES), **values}, report, ())  # explain writes JSON and HTML only
    return report.exit_code


COMMANDS: dict[str, Callable[[Values], int]] = {
    "list": cmd_list, "run": cmd_run, "check": cmd_check, "probe": cmd_probe, "record": cmd_record,
    "replay": cmd_replay, "bundle": cmd_bundle, "show": cmd_show, "prune": cmd_prune, "merge": cmd_merge,
    "atlas": cmd_atlas,
    "env": cmd_env, "review": cmd_review,
    "explain": cmd_explain,
}
