"""The Pod and ConfigMap the kubernetes backend generates, field by field."""

import json

import kubernetes_validate
import pytest

from executions.limits import MIB, Limits
from executions.runtimes import Runtime
from executions.sandbox.contract import RunSpec
from executions.sandbox.kubernetes import (
    PLOTS_SOURCE,
    WRAPPER_SOURCE,
    KubernetesBackend,
    from_settings,
)
from executions.sandbox.kubernetes.wrapper import parse_limits

K8S_VERSION = kubernetes_validate.utils.latest_version()
RUN_ID = "5f0c7a52-1b2e-4c1d-9a65-0123456789ab"


def make(limits=None, **options):
    options.setdefault("namespace", "integr8s-executions")
    options.setdefault("installation", "integr8s")
    backend = KubernetesBackend(api=object(), **options)
    spec = RunSpec(
        script="print('hi')\n",
        runtime=Runtime("3.12", image="python:3.12-slim"),
        limits=limits or Limits(),
        stdin="in",
        run_id=RUN_ID,
    )
    return backend.manifests(spec, nonce="n0nce")


@pytest.fixture
def pod():
    return make()[0]


def test_the_manifests_are_valid_kubernetes_objects():
    for obj in make(
        runtime_class="gvisor",
        host_users=False,
        node_selector={"a": "b"},
        tolerations=[{"key": "sandbox", "operator": "Exists", "effect": "NoSchedule"}],
    ):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_the_pod_meets_pod_security_restricted_and_more(pod):
    spec = pod["spec"]
    c = spec["containers"][0]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == c["securityContext"]["runAsUser"] == 65534
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["privileged"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    assert spec["restartPolicy"] == "Never"
    assert spec["hostNetwork"] is spec["hostPID"] is spec["hostIPC"] is False
    assert spec["activeDeadlineSeconds"] > 5
    assert "ports" not in c
    # Restricted allows only these volume types.
    for volume in spec["volumes"]:
        assert set(volume) - {"name"} <= {"configMap", "emptyDir"}


def test_resources_come_from_the_limits_in_force():
    limits = Limits(memory_bytes=256 * MIB, tmp_bytes=8 * MIB, cpu_request="200m", cpu_limit="2")
    pod = make(limits)[0]
    resources = pod["spec"]["containers"][0]["resources"]
    assert resources["requests"]["cpu"] == "200m" and resources["limits"]["cpu"] == "2"
    memory = int(resources["limits"]["memory"])
    assert 256 * MIB < memory <= 256 * MIB + 32 * MIB  # the script's allowance + the wrapper
    assert resources["requests"]["memory"] == resources["limits"]["memory"]
    assert int(resources["limits"]["ephemeral-storage"]) > 8 * MIB
    tmp = {v["name"]: v for v in pod["spec"]["volumes"]}["tmp"]["emptyDir"]
    assert tmp == {"medium": "Memory", "sizeLimit": str(8 * MIB)}
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    wrapper = parse_limits(env["INTEGR8S_LIMITS"])
    assert wrapper["memory_bytes"] == 256 * MIB and wrapper["output_bytes"] == limits.output_bytes
    assert wrapper["cpu_time_s"] == limits.cpu_time_s and wrapper["processes"] == 64


def test_labels_name_the_installation_and_the_run(pod):
    labels = pod["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "integr8s-execution"
    assert labels["integr8s/installation"] == "integr8s"
    assert labels["integr8s/execution-id"] == RUN_ID
    assert pod["metadata"]["name"].startswith("integr8s-run-5f0c7a52")
    assert len(pod["metadata"]["name"]) <= 63


def test_the_config_map_carries_the_script_stdin_and_wrapper():
    pod, cm = make()
    assert cm["metadata"]["name"] == pod["spec"]["volumes"][0]["configMap"]["name"]
    assert cm["metadata"]["labels"] == pod["metadata"]["labels"]
    assert cm["data"] == {
        "wrapper.py": WRAPPER_SOURCE,
        "script.py": "print('hi')\n",
        "stdin": "in",
        "integr8s_plots.py": PLOTS_SOURCE,
    }
    assert cm["immutable"] is True
    mount = pod["spec"]["containers"][0]["volumeMounts"][0]
    assert mount == {"name": "code", "mountPath": "/integr8s", "readOnly": True}
    assert pod["spec"]["containers"][0]["command"][-1] == "/integr8s/wrapper.py"


def test_optional_fields_appear_only_when_configured(pod):
    assert not {"runtimeClassName", "hostUsers", "nodeSelector", "tolerations"} & set(pod["spec"])
    tolerations = [{"key": "sandbox", "operator": "Exists", "effect": "NoSchedule"}]
    spec = make(
        runtime_class="gvisor",
        host_users=False,
        node_selector="pool=sandbox",
        tolerations=json.dumps(tolerations),
    )[0]["spec"]
    assert spec["runtimeClassName"] == "gvisor"
    assert spec["hostUsers"] is False
    assert spec["nodeSelector"] == {"pool": "sandbox"}
    assert spec["tolerations"] == tolerations


def test_settings_configure_the_backend(settings):
    settings.K8S_NAMESPACE = "runs"
    settings.K8S_RUNTIME_CLASS = "gvisor"
    settings.K8S_NODE_SELECTOR = "a=1,b=2"
    settings.K8S_HOST_USERS = False
    settings.SANDBOX_NAME = "blue"
    pod = from_settings(settings, api=object()).manifests(
        RunSpec(script="", runtime=Runtime("3.11"), limits=Limits(), run_id=RUN_ID)
    )[0]
    assert pod["metadata"]["namespace"] == "runs"
    assert pod["metadata"]["labels"]["integr8s/installation"] == "blue"
    assert pod["spec"]["runtimeClassName"] == "gvisor" and pod["spec"]["hostUsers"] is False
    assert pod["spec"]["nodeSelector"] == {"a": "1", "b": "2"}
    assert pod["spec"]["containers"][0]["image"] == "python:3.11-slim"


def test_every_run_gets_its_own_name_and_nonce():
    first, second = make()[0], make()[0]
    assert first["metadata"]["name"] != second["metadata"]["name"]
    b = KubernetesBackend(api=object())
    spec = RunSpec(script="", runtime=Runtime("3.12"), limits=Limits(), run_id=RUN_ID)
    nonces = {
        {e["name"]: e["value"] for e in b.manifests(spec)[0]["spec"]["containers"][0]["env"]}[
            "INTEGR8S_NONCE"
        ]
        for _ in range(3)
    }
    assert len(nonces) == 3


def test_the_module_imports_and_builds_manifests_without_a_cluster(monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    backend = KubernetesBackend()
    assert backend._api is None
    assert len(backend.manifests(RunSpec(script="", runtime=Runtime("3.12"), limits=Limits()))) == 2
    assert backend._api is None
