"""k8s/ kustomizations, the Dockerfile and docker-compose.yml."""

import shutil
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.k8s.kustomize import OVERLAYS, ROOT, fallback_render, key, kubectl_render, render

K8S_VERSION = kubernetes_validate.utils.latest_version()
EXEC_NS = "integr8s-executions"
APP_NS = "integr8s"


def find(objects, kind, name=None):
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert found, f"no {kind} {name or ''}"
    return found[0] if name else found


def container(obj):
    return obj["spec"]["template"]["spec"]["containers"][0]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request):
    return request.param, render(request.param)


def test_every_object_is_valid_against_the_kubernetes_schemas(rendered):
    _, objects = rendered
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_the_validator_does_reject_a_bad_object():
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"bogus": 1}},
            K8S_VERSION,
            strict=True,
        )


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl is not installed")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_fallback_renderer_agrees_with_kubectl(overlay):
    ours = {key(o): o for o in fallback_render(ROOT / overlay)}
    theirs = {key(o): o for o in kubectl_render(ROOT / overlay)}
    assert ours == theirs


def test_no_object_is_left_without_a_namespace_or_lands_in_the_wrong_one(rendered):
    cluster_wide = {"Namespace", "RuntimeClass"}
    for obj in rendered[1]:
        ns = obj["metadata"].get("namespace")
        if obj["kind"] in cluster_wide:
            assert ns is None
        else:
            assert ns in (APP_NS, EXEC_NS), key(obj)


def test_the_executions_namespace_enforces_restricted_pod_security(rendered):
    labels = find(rendered[1], "Namespace", EXEC_NS)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_worker_may_only_do_what_the_backend_does(rendered):
    objects = rendered[1]
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    role = find(objects, "Role", "integr8s-executor")
    assert role["metadata"]["namespace"] == EXEC_NS
    rules = {
        (group, res): sorted(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for res in rule["resources"]
    }
    assert rules == {
        ("", "pods"): ["create", "delete", "get", "list", "watch"],
        ("", "pods/log"): ["get"],
        ("", "configmaps"): ["create", "delete", "get", "list"],
    }
    binding = find(objects, "RoleBinding", "integr8s-executor")
    assert binding["metadata"]["namespace"] == EXEC_NS
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "integr8s-executor",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "integr8s-worker", "namespace": APP_NS}
    ]
    worker = find(objects, "Deployment", "worker")["spec"]["template"]["spec"]
    assert worker["serviceAccountName"] == "integr8s-worker"
    for name in ("web",):
        spec = find(objects, "Deployment", name)["spec"]["template"]["spec"]
        assert spec["automountServiceAccountToken"] is False


def test_execution_pods_get_no_network(rendered, settings):
    from executions.sandbox.kubernetes import KubernetesBackend

    policies = [
        o for o in find(rendered[1], "NetworkPolicy") if o["metadata"]["namespace"] == EXEC_NS
    ]
    pod_labels = KubernetesBackend(api=object()).labels(_spec())
    selecting = [
        p
        for p in policies
        if all(
            pod_labels.get(k) == v
            for k, v in p["spec"]["podSelector"].get("matchLabels", {}).items()
        )
    ]
    assert selecting
    for policy in selecting:
        assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
        assert not policy["spec"].get("ingress") and not policy["spec"].get("egress")


def test_the_executions_namespace_has_a_quota_and_limit_range_that_fit_a_run(rendered):
    from executions.sandbox.kubernetes import KubernetesBackend

    objects = rendered[1]
    quota = find(objects, "ResourceQuota")[0]
    assert quota["metadata"]["namespace"] == EXEC_NS and "pods" in quota["spec"]["hard"]
    limit_range = find(objects, "LimitRange")[0]
    assert limit_range["metadata"]["namespace"] == EXEC_NS
    maximum = limit_range["spec"]["limits"][0]["max"]
    pod = KubernetesBackend(api=object()).manifests(_spec())[0]
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    assert _bytes(limits["memory"]) <= _bytes(maximum["memory"])
    assert _bytes(limits["ephemeral-storage"]) <= _bytes(maximum["ephemeral-storage"])
    assert _cpu(limits["cpu"]) <= _cpu(maximum["cpu"])


