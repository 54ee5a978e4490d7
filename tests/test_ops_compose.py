"""docker-compose.yml (`make up`): valid against the Compose Specification's schema, and whole:
every image, command, port, volume and mounted file it names exists and fits the rest.

No container engine runs on the development machines, so nothing here starts the stack; the
configuration files it mounts are checked by their own tools in tests/test_monitoring.py and
tests/test_ops_live.py (promtool, amtool, caddy)."""

import json
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "tests" / "compose" / "compose-spec.json").read_text())
VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def written_by_make_up(tmp_path: Path) -> dict[str, str]:
    """The .env `make up` writes (deploy/env.sh), made in a scratch folder."""
    env_file = tmp_path / ".env"
    subprocess.run(
        ["sh", str(ROOT / "deploy" / "env.sh")],
        env={"ENV_FILE": str(env_file), "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
    )
    lines = env_file.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, as `docker compose` does them."""

    def value(match: re.Match) -> str:
        name, op, arg = match.groups()
        if name in env and (env[name] or not op or not op.startswith(":")):
            return env[name]
        if op and op.endswith("?"):
            raise AssertionError(f"{name} is required: {arg}")
        return arg or ""

    return VARIABLE.sub(value, text)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return written_by_make_up(tmp_path_factory.mktemp("env"))


@pytest.fixture(scope="module")
def compose(env):
    return yaml.safe_load(interpolate((ROOT / "docker-compose.yml").read_text(), env))


def test_make_up_writes_every_secret_at_random_and_keeps_them(tmp_path):
    first = written_by_make_up(tmp_path)
    assert set(first) == {
        "SECRET_KEY",
        "POSTGRES_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
        "METRICS_TOKEN",
    }
    assert all(re.fullmatch(r"[0-9a-f]{32,}", v) for v in first.values()), first
    assert (tmp_path / ".env").stat().st_mode & 0o077 == 0
    assert written_by_make_up(tmp_path) == first  # a second `make up` changes nothing
    other = tmp_path / "other"
    other.mkdir()
    assert not set(written_by_make_up(other).values()) & set(first.values())


def test_the_key_make_up_writes_is_one_the_app_accepts(env):
    from integr8s import secret_key

    secret_key.check(env["SECRET_KEY"], "SECRET_KEY")


def test_every_variable_the_file_needs_is_one_make_up_writes_or_has_a_default(env):
    for name, op, _ in VARIABLE.findall((ROOT / "docker-compose.yml").read_text()):
        assert name in env or op == ":-", f"${{{name}}} has neither a default nor a .env entry"


def test_it_is_valid_against_the_compose_specification(compose):
    jsonschema.Draft7Validator(SCHEMA).validate(compose)


def test_the_schema_does_reject_a_wrong_file(compose):
    wrong = json.loads(json.dumps(compose))
    wrong["services"]["web"]["ports"] = {"443": "443"}
    wrong["services"]["web"]["restart_policy"] = "always"
    errors = list(jsonschema.Draft7Validator(SCHEMA).iter_errors(wrong))
    assert len(errors) >= 2


def test_it_runs_the_whole_stack(compose):
    assert {
        "postgres", "migrate", "web", "worker", "caddy",
        "prometheus", "alertmanager", "grafana", "loki", "alloy",
    } <= set(compose["services"])  # fmt: skip


def test_images_are_pinned_and_the_apps_is_built_here(compose):
    for name, service in compose["services"].items():
        image = service["image"]
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").is_file(), name
            assert image == "integr8s:latest", name
        else:
            tag = image.rpartition(":")[2]
            assert ":" in image and tag != "latest" and re.match(r"v?\d", tag), (name, image)


def test_app_commands_are_management_commands_that_exist(compose):
    from django.core.management import get_commands

    for name, service in compose["services"].items():
        command = service.get("command")
        if "build" in service and command:
            assert command[:2] == ["python", "manage.py"], name
            assert command[2] in get_commands(), (name, command)


def test_the_web_container_runs_the_images_command_the_server_make_run_runs(compose):
    """No command of its own: the Dockerfile's CMD, the same application `manage.py serve`
    starts (WSGI or ASGI, whichever it is now)."""
    assert "command" not in compose["services"]["web"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = json.loads(
        re.search(r"^CMD (\[.*?\])\s*$", dockerfile, re.M | re.S)[1].replace("\\\n", "")
    )
    serve = (ROOT / "executions" / "management" / "commands" / "serve.py").read_text()
    app = next(arg for arg in cmd if arg.startswith("integr8s."))
    assert f'"{app}"' in serve, f"Dockerfile serves {app}, manage.py serve something else"
    assert "--bind=0.0.0.0:8000" in cmd and "8000" in compose["services"]["web"]["expose"]


def test_every_file_it_mounts_exists_and_every_volume_is_declared(compose):
    declared = set(compose["volumes"])
    used = set()
    for name, service in compose["services"].items():
        for mount in service.get("volumes", []):
            source, target = mount.split(":")[:2]
            assert target.startswith("/"), (name, mount)
            if source.startswith("./"):
                assert (ROOT / source).exists(), (name, source)
                assert mount.endswith(":ro"), f"{name} may write to the checkout: {mount}"
            elif source.startswith("/"):
                assert source == "/var/run/docker.sock" and name == "alloy", (name, mount)
            else:
                assert source in declared, (name, source)
                used.add(source)
    assert used == declared


def test_dependencies_and_secrets_name_what_exists(compose, env):
    services = compose["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", []):
            assert dependency in services, (name, dependency)
        for secret in service.get("secrets", []):
            assert secret in compose["secrets"], (name, secret)
    for secret in compose["secrets"].values():
        assert secret["environment"] in env


def test_everything_is_published_on_loopback_and_on_the_port_it_listens_on(compose):
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    listens = {
        "caddy": {
            re.search(r"https_port \{\$HTTPS_PORT:(\d+)\}", caddyfile)[1],
            re.search(r"http_port \{\$HTTP_PORT:(\d+)\}", caddyfile)[1],
        },
        "prometheus": {"9090"},
        "alertmanager": {"9093"},
        "grafana": {"3000"},  # Grafana's own default
    }
    published = {}
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            host, host_port, container_port = port.split(":")
            assert host == "127.0.0.1", (name, port)
            published.setdefault(name, set()).add(container_port)
            assert host_port == container_port, (name, port)
    assert published == listens
    for name in ("prometheus", "alertmanager"):
        flags = compose["services"][name]["command"]
        assert f"--web.listen-address=:{listens[name].pop()}" in flags


def reachable(compose) -> set[str]:
    """host:port pairs the stack's services answer on inside its network."""
    pairs = set()
    for name, service in compose["services"].items():
        for port in service.get("expose", []):
            pairs.add(f"{name}:{port}")
        for port in service.get("ports", []):
            pairs.add(f"{name}:{port.split(':')[-1]}")
    return pairs


def test_every_address_the_configurations_use_is_a_service_that_listens_there(compose):
    services = compose["services"]
    inside = reachable(compose)
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = [
        target
        for job in prometheus["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    ]
    targets += prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    datasources = yaml.safe_load((ROOT / "k8s/monitoring/grafana/datasources.yml").read_text())
    targets += [d["url"].removeprefix("http://") for d in datasources["datasources"]]
    alloy = (ROOT / "deploy" / "alloy" / "config.alloy").read_text()
    targets += re.findall(r'url\s*=\s*"http://([^/"]+)', alloy)
    targets.append(services["caddy"]["environment"]["UPSTREAM"])
    for target in targets:
        if target != "localhost:9090":  # Prometheus itself
            assert target in inside, f"nothing in the stack listens on {target}"


def test_prometheus_scrapes_the_web_with_the_token_make_up_made(compose):
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    web = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "integr8s-web")
    assert web["authorization"]["credentials_file"] == "/run/secrets/metrics_token"
    assert "metrics_token" in compose["services"]["prometheus"]["secrets"]
    assert compose["secrets"]["metrics_token"]["environment"] == "METRICS_TOKEN"
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert raw["services"]["web"]["environment"]["METRICS_TOKEN"].startswith("${METRICS_TOKEN")
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./k8s/monitoring/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts
    assert prometheus["rule_files"] == ["alerts.yml"]


def test_the_worker_serves_its_metrics_to_the_stack_and_the_app_logs_json(compose):
    worker = compose["services"]["worker"]
    command = worker["command"]
    assert command[command.index("--metrics-port") + 1] == "9100"
    assert command[command.index("--metrics-addr") + 1] == "0.0.0.0"
    for name in ("web", "worker", "migrate"):
        environment = compose["services"][name]["environment"]
        assert environment["LOG_FORMAT"] == "json"
        assert environment["BEHIND_PROXY"] == "1" and environment["HTTPS"] == "true"


def test_grafana_loads_the_dashboards_from_where_they_are_mounted(compose):
    provider = yaml.safe_load((ROOT / "k8s/monitoring/grafana/dashboards.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./k8s/monitoring/dashboards:{path}:ro" in mounts
    home = compose["services"]["grafana"]["environment"][
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"
    ]
    assert (ROOT / "k8s/monitoring/dashboards" / Path(home).relative_to(path)).is_file()


def test_the_image_has_the_default_package_set_make_run_builds_and_not_this_host_s():
    """`make run` builds the default version's package set on first start; the image builds its
    own (for its interpreter), and the one built on this machine is not sent to the build."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^RUN .*python manage\.py build_runtimes --default\b", dockerfile, re.M)
    makefile = (ROOT / "Makefile").read_text()
    assert "manage.py build_runtimes --default --if-missing" in makefile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"runtime-packages", ".venv", ".env", "var"} <= set(ignored)
