"""Python versions users may pick, and what runs each one.

Local backend: an interpreter on this machine (pyenv's installs, python3.X on PATH), or the
explicit list in INTEGR8S_RUNTIMES. Kubernetes backend: a container image per version.
"""

import glob
import os
import re
import shutil
import subprocess
from functools import cache
from importlib import metadata

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from executions.sandbox.contract import Runtime
from executions.sandbox.local.command import site_dir

SUPPORTED = ("3.8", "3.9", "3.10", "3.11", "3.12", "3.13")


class UnknownVersion(ValueError):
    def __init__(self, version: str, available: list[str]):
        self.version = version
        self.available = available
        listed = ", ".join(available) or "none"
        super().__init__(f"Python {version!r} is not available. Available versions: {listed}.")


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def parse_pairs(text: str, setting: str) -> dict[str, str]:
    pairs = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        version, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"\d+\.\d+", version.strip()) or not value.strip():
            raise ImproperlyConfigured(f"{setting}: {item!r} is not VERSION=VALUE (3.12=...)")
        pairs[version.strip()] = value.strip()
    return pairs


# An interpreter's standard library wherever it is installed on the host
# (/root/.pyenv/versions/3.12.1/lib/python3.12/...) reads as a stock one would.
INTERPRETER_LIB = re.compile(r'(?<=["\s])/[^\s"]*?/lib/(python\d+\.\d+)/')


def neutral_paths(text: str) -> str:
    """Tracebacks as they would read on any machine: /usr/lib/python3.12/..., not the host's
    interpreter prefix (the page, the API's result and the events stream all show this)."""
    return INTERPRETER_LIB.sub(r"/usr/lib/\1/", text or "")


def interpreter_version(path: str) -> str | None:
    try:
        out = subprocess.run(
            [path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=10,
            env={},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def discover_local() -> dict[str, Runtime]:
    candidates: dict[str, str] = {}
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    for version in SUPPORTED:
        for path in sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}")):
            candidates.setdefault(version, path)
        on_path = shutil.which(f"python{version}")
        if on_path:
            candidates.setdefault(version, on_path)
    found = {}
    for version, path in candidates.items():
        if interpreter_version(path) == version:
            found[version] = Runtime(version, executable=os.path.realpath(path))
    return found


@cache
def _available(backend: str, runtimes: str, images: str, versions: str) -> dict[str, Runtime]:
    if backend == "kubernetes":
        custom = parse_pairs(images, "K8S_IMAGES")
        wanted = [v.strip() for v in versions.split(",") if v.strip()] + list(custom)
        return {v: Runtime(v, image=custom.get(v, f"python:{v}-slim")) for v in wanted}
    if runtimes:
        found = {}
        for version, path in parse_pairs(runtimes, "INTEGR8S_RUNTIMES").items():
            if not os.access(path, os.X_OK):
                raise ImproperlyConfigured(f"INTEGR8S_RUNTIMES: {path} is not executable")
            found[version] = Runtime(version, executable=os.path.realpath(path))
        return found
    return discover_local()


def available(backend: str | None = None) -> dict[str, Runtime]:
    """Version -> Runtime, newest first."""
    found = _available(
        backend or settings.EXECUTION_BACKEND,
        settings.INTEGR8S_RUNTIMES,
        settings.K8S_IMAGES,
        settings.K8S_VERSIONS,
    )
    return dict(sorted(found.items(), key=lambda kv: version_key(kv[0]), reverse=True))


def versions(backend: str | None = None) -> list[str]:
    return list(available(backend))


def default_version(backend: str | None = None) -> str:
    found = versions(backend)
    return found[0] if found else ""


def get(version: str | None, backend: str | None = None) -> Runtime:
    """The runtime for a version ("3.12"); None or "" means the default. Raises UnknownVersion."""
    found = available(backend)
    version = (version or default_version(backend)).strip()
    if version not in found:
        raise UnknownVersion(version, list(found))
    return found[version]


def packages(version: str) -> list[dict[str, str]]:
    """The package set build_runtimes installed for version, [{name, version}] by name; [] if
    none. Read from the set's dist-info once per build of it (the directory's mtime: a rebuild
    swaps it in, so it shows without a restart); reading it on every request cost ~25 ms."""
    path = site_dir(version)
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        return []
    return [dict(p) for p in _packages(path, stamp)]  # copies: callers may change them


@cache
def _packages(path: str, stamp: int) -> list[dict[str, str]]:
    found = {d.metadata["Name"]: d.version for d in metadata.distributions(path=[path])}
    return [{"name": n, "version": found[n]} for n in sorted(found, key=str.lower)]
