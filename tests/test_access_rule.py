"""One access rule (Execution.objects.visible_to / owned_by / controlled_by) for pages, API and
admin, and one vocabulary for statuses (Execution.Status with its labels)."""

import ast
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from executions.models import ACTIVE, TERMINAL, Execution, Status
from tests.conftest import run_of

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw")


def callers(alice, bob, operator):
    """Each caller as a page client and an API client sharing one identity."""
    made_it = Client()
    made_it.post(reverse("run"), {"script": "print('anonymous')"})
    anonymous_run = Execution.objects.get(owner=None)
    result = {"made-it": made_it, "stranger": Client()}
    for name, user in [("alice", alice), ("bob", bob), ("operator", operator)]:
        client = Client()
        client.force_login(user)
        result[name] = client
    return result, anonymous_run


def can(client, run):
    """What this client may do with run, asked of the page and of the API."""
    page = client.get(run.get_absolute_url()).status_code == 200
    api = client.get(f"/api/v1/result/{run.execution_id}").status_code == 200
    assert page == api, "pages and API disagree on seeing it"
    return page


def cancels(client, run, through):
    Execution.objects.filter(pk=run.pk).update(status="queued", error_type=None)
    if through == "page":
        code = client.post(reverse("execution-cancel", args=[run.execution_id])).status_code
        return code == 302
    code = client.post(f"/api/v1/executions/{run.execution_id}/cancel").status_code
    return code == 200


def test_pages_and_api_apply_one_rule(alice, bob, operator):
    clients, anonymous = callers(alice, bob, operator)
    alices = Execution.objects.submit("print(1)", owner=alice)
    see = {name: (can(c, anonymous), can(c, alices)) for name, c in clients.items()}
    assert see == {
        "made-it": (True, False),
        "stranger": (True, False),
        "alice": (True, True),
        "bob": (True, False),
        "operator": (True, True),
    }
    for through in ("page", "api"):
        cancel = {
            name: (cancels(c, anonymous, through), cancels(c, alices, through))
            for name, c in clients.items()
        }
        assert cancel == {
            "made-it": (True, False),
            "stranger": (False, False),
            "alice": (False, True),
            "bob": (False, False),
            "operator": (True, True),
        }, through


def test_history_is_the_callers_own_on_pages_and_api(alice, bob, operator):
    clients, anonymous = callers(alice, bob, operator)
    alices = Execution.objects.submit("print(1)", owner=alice)
    for name, client in clients.items():
        page = client.get(reverse("history")).content.decode()
        api = {e["execution_id"] for e in client.get("/api/v1/executions/").json()["results"]}
        on_page = {str(r.execution_id) for r in (anonymous, alices) if str(r.execution_id) in page}
        assert on_page == api, name
    assert api_ids(clients["made-it"]) == {str(anonymous.execution_id)}
    assert api_ids(clients["operator"]) == set()  # operators see all, but own nothing


def api_ids(client):
    return {e["execution_id"] for e in client.get("/api/v1/executions/").json()["results"]}


def test_the_admin_is_for_operators_with_the_view_permission(
    client, alice, operator, django_user_model
):
    run_of(owner=alice)
    helper = django_user_model.objects.create_user("helper", "", "pw", is_staff=True)
    client.force_login(helper)  # staff, but without the view permission
    assert client.get(reverse("admin:executions_execution_changelist")).status_code == 403
    client.force_login(operator)
    assert client.get(reverse("admin:executions_execution_changelist")).status_code == 200


def test_the_admins_retry_applies_the_checks_of_page_and_api(client, operator):
    done = run_of(status="completed")
    going = run_of(status="running")
    gone = run_of(status="completed", python_version="2.0")
    client.force_login(operator)

    response = client.post(
        reverse("admin:executions_execution_changelist"),
        {"action": "retry_runs", "_selected_action": [done.pk, going.pk, gone.pk]},
        follow=True,
    )

    html = response.content.decode()
    assert "Queued 1 new run(s)." in html
    assert "still running" in html and "is not available" in html
    assert list(Execution.objects.filter(retry_of__isnull=False).values_list("retry_of", flat=True))
    assert Execution.objects.filter(retry_of=done).count() == 1
    assert not Execution.objects.filter(retry_of__in=[going, gone]).exists()
    api = APIClient()
    api.force_authenticate(operator)
    assert api.post(f"/api/v1/executions/{going.execution_id}/retry").status_code == 409


def test_the_admins_retry_stops_at_a_full_queue(client, operator, settings):
    """Past MAX_QUEUED the page and the API answer 503; the admin queues no more either."""
    settings.MAX_QUEUED = 2
    done = [run_of(status="completed") for _ in range(3)]
    run_of(status="queued")
    client.force_login(operator)

    response = client.post(
        reverse("admin:executions_execution_changelist"),
        {"action": "retry_runs", "_selected_action": [run.pk for run in done]},
        follow=True,
    )

    html = response.content.decode()
    assert "Queued 1 new run(s)." in html
    assert html.count("integr8s is busy") == 2
    assert Execution.objects.queued().count() == 2


# --- one vocabulary -------------------------------------------------------------------------


def test_status_names_and_labels_live_in_one_place(client):
    assert Execution.Status is Status
    assert set(ACTIVE) | set(TERMINAL) == set(Status.values) and not set(ACTIVE) & set(TERMINAL)
    assert Status.TIMEOUT.label == "Timed out"
    run = run_of(status="timeout")
    assert "Timed out" in client.get(run.get_absolute_url()).content.decode()
    history = client.get(reverse("history")).content.decode()
    for label in Status.labels:
        assert f">{label}</option>" in history


def words_spelled_out(tree):
    """String constants naming a status or error type where code decides by them: compared
    with, or given as a status= / error_type= argument."""
    words = set(Status.values) | set(Execution.ErrorType.values)
    for node in ast.walk(tree):
        values = []
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                values += side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
        elif isinstance(node, ast.keyword) and node.arg in ("status", "error_type"):
            values = [node.value]
        for value in values:
            if isinstance(value, ast.Constant) and value.value in words:
                yield node.lineno, value.value


def test_code_names_statuses_through_the_choices():
    """Outside the sandbox (no Django there; its contract is checked below) and migrations
    (history), code says Status.RUNNING, never "running"."""
    found = []
    for app in ("accounts", "executions", "integr8s"):
        for path in (ROOT / app).rglob("*.py"):
            if "sandbox" in path.parts or "migrations" in path.parts:
                continue
            tree = ast.parse(path.read_text())
            found += [f"{path.relative_to(ROOT)}:{n}: {w!r}" for n, w in words_spelled_out(tree)]
    assert not found


def test_the_sandbox_contract_speaks_the_same_words():
    from executions.sandbox import contract

    assert {contract.COMPLETED, contract.FAILED, contract.TIMEOUT, contract.CANCELLED} == set(
        TERMINAL
    )
    for name in ("SCRIPT_ERROR", "MEMORY_LIMIT", "OUTPUT_LIMIT", "SYSTEM_ERROR"):
        assert getattr(contract, name) in Execution.ErrorType.values


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger is PostgreSQL's")
def test_the_notify_trigger_names_the_statuses_of_the_model():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_functiondef('integr8s_notify'::regproc)")
        body = cursor.fetchone()[0]
    finished = ", ".join(f"'{s}'" for s in TERMINAL)
    assert f"NEW.status = '{Status.QUEUED}'" in body
    assert f"NEW.status IN ({finished})" in body


def test_accounts_does_not_import_executions():
    for path in (ROOT / "accounts").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] == "executions" for n in names), path
