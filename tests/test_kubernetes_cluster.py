"""The hostile cases end to end on a real cluster, when KUBECONFIG points at one.

Needs the k8s/ base applied (namespace integr8s-executions, its Role, NetworkPolicy, quota)
and credentials allowed what the integr8s-executor Role allows. Images: K8S_IMAGES/K8S_VERSIONS
as in production (python:<version>-slim by default).
"""

import os
import threading

import pytest

from tests.hostile.cases import CASES, HostContext, check_case


def cluster_unavailable() -> str:
    path = os.environ.get("KUBECONFIG", "")
    if not path:
        return "KUBECONFIG is not set: no Kubernetes cluster to run against"
    if not all(os.path.exists(p) for p in path.split(os.pathsep) if p):
        return f"KUBECONFIG={path} does not exist"
    try:
        from kubernetes import client, config

        config.load_kube_config()
        client.VersionApi().get_code(_request_timeout=5)
    except Exception as exc:  # any failure to reach it means: not here
        return f"the cluster in KUBECONFIG does not answer: {exc}"
    return ""


WHY = cluster_unavailable()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(WHY), reason=WHY or "cluster ready")]


@pytest.fixture(scope="module")
def backend():
    from executions.sandbox.kubernetes import KubernetesBackend

    return KubernetesBackend(installation="integr8s-cluster-tests")


@pytest.fixture(scope="module")
def runtime():
    from executions import runtimes

    return runtimes.get(None, backend="kubernetes")


@pytest.mark.parametrize("case", [c for c in CASES if not c.host_checks], ids=lambda c: c.name)
def test_hostile(case, backend, runtime):
    from executions.sandbox.contract import RunSpec

    def run(script, limits, stdin):
        spec = RunSpec(script=script, runtime=runtime, limits=limits, stdin=stdin, run_id="")
        return backend.run(spec, threading.Event())

    check_case(case, run, HostContext(victim_pid=0))


def test_nothing_is_left_behind(backend):
    assert backend.cleanup_stale(set()) == 0
