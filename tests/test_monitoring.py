"""Prometheus scrape configs, alert rules, Alertmanager's routes, Grafana's dashboards and the
log pipeline's configuration that ship in k8s/monitoring/ (and deploy/ for docker-compose)."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "k8s" / "monitoring"
DASHBOARDS = sorted((MONITORING / "dashboards").glob("*.json"))
PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
needs_promtool = pytest.mark.skipif(
    not PROMTOOL, reason="promtool is not installed (apt-get install prometheus; .ci/run does)"
)
needs_amtool = pytest.mark.skipif(
    not AMTOOL,
    reason="amtool is not installed (apt-get install prometheus-alertmanager; make test does)",
)
METRIC = re.compile(r"\b((?:integr8s|django|process|python)_[a-z0-9_]+)")
SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def promtool(*args):
    return subprocess.run(
        [PROMTOOL, *args], cwd=MONITORING, capture_output=True, text=True, timeout=60
    )


def base_name(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


# The sample names a family of each type has (the text format's TYPE line names a counter with
# its _total already; its _created samples are not for queries).
SAMPLES = {
    "counter": ("_total",),
    "gauge": ("",),
    "untyped": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
}


@pytest.fixture
def exported(client, db):
    """Every sample name the app's /metrics (and the worker's, the same registry) can hold, from
    its TYPE lines: a labelled family nothing has observed yet has no sample lines."""
    text = client.get("/metrics").content.decode()
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names |= {base_name(name) + suffix for suffix in SAMPLES[kind]}
    return names


def rendered_by_make_monitor(tmp_path, **env):
    """The configuration `make monitor` runs with (deploy/monitor.sh render)."""
    subprocess.run(
        [ROOT / "deploy" / "monitor.sh", "render"],
        env={"PATH": "/usr/bin:/bin", "MONITOR_DIR": str(tmp_path), **env},
        check=True,
        timeout=30,
    )
    return tmp_path


@needs_promtool
def test_the_scrape_config_make_monitor_runs_is_valid(tmp_path):
    folder = rendered_by_make_monitor(tmp_path, PORT="9000", METRICS_TOKEN="t0ken")
    result = subprocess.run(
        [PROMTOOL, "check", "config", "prometheus.yml"], cwd=folder, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((folder / "prometheus.yml").read_text())
    web = next(j for j in config["scrape_configs"] if j["job_name"] == "integr8s-web")
    assert web["static_configs"][0]["targets"] == ["127.0.0.1:9000"]
    assert (folder / web["authorization"]["credentials_file"]).read_text() == "t0ken"
    assert (folder / "metrics-token").stat().st_mode & 0o077 == 0


@needs_promtool
def test_the_compose_scrape_config_is_valid(tmp_path):
    """deploy/prometheus.yml as docker-compose.yml mounts it: the token as a secret file."""
    token = tmp_path / "metrics_token"
    token.write_text("t0ken")
    text = (ROOT / "deploy" / "prometheus.yml").read_text()
    (tmp_path / "prometheus.yml").write_text(text.replace("/run/secrets/metrics_token", str(token)))
    shutil.copy(MONITORING / "alerts.yml", tmp_path)
    result = subprocess.run(
        [PROMTOOL, "check", "config", "prometheus.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_the_kubernetes_scrape_config_is_valid():
    result = promtool("check", "config", "prometheus-kubernetes.yml")
    if "kubernetes_sd_configs not found" in result.stdout + result.stderr:
        pytest.skip("this promtool was built without Kubernetes service discovery (Debian's)")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_the_alert_rules_are_valid_and_their_unit_tests_pass():
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr


def test_every_alert_has_a_severity_and_summary():
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"][0]["rules"]
    assert len(rules) >= 5
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_every_alert_has_a_unit_test_that_fires_it():
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"][0]["rules"]
    tests = yaml.safe_load((MONITORING / "alerts_test.yml").read_text())["tests"]
    fired = {c["alertname"] for t in tests for c in t["alert_rule_test"] if c["exp_alerts"]}
    quiet = {c["alertname"] for t in tests for c in t["alert_rule_test"] if not c["exp_alerts"]}
    names = {r["alert"] for r in rules}
    assert names <= fired, f"never seen firing: {sorted(names - fired)}"
    assert names - {"Integr8sLostRuns"} <= quiet, f"never seen quiet: {sorted(names - quiet)}"


@needs_amtool
def test_the_alertmanager_config_is_valid_and_routes_every_alert_to_the_webhook(tmp_path):
    checked = subprocess.run(
        [AMTOOL, "check-config", "alertmanager.yml"], cwd=MONITORING, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for severity in ("warning", "critical"):
        routed = subprocess.run(
            [AMTOOL, "config", "routes", "test", "--config.file=alertmanager.yml",
             f"severity={severity}", "alertname=Integr8sSystemErrors"],
            cwd=MONITORING, capture_output=True, text=True,
        )  # fmt: skip
        assert routed.stdout.strip() == "webhook", routed.stdout + routed.stderr
    config = yaml.safe_load((MONITORING / "alertmanager.yml").read_text())
    assert config["receivers"][0]["webhook_configs"][0]["url"].startswith("http")


@needs_amtool
def test_make_monitor_points_the_webhook_where_it_is_told(tmp_path):
    folder = rendered_by_make_monitor(tmp_path, ALERT_WEBHOOK_URL="http://127.0.0.1:7777/hook")
    config = yaml.safe_load((folder / "alertmanager.yml").read_text())
    assert config["receivers"][0]["webhook_configs"][0]["url"] == "http://127.0.0.1:7777/hook"
    checked = subprocess.run(
        [AMTOOL, "check-config", "alertmanager.yml"], cwd=folder, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def load(path):
    return json.loads(path.read_text())


def test_the_dashboards_are_overview_workers_and_logs():
    assert [p.stem for p in DASHBOARDS] == ["logs", "overview", "workers"]
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_the_dashboard_is_well_formed(path):
    dashboard = load(path)
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 3
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert all(t["expr"] and t["refId"] for t in panel["targets"])
        uid = panel["datasource"]["uid"]
        assert uid.startswith("${") and uid[2:-1] in variables, panel["title"]
    boxes = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in dashboard["panels"]]
    assert len(set(boxes)) == len(boxes), "two panels in one place"


def titles(name):
    return " | ".join(p["title"].lower() for p in load(MONITORING / "dashboards" / name)["panels"])


def test_the_overview_shows_what_an_operator_asks_first():
    text = titles("overview.json")
    for wanted in (
        "finished per second, by status", "queue depth", "oldest queued", "run time (p50",
        "queue wait", "runs in flight", "memory", "cpu", "http responses", "5xx",
        "refusals", "latency",
    ):  # fmt: skip
        assert wanted in text, wanted


def test_the_worker_dashboard_shows_slots_start_time_heartbeats_and_recoveries():
    text = titles("workers.json")
    for wanted in ("slots used", "sandbox start", "heartbeat", "recoveries"):
        assert wanted in text, wanted


def test_the_logs_dashboard_follows_one_execution_by_id_with_labels_alloy_sets():
    dashboard = load(MONITORING / "dashboards" / "logs.json")
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["execution_id"]["type"] == "textbox"
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert any('|= "$execution_id"' in e for e in exprs)
    labels = {m for e in exprs for m in re.findall(r"[{,]\s*(\w+)\s*=~?", e)}
    for config in (ROOT / "deploy/alloy/config.alloy", MONITORING / "alloy-kubernetes.alloy"):
        text = config.read_text()
        assert 'target_label  = "service"' in text, config
        for label in labels:
            assert f'"{label}"' in text, (config, label)


@pytest.mark.parametrize(
    "config", [ROOT / "deploy/alloy/config.alloy", MONITORING / "alloy-kubernetes.alloy"],
    ids=["compose", "kubernetes"],
)  # fmt: skip
def test_the_alloy_pipeline_is_whole(config):
    """No Alloy binary here: every component another one refers to is declared, the blocks
    balance, and only integr8s' own services are read (never an execution's output)."""
    text = re.sub(r"^\s*//.*$", "", config.read_text(), flags=re.M)
    assert text.count("{") == text.count("}")
    declared = set(re.findall(r'^([a-z_.]+) "(\w+)" \{', text, re.M))
    declared_names = {f"{kind}.{name}" for kind, name in declared}
    for ref in re.findall(
        r"\b((?:discovery|loki)\.[a-z_.]+?\.\w+)\.(?:targets|output|receiver)", text
    ):
        assert ref in declared_names, ref
    assert 'regex         = "web|worker|migrate' in text
    assert "loki:3100/loki/api/v1/push" in text


def test_the_kubernetes_monitoring_stack_is_valid_and_stays_in_its_namespace():
    import kubernetes_validate

    from tests.k8s.kustomize import kubectl_render

    if not shutil.which("kubectl"):
        pytest.skip("kubectl is not installed (it renders the kustomization)")
    objects = kubectl_render(MONITORING)
    version = kubernetes_validate.utils.latest_version()
    kinds = {(o["kind"], o["metadata"]["name"].rsplit("-", 1)[0]) for o in objects}
    for name in ("prometheus", "alertmanager", "grafana", "loki", "alloy"):
        assert ("Deployment", name) in kinds
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)
        assert obj["metadata"]["namespace"] == "integr8s", obj["metadata"]["name"]
        assert obj["kind"] not in ("ClusterRole", "ClusterRoleBinding")
        if obj["kind"] == "Deployment":
            pod = obj["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            for container in pod["containers"]:
                assert container["securityContext"]["allowPrivilegeEscalation"] is False
                assert container["securityContext"]["readOnlyRootFilesystem"] is True
                assert ":" in container["image"] and not container["image"].endswith(":latest")
    maps = {o["metadata"]["name"].rsplit("-", 1)[0]: o for o in objects if o["kind"] == "ConfigMap"}
    assert set(maps["grafana-dashboards"]["data"]) == {p.name for p in DASHBOARDS}
    assert maps["grafana-dashboards"]["metadata"]["labels"]["grafana_dashboard"] == "1"
    prometheus = yaml.safe_load(maps["prometheus-config"]["data"]["prometheus.yml"])
    assert (
        prometheus["rule_files"] == ["alerts.yml"]
        and "alerts.yml" in maps["prometheus-config"]["data"]
    )
    token = prometheus["scrape_configs"][0]["authorization"]["credentials_file"]
    mounts = next(
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "prometheus"
    )
    container = mounts["spec"]["template"]["spec"]["containers"][0]
    assert any(token.startswith(m["mountPath"] + "/") for m in container["volumeMounts"])
    roles = [o for o in objects if o["kind"] == "Role"]
    alloy = next(r for r in roles if r["metadata"]["name"] == "alloy-logs")
    assert {res for rule in alloy["rules"] for res in rule["resources"]} == {"pods", "pods/log"}


def test_the_kubernetes_worker_serves_its_metrics_beyond_loopback():
    from tests.k8s.kustomize import render

    worker = next(
        o for o in render("base") if o["kind"] == "Deployment" and o["metadata"]["name"] == "worker"
    )
    args = worker["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--metrics-addr") + 1] == "0.0.0.0"
    annotations = worker["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == args[args.index("--metrics-port") + 1]


def test_dashboards_and_alerts_only_use_metrics_the_app_exports(exported):
    exprs = [
        t["expr"]
        for path in DASHBOARDS
        for p in load(path)["panels"]
        if p["datasource"]["type"] == "prometheus"
        for t in p["targets"]
    ]
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"][0]["rules"]
    exprs += [r["expr"] for r in rules]

    # Label matchers and grouping name labels (python_version), not metrics: leave them out.
    bare = [re.sub(r"\{[^}]*\}|\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", e) for e in exprs]
    used = {m for expr in bare for m in METRIC.findall(expr)}

    # Whole names: a histogram's _total, or a gauge's _bucket, is a panel with no data.
    assert used, "no metric names found in the expressions"
    assert used <= exported, f"not exported: {sorted(used - exported)}"
    assert "integr8s_refusals_total" in used and "integr8s_sandbox_start_seconds_bucket" in used


def test_every_scrape_config_labels_the_web_and_worker_as_the_dashboards_select_them(tmp_path):
    """The dashboards and alerts tell the worker's figures from the web's by `component`."""
    used = {
        value
        for path in DASHBOARDS
        for p in load(path)["panels"]
        for t in p["targets"]
        for value in re.findall(r'component=~?"([^"]+)"', t["expr"])
    }
    assert used == {"worker"}
    monitor = yaml.safe_load((rendered_by_make_monitor(tmp_path) / "prometheus.yml").read_text())
    compose = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    for config in (monitor, compose):
        jobs = {j["job_name"]: j for j in config["scrape_configs"]}
        for component in ("web", "worker"):
            static = jobs[f"integr8s-{component}"]["static_configs"]
            assert all(c["labels"]["component"] == component for c in static)
    kubernetes = yaml.safe_load((MONITORING / "prometheus-kubernetes.yml").read_text())
    relabel = kubernetes["scrape_configs"][0]["relabel_configs"]
    assert {
        "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_component"],
        "target_label": "component",
    } in relabel
    from tests.k8s.kustomize import render

    pods = {
        o["metadata"]["name"]: o["spec"]["template"]["metadata"]
        for o in render("base")
        if o["kind"] == "Deployment"
    }
    for component in ("web", "worker"):
        assert pods[component]["labels"]["app.kubernetes.io/component"] == component
        assert pods[component]["annotations"]["prometheus.io/scrape"] == "true"


def fake_programs(folder: Path, **scripts: str) -> Path:
    """A folder of stand-in programs (name -> shell body) to put first on PATH."""
    folder.mkdir()
    for name, body in scripts.items():
        path = folder / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    return folder


@needs_promtool
@needs_amtool
def test_make_monitor_installs_prometheus_and_alertmanager_when_missing(tmp_path):
    """As root with apt, the missing packages are installed (here a stand-in apt-get records
    it), then both start with the rendered configuration; as another user, it says the
    command to run instead."""
    calls = tmp_path / "calls"
    bin_ = fake_programs(
        tmp_path / "bin",
        dpkg="exit 1",  # nothing installed
        **{
            "apt-get": f'echo "apt-get $*" >>{calls}',
            "prometheus": f'echo "prometheus $*" >>{calls}',
            "prometheus-alertmanager": f'echo "alertmanager $*" >>{calls}; exec sleep 30',
        },
    )
    env = {"PATH": f"{bin_}:/usr/bin:/bin", "MONITOR_DIR": str(tmp_path / "monitor")}
    result = subprocess.run(
        [ROOT / "deploy" / "monitor.sh"], env=env, capture_output=True, text=True, timeout=60
    )
    lines = calls.read_text().splitlines()
    install = next(line for line in lines if " install " in line)
    assert install.split()[-2:] == ["prometheus", "prometheus-alertmanager"], lines
    assert any(line.startswith("prometheus --config.file=") for line in lines), lines
    # The stand-in Prometheus stops at once: the other is stopped too, and that is an error.
    assert result.returncode == 1 and "stopping the other" in result.stderr

    if os.getuid() == 0:
        fake_programs(tmp_path / "user", id="echo 1000")
        env["PATH"] = f"{tmp_path / 'user'}:{env['PATH']}"
    calls.unlink()
    result = subprocess.run(
        [ROOT / "deploy" / "monitor.sh"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1 and not calls.exists()
    assert "sudo apt-get install -y prometheus prometheus-alertmanager" in result.stderr
