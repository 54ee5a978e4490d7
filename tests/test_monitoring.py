"""Prometheus scrape config, alert rules and the Grafana dashboard that ship in k8s/monitoring."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

MONITORING = Path(__file__).resolve().parent.parent / "k8s" / "monitoring"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    not PROMTOOL, reason="promtool is not installed (apt-get install prometheus; .ci/run does)"
)
METRIC = re.compile(r"\b((?:integr8s|django)_[a-z0-9_]+)")
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


@pytest.fixture
def exported(client, db):
    """Base names of every metric family the app's /metrics describes."""
    text = client.get("/metrics").content.decode()
    return {base_name(line.split()[2]) for line in text.splitlines() if line.startswith("# TYPE")}


@needs_promtool
def test_the_scrape_config_is_valid():
    result = promtool("check", "config", "prometheus.yml")
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


def test_the_dashboard_is_well_formed():
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 8
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        assert {"h", "w", "x", "y"} <= panel["gridPos"].keys()
        assert all(t["expr"] and t["refId"] for t in panel["targets"])


def test_dashboard_and_alerts_only_use_metrics_the_app_exports(exported):
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"][0]["rules"]
    exprs += [r["expr"] for r in rules]

    used = {base_name(m) for expr in exprs for m in METRIC.findall(expr)}

    assert used, "no metric names found in the expressions"
    assert used <= exported, f"not exported: {sorted(used - exported)}"
