"""Model paths the other tests leave out: the access rule for operators, adoption of
anonymous runs, claim races, lease recovery, live output, and the rows' names."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser, Permission
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory
from django.utils import timezone

from executions import models, runtimes
from executions.limits import Limits
from executions.models import (
    ANONYMOUS_RUNS,
    Execution,
    InputLine,
    OutputChunk,
    SavedScript,
    Worker,
    adopt_anonymous_runs,
    submission_errors,
)

from .conftest import run_of as bare_run_of

pytestmark = pytest.mark.django_db


def run_of(owner=None, **fields):
    fields.setdefault("limits", Limits().to_dict())
    return bare_run_of(owner, **fields)


def request_as(user):
    request = RequestFactory().get("/")
    request.user = user
    request.session = SessionStore()
    return request


def operator(user, django_user_model, *codenames):
    user.is_staff = True  # operators sign in to the admin
    user.save(update_fields=["is_staff"])
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return django_user_model.objects.get(pk=user.pk)  # a fresh permission cache


def test_no_python_version_at_all_is_an_error(monkeypatch):
    monkeypatch.setattr(runtimes, "default_version", lambda backend=None: "")
    errors = submission_errors("print(1)", "", "")
    assert errors == {"python_version": "No Python version is available on this server."}


def test_operators_with_view_permission_see_every_run(alice, bob, django_user_model):
    mine, theirs = run_of(bob), run_of(alice)
    assert list(Execution.objects.visible_to(request_as(bob))) == [mine]
    bob = operator(bob, django_user_model, "view_execution")
    assert set(Execution.objects.visible_to(request_as(bob))) == {mine, theirs}


def test_a_permission_without_staff_shows_no_one_elses_run(alice, bob, django_user_model):
    mine = run_of(bob)
    run_of(alice)
    bob.user_permissions.add(*Permission.objects.filter(codename="view_execution"))
    bob = django_user_model.objects.get(pk=bob.pk)
    assert list(Execution.objects.visible_to(request_as(bob))) == [mine]


def test_a_users_request_reads_no_permission_tables(bob, django_assert_num_queries):
    run_of(bob)
    request = request_as(bob)
    with django_assert_num_queries(1):  # the runs; not auth_permission, twice
        list(Execution.objects.visible_to(request))


def test_operators_with_change_permission_control_every_run(alice, bob, django_user_model):
    theirs = run_of(alice)
    assert not Execution.objects.controlled_by(request_as(bob)).exists()
    bob = operator(bob, django_user_model, "change_execution")
    assert list(Execution.objects.controlled_by(request_as(bob))) == [theirs]


def test_signing_in_adopts_the_sessions_anonymous_runs(alice):
    anon = run_of(None, session_key="sess-1")
    other = run_of(None, session_key="sess-2")
    request = request_as(AnonymousUser())
    request.session[ANONYMOUS_RUNS] = "sess-1"
    adopt_anonymous_runs(sender=type(alice), request=request, user=alice)
    anon.refresh_from_db()
    other.refresh_from_db()
    assert anon.owner == alice and anon.session_key == ""
    assert other.owner is None
    assert ANONYMOUS_RUNS not in request.session


def test_signing_in_without_a_request_adopts_nothing(alice):
    run = run_of(None, session_key="sess-1")
    adopt_anonymous_runs(sender=type(alice), request=None, user=alice)
    run.refresh_from_db()
    assert run.owner is None


def test_terminal_lists_only_ended_runs():
    done = run_of(status="completed")
    run_of(status="queued")
    run_of(status="running")
    assert list(Execution.objects.terminal()) == [done]


def test_a_claim_lost_to_another_worker_looks_again(monkeypatch):
    first, second = run_of(), run_of()
    real = Execution.objects.all()._claim_one
    lost = {"n": 0}

    def claim_one(self, pk, worker, lease_s):
        if lost["n"] == 0:
            lost["n"] += 1
            Execution.objects.filter(pk=pk).update(status="running", worker="other")
            return None
        return real(pk, worker, lease_s)

    monkeypatch.setattr(models.ExecutionQuerySet, "_claim_one", claim_one)
    claimed = Execution.objects.claim("w1", 30, limit=1)
    assert [c.pk for c in claimed] == [second.pk]
    assert Execution.objects.get(pk=first.pk).worker == "other"
    assert Execution.objects.get(pk=second.pk).worker == "w1"


def test_expired_leases_are_requeued_or_failed():
    past = timezone.now() - timedelta(minutes=5)
    again = run_of(status="running", worker="gone", attempts=1, lease_expires_at=past)
    lost = run_of(status="running", worker="gone", attempts=3, lease_expires_at=past)
    live = run_of(
        status="running",
        worker="alive",
        attempts=1,
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )
    assert Execution.objects.recover_expired(max_attempts=3) == (1, 1)
    again.refresh_from_db()
    lost.refresh_from_db()
    live.refresh_from_db()
    assert again.status == "queued" and again.worker == "" and again.started_at is None
    assert lost.status == "failed"
    assert lost.error_type == Execution.ErrorType.SYSTEM_ERROR
    assert "3 times" in lost.reason
    assert live.status == "running"


def test_live_output_is_the_chunks_while_running_and_the_result_after():
    run = run_of(status="running")
    OutputChunk.objects.create(execution=run, seq=1, stream="stdout", text="a")
    OutputChunk.objects.create(execution=run, seq=2, stream="stderr", text="e")
    OutputChunk.objects.create(execution=run, seq=3, stream="stdout", text="b")
    assert run.live_output() == ("ab", "e")
    Execution.objects.filter(pk=run.pk).update(status="completed", output="AB", errors="E")
    run.refresh_from_db()
    assert run.live_output() == ("AB", "E")


def test_rows_name_themselves(alice):
    run = run_of(alice, status="queued")
    assert str(run) == f"{run.execution_id} (queued)"
    script = SavedScript.objects.create(owner=alice, name="Hello", script="print(1)")
    assert str(script) == "Hello"
    assert script.get_absolute_url() == f"/scripts/{script.script_id}/"
    assert script.get_share_url() == ""
    script.share()
    assert script.get_share_url() == f"/shared/scripts/{script.share_token}/"
    # A chunk and an input line name their run by its row id (the foreign key's column).
    chunk = OutputChunk.objects.create(execution=run, seq=4, stream="stdout", text="x")
    assert str(chunk) == f"{run.pk} #4 stdout"
    assert str(InputLine(execution=run, text="abc")) == f"{run.pk} input 3"
    assert str(InputLine(execution=run, eof=True)) == f"{run.pk} input EOF"
    assert str(Worker(name="w-1", backend="local")) == "w-1"


def test_sharing_twice_keeps_the_token_and_unsharing_drops_it(alice):
    run = run_of(alice)
    run.share()
    token = run.share_token
    run.share()
    assert run.share_token == token
    assert Execution.objects.get(pk=run.pk).share_token == token
    run.unshare()
    assert Execution.objects.get(pk=run.pk).share_token in ("", None)
