"""nox sessions mirroring tox.ini; every install uses the pinned constraints.txt."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "run", "lint"]
nox.options.default_venv_backend = "venv"
CONSTRAINTS = ("-c", "constraints.txt")


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The test suite."""
    session.install(*CONSTRAINTS, "-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python="3.11")
def run(session: nox.Session) -> None:
    """The default suite against the committed goldens (the same as `tox -e golden`)."""
    session.install(*CONSTRAINTS, "-e", ".")
    session.run("harness", "run", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff and mypy."""
    session.install(*CONSTRAINTS, "-e", ".[lint]")
    session.run("ruff", "check", "harness", "tests", "noxfile.py")
    session.run("mypy", "harness")
