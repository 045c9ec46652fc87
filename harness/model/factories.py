"""Users' own models: importing the factory a suite names as ``model = "package.module:factory"``.

The factory is looked up on ``sys.path`` and then in the directories of ``HARNESS_MODEL_PATH`` (os.pathsep
separated), which are appended to ``sys.path``, never put first: an ``onnxruntime.py`` beside a suite cannot
shadow the installed package. A suite that names a model puts its own directory there, so a model module kept
next to its suite is found, by this process and by every worker process it starts (they inherit the environment).

Importing a factory runs the user's code: a suite that names a model is code, like a conftest.py. Only the
commands that build models import it (run, check, record, probe, the plugin's test items when they run).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, one_line

MODEL_PATH_VARIABLE = "HARNESS_MODEL_PATH"


def add_model_directory(directory: Path) -> None:
    """Let model references resolve against directory, here and in processes started from here."""
    resolved = str(directory.resolve())
    known = [entry for entry in os.environ.get(MODEL_PATH_VARIABLE, "").split(os.pathsep) if entry]
    if resolved not in known:
        os.environ[MODEL_PATH_VARIABLE] = os.pathsep.join([*known, resolved])


def load_factory(reference: str, what: str = "model") -> Callable[..., Any]:
    """The callable a "package.module:factory" reference names; ConfigError (one line, naming the suite key
    `what`) when it cannot be imported or is not callable."""
    module_name, _, attribute = reference.partition(":")
    for entry in os.environ.get(MODEL_PATH_VARIABLE, "").split(os.pathsep):
        if entry and entry not in sys.path:
            sys.path.append(entry)  # last: a module beside a suite can never shadow an installed package
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # the user's module: any failure to import it is the user's to fix
        raise ConfigError(f"{what} {reference!r}: cannot import {module_name}: "
                          f"{type(error).__name__}: {one_line(str(error), 300)}") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ConfigError(f"{what} {reference!r}: {module_name} has no callable {attribute!r}")
    return factory  # type: ignore[no-any-return]
