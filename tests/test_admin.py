"""The operators' admin: executions (filters, search, cancel and retry), scripts, users, workers."""

import pytest
from django.urls import reverse

from executions.models import Execution, SavedScript, Worker
from tests.conftest import run_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    return admin


def test_it_is_for_staff_only(client, alice):
    client.force_login(alice)
    response = client.get(reverse("admin:executions_execution_changelist"))
    assert response.status_code == 302


def test_changelist_filters_and_search(client, staff, alice):
    mine = run_of(owner=alice, status="failed", error_type="memory_limit", python_version="3.9")
    other = run_of(status="completed", exit_code=0)
    url = reverse("admin:executions_execution_changelist")
    html = client.get(url).content.decode()
    assert str(mine.execution_id) in html and str(other.execution_id) in html
    for query in [
        {"status__exact": "failed"},
        {"error_type__exact": "memory_limit"},
        {"python_version__exact": "3.9"},
        {"q": "alice"},
        {"q": str(mine.execution_id)},
        {"q": str(mine.execution_id)[:8]},
    ]:
        response = client.get(url, query)
        html = response.content.decode()
        assert response.status_code == 200, query
        assert str(mine.execution_id) in html and str(other.execution_id) not in html, query
    this_year = client.get(url, {"created_at__year": str(mine.created_at.year)})
    assert str(mine.execution_id) in this_year.content.decode()


def test_change_page_shows_results_read_only(client, staff):
    run = run_of(status="completed", output="hello <b>", exit_code=0)
    response = client.get(reverse("admin:executions_execution_change", args=[run.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "hello &lt;b&gt;" in html
    assert 'name="output"' not in html and 'name="status"' not in html
    assert client.get(reverse("admin:executions_execution_add")).status_code == 403


def test_cancel_action(client, staff):
    queued, done = run_of(), run_of(status="completed")
    running = run_of(status="running")
    response = client.post(
        reverse("admin:executions_execution_changelist"),
        {"action": "cancel_runs", "_selected_action": [queued.pk, done.pk, running.pk]},
        follow=True,
    )
    assert "Cancelled 2 run(s)." in response.content.decode()
    queued.refresh_from_db(), done.refresh_from_db(), running.refresh_from_db()
    assert (
        queued.status == "cancelled"
        and queued.reason == "Cancelled by an operator before it started."
    )
    assert done.status == "completed"
    assert running.cancel_requested and running.reason == "Cancelled by an operator."


def test_retry_action(client, staff, alice):
    old = run_of(owner=alice, status="failed", error_type="system_error")
    response = client.post(
        reverse("admin:executions_execution_changelist"),
        {"action": "retry_runs", "_selected_action": [old.pk]},
        follow=True,
    )
    assert "Queued 1 new run(s)." in response.content.decode()
    new = Execution.objects.get(retry_of=old)
    assert new.status == "queued" and new.owner == alice


def test_saved_scripts_users_and_workers(client, staff, alice):
    saved = SavedScript.objects.create(owner=alice, name="Sorter", script="print(1)")
    Worker.objects.create(name="worker-1", backend="local")
    html = client.get(reverse("admin:executions_savedscript_changelist")).content.decode()
    assert "Sorter" in html
    assert (
        client.get(reverse("admin:executions_savedscript_change", args=[saved.pk])).status_code
        == 200
    )
    assert "alice" in client.get(reverse("admin:accounts_user_changelist")).content.decode()
    html = client.get(reverse("admin:executions_worker_changelist")).content.decode()
    assert "worker-1" in html
    assert client.get(reverse("admin:executions_worker_add")).status_code == 403