def test_web_is_probed_and_served(rendered):
    objects = rendered[1]
    web = container(find(objects, "Deployment", "web"))
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["args"][:3] == ["gunicorn", "-c", "python:integr8s.gunicorn"]
    assert "integr8s.asgi:application" in web["args"]
    service = find(objects, "Service", "web")
    ingress = find(objects, "Ingress", "web")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert service["spec"]["selector"].items() <= (
        find(objects, "Deployment", "web")["spec"]["template"]["metadata"]["labels"].items()
    )


def test_the_worker_runs_the_kubernetes_backend_and_migrations_run_once(rendered):
    objects = rendered[1]
    worker = container(find(objects, "Deployment", "worker"))
    assert worker["args"][:3] == ["python", "manage.py", "runworker"]
    assert "--metrics-port" in worker["args"]
    env = {e["name"]: e["value"] for e in worker["env"]}
    assert env["EXECUTION_BACKEND"] == "kubernetes"
    settings_map = find(objects, "ConfigMap", "integr8s-settings")["data"]
    assert settings_map["K8S_NAMESPACE"] == EXEC_NS
    job = container(find(objects, "Job", "migrate"))
    assert job["args"] == ["python", "manage.py", "migrate", "--no-input"]


def test_app_pods_are_hardened_too(rendered):
    for obj in rendered[1]:
        if obj["kind"] not in ("Deployment", "Job") or obj["metadata"]["namespace"] != APP_NS:
            continue
        spec = obj["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        for c in spec["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert "limits" in c["resources"]


def test_demo_brings_postgres_and_production_brings_no_placeholder_secret():
    demo = render("overlays/demo")
    postgres = find(demo, "StatefulSet", "postgres")
    assert container(postgres)["image"].startswith("postgres:")
    url = find(demo, "Secret", "integr8s-secrets")["stringData"]["DATABASE_URL"]
    assert "@postgres:5432/" in url
    production = render("overlays/production")
    assert not [o for o in production if o["kind"] == "Secret"]
    assert not [o for o in production if o["kind"] == "StatefulSet"]
    assert container(find(production, "Deployment", "web"))["image"].startswith("registry.")


def test_the_gvisor_overlay_adds_a_runtime_class_the_settings_name():
    objects = render("overlays/gvisor")
    runtime_class = find(objects, "RuntimeClass")[0]
    assert runtime_class["handler"] == "runsc"
    settings_map = find(objects, "ConfigMap", "integr8s-settings")["data"]
    assert settings_map["K8S_RUNTIME_CLASS"] == runtime_class["metadata"]["name"]


def test_the_readme_explains_every_overlay():
    text = (ROOT / "README.md").read_text()
    for overlay in OVERLAYS:
        assert overlay in text


# --- Dockerfile and docker-compose.yml --------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def test_one_serving_configuration_asgi_with_a_long_keep_alive():
    from integr8s import gunicorn

    assert gunicorn.worker_class == "uvicorn_worker.UvicornWorker"
    assert gunicorn.workers == 1 and gunicorn.keepalive >= 60
    assert gunicorn.forwarded_allow_ips == ""  # BEHIND_PROXY decides, not the server


def test_the_dockerfile_builds_the_app_image():
    text = (REPO / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.13-slim" in text
    assert "pip install ." in text and "collectstatic" in text
    assert "gunicorn" in text and "integr8s.asgi:application" in text
    assert "python:integr8s.gunicorn" in text  # the one serving configuration (ASGI)
    assert "USER 10001" in text


def test_docker_compose_runs_web_worker_and_postgres():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"web", "worker", "postgres", "migrate"} <= set(services)
    assert services["worker"]["command"][:3] == ["python", "manage.py", "runworker"]
    assert "postgres://" in services["web"]["environment"]["DATABASE_URL"]
    assert services["web"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    assert "pgdata" in compose["volumes"]


# --- helpers ----------------------------------------------------------------------------------


def _spec():
    from executions.limits import Limits
    from executions.runtimes import Runtime
    from executions.sandbox.contract import RunSpec

    return RunSpec(
        script="pass", runtime=Runtime("3.12", image="python:3.12-slim"), limits=Limits()
    )


def _bytes(q: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if q.endswith(suffix):
            return int(q[: -len(suffix)]) * factor
    return int(q)


def _cpu(q: str) -> float:
    return int(q[:-1]) / 1000 if q.endswith("m") else float(q)
