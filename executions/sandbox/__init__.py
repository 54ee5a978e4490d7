"""Sandbox backends. Only this package imports bubblewrap or the kubernetes client."""

from functools import cache

from django.conf import settings

from executions.sandbox.base import Backend, RunResult, RunSpec

__all__ = ["Backend", "RunResult", "RunSpec", "get_backend"]


@cache
def get_backend(name: str | None = None) -> Backend:
    name = name or settings.EXECUTION_BACKEND
    if name == "local":
        from executions.sandbox.local import LocalBackend

        return LocalBackend()
    if name == "kubernetes":
        from executions.sandbox.kubernetes import KubernetesBackend

        return KubernetesBackend()
    raise ValueError(f"unknown execution backend {name!r}; expected local or kubernetes")
