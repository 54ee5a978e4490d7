"""Kubernetes backend helpers the cluster tests leave out: result lines that are not a JSON
object, the backend built from settings, and the unsafe-image explanation."""

from types import SimpleNamespace

from executions.limits import Limits
from executions.runtimes import Runtime
from executions.sandbox.contract import RunSpec
from executions.sandbox.kubernetes import from_settings, parse_envelope, unsafe_image
from tests.k8s.fake import envelope


def spec(image=""):
    return RunSpec(
        script="print(1)\n",
        runtime=Runtime("3.12", image=image),
        limits=Limits(),
        stdin="",
        run_id="8d3c2b0e-0000-4000-8000-000000000002",
    )


def test_a_result_line_that_is_not_a_json_object_is_ignored():
    log = (
        envelope("n1", "R", b'{"exit_code": 3}')
        + envelope("n1", "R", b"not json")
        + envelope("n1", "R", b"[1, 2]")
    )
    assert parse_envelope(log, "n1") == (b"", b"", {"exit_code": 3})


def test_the_backend_takes_its_options_from_settings():
    settings = SimpleNamespace(
        K8S_NAMESPACE="ns-x",
        SANDBOX_NAME="site-x",
        K8S_RUNTIME_CLASS="gvisor",
        K8S_NODE_SELECTOR={"pool": "sandbox"},
        K8S_TOLERATIONS=[],
        K8S_START_TIMEOUT_S=12.0,
        K8S_HOST_USERS=False,
    )
    backend = from_settings(settings, namespace="override")
    assert backend.namespace == "override"
    assert backend.installation == "site-x"
    assert backend.runtime_class == "gvisor"
    assert backend.start_timeout_s == 12.0
    assert backend.host_users is False


def test_unsafe_image_names_the_image_and_the_fix():
    words = unsafe_image(spec(), "no_ctypes")
    assert "python:3.12-slim" in words  # the default image of the version
    assert "has no ctypes" in words
    words = unsafe_image(spec("registry.example/py:3.12"), "dumpable")
    assert "registry.example/py:3.12" in words
    assert "PR_SET_DUMPABLE" in words
