"""The environment fingerprint that goes into goldens and reports.

Versions come from package metadata, so taking a fingerprint imports neither torch nor onnxruntime.
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import platform
import re
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

NOT_CHECKED = "not checked"  # a field this process did not look at (CUDA, in a replay that never imports torch)
PACKAGES = ("harness", "torch", "numpy", "onnx", "onnxruntime", "onnxscript")
# CPU features that change which kernels run (and so which bits come out).
INTERESTING_CPU_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "asimd", "sve")


@dataclass(frozen=True, kw_only=True)
class Environment:
    """What produced a result: package versions, interpreter, machine, CPU, thread settings."""

    packages: dict[str, str]
    python: str
    platform: str
    machine: str
    cpu: str
    cpu_flags: tuple[str, ...]
    cpu_count: int
    torch_threads: int
    cuda: str
    # What changes CPU kernels, and so bits (PyTorch issues 155423, 155552): ATen's dispatch level, the oneDNN
    # and MKL builds torch was made with, and the execution providers onnxruntime offers. "?" in goldens
    # recorded before these were kept.
    cpu_capability: str = "?"
    onednn: str = "?"
    mkl: str = "?"
    ort_providers: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cpu_flags": list(self.cpu_flags), "ort_providers": list(self.ort_providers)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Environment:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        known["cpu_flags"] = tuple(known.get("cpu_flags", ()))
        known["ort_providers"] = tuple(known.get("ort_providers", ()))
        defaults = {"packages": {}, "python": "?", "platform": "?", "machine": "?", "cpu": "?",
                    "cpu_count": 0, "torch_threads": 0, "cuda": "?"}
        return cls(**{**defaults, **known})


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def importable(package: str) -> bool:
    """Whether `import package` can succeed here, found without importing it (torch would cost seconds).
    False in a torch-free install, and where a test blocked the package with None in sys.modules."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a parent package that cannot be imported; a module without a spec
        return False


def current_environment(*, torch_threads: int, cuda: str = NOT_CHECKED, torch_build: dict[str, str] | None = None
                        ) -> Environment:
    """This machine's fingerprint; torch_build (cpu_capability, onednn, mkl) comes from torch itself, which
    this module never imports (without it those fields are "not checked")."""
    cpu, flags = _cpu_model_and_flags()
    build = torch_build or {}
    return Environment(
        packages={name: package_version(name) for name in PACKAGES},
        python=platform.python_version(),
        platform=platform.platform(),
        machine=platform.machine(),
        cpu=cpu,
        cpu_flags=flags,
        cpu_count=os.cpu_count() or 0,
        torch_threads=torch_threads,
        cuda=cuda,
        cpu_capability=build.get("cpu_capability", NOT_CHECKED),
        onednn=build.get("onednn", NOT_CHECKED),
        mkl=build.get("mkl", NOT_CHECKED),
        ort_providers=_ort_providers(),
    )


def _ort_providers() -> tuple[str, ...]:
    """onnxruntime's available execution providers (importing onnxruntime costs 0.14 s; torch is not needed)."""
    try:
        import onnxruntime
    except ImportError:
        return ("onnxruntime not installed",)
    return tuple(onnxruntime.get_available_providers())


def torch_build_facts(config_text: str, cpu_capability: str) -> dict[str, str]:
    """cpu_capability, onednn and mkl from torch.__config__.show()'s text (parsed here, torch-free)."""
    onednn = re.search(r"MKL-DNN (v[\w.]+)", config_text)
    mkl = re.search(r"Math Kernel Library Version ([\d.]+)", config_text)
    return {"cpu_capability": cpu_capability, "onednn": onednn[1] if onednn else "none",
            "mkl": mkl[1] if mkl else "none"}


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


def _cpu_model_and_flags() -> tuple[str, tuple[str, ...]]:
    """Model name and the interesting flags from /proc/cpuinfo; platform.processor() elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or "unknown", ()
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    model = fields.get("model name") or fields.get("CPU part") or platform.processor() or "unknown"
    present = set((fields.get("flags") or fields.get("Features") or "").split())
    return model, tuple(flag for flag in INTERESTING_CPU_FLAGS if flag in present)


# What can change the bits an RNN computes; the rest (platform string, python, core count) is context.
BIT_FIELDS = ("cpu", "cpu_flags", "cpu_capability", "onednn", "mkl", "ort_providers", "torch_threads", "cuda")
CONTEXT_FIELDS = ("python", "platform", "machine", "cpu_count")


def environment_differences(golden: Environment, current: Environment, *, context: bool = False) -> list[str]:
    """Readable 'field: golden -> now' lines: package versions and what else can change bits; with
    context=True instead the rest: the platform string, python version, machine and core count."""
    lines = []
    for name in () if context else sorted(set(golden.packages) | set(current.packages)):
        before, after = golden.packages.get(name, "?"), current.packages.get(name, "?")
        if before != after:
            lines.append(f"{name} {before} -> {after}")
    for field in CONTEXT_FIELDS if context else BIT_FIELDS:
        before, after = getattr(golden, field), getattr(current, field)
        unknown = {NOT_CHECKED, "?", ()}  # not looked at now, or not recorded then: no difference to report
        if before != after and before not in unknown and after not in unknown:
            lines.append(f"{field}: {_show(before)} -> {_show(after)}")
    return lines


def environment_label(environment: Environment) -> str:
    """A short name for an environment in merged reports: what most often changes bits."""
    packages = environment.packages
    return (f"{environment.machine}-torch{packages.get('torch', '?')}-ort{packages.get('onnxruntime', '?')}"
            f"-t{environment.torch_threads}")


def _show(value: object) -> str:
    return " ".join(value) if isinstance(value, tuple) else str(value)
