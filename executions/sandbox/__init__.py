"""Sandbox backends, each named once here and living in a subpackage of its own.

Only this package imports bubblewrap or the kubernetes client. Below this registry (the
contract, classify, and every backend) nothing imports Django: a backend is built from the
settings object by its module's from_settings(settings). A third backend (gVisor's runsc,
Firecracker) is one more subpackage and one more line in BACKENDS.
"""

from functools import cache
from importlib import import_module

from executions.sandbox.contract import Backend, Facts, RunResult, RunSpec, Runtime

__all__ = ["BACKENDS", "Backend", "Facts", "RunResult", "RunSpec", "Runtime", "get_backend"]

BACKENDS = {
    "local": "executions.sandbox.local",  # bubblewrap + cgroups on this machine
    "kubernetes": "executions.sandbox.kubernetes",  # one pod per run
}


@cache
def get_backend(name: str | None = None) -> Backend:
    from django.conf import settings

    name = name or settings.EXECUTION_BACKEND
    if name not in BACKENDS:
        expected = " or ".join(BACKENDS)
        raise ValueError(f"unknown execution backend {name!r}; expected {expected}")
    backend: Backend = import_module(BACKENDS[name]).from_settings(settings)
    return backend
