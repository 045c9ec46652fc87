"""What `harness list --backends` shows: every backend this installation knows (built in or plugged in), whether it can
run here, and what it is known not to do, over the configs of the suite."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.backends import FAMILIES, backend_names, default_backend_names, get_backend
from harness.backends.base import ArtifactBackend
from harness.model.suite import Suite


@dataclass(frozen=True, kw_only=True)
class BackendEntry:
    """One backend as `harness list --backends` shows it."""

    name: str
    description: str
    default: bool  # runs when no --backend is given
    available: bool
    reason: str  # why it cannot run here
    families: tuple[str, ...]
    artifact: str  # the kind of artifact it stores ("" when it exports nothing)
    limitations: dict[str, tuple[str, ...]] = field(default_factory=dict)  # reason -> config ids of the suite
    slow: tuple[str, ...] = ()  # config ids left out of a default run


def backend_catalog(suite: Suite) -> list[BackendEntry]:
    defaults = set(default_backend_names())
    entries = []
    for name in backend_names():
        try:
            backend = get_backend(name)
        except ImportError as error:  # a plugged-in package that cannot be imported here
            entries.append(BackendEntry(name=name, description="(cannot be imported)", default=False, available=False,
                                        reason=f"{type(error).__name__}: {error}", families=(), artifact=""))
            continue
        status = backend.availability()
        limitations: dict[str, list[str]] = {}
        for config in suite.configs:
            reason = backend.known_limitation(config)
            if reason:
                limitations.setdefault(reason, []).append(config.id)
        entries.append(BackendEntry(
            name=name, description=backend.description, default=name in defaults, available=status.available,
            reason=status.reason, families=tuple(family for family, members in FAMILIES.items() if name in members),
            artifact=backend.artifact_kind if isinstance(backend, ArtifactBackend) else "",
            limitations={reason: tuple(ids) for reason, ids in limitations.items()},
            slow=tuple(config.id for config in suite.configs if backend.is_slow(config)),
        ))
    return entries
