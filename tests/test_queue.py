"""The database as the queue: several worker processes, hundreds of runs, each run exactly once."""

import time

import pytest
from django.db import connection

from executions.models import Execution, ExecutionQuerySet
from tests.test_worker import start_worker, stop


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_several_workers_run_every_execution_exactly_once():
    # A few hundred on PostgreSQL (the production queue); fewer on SQLite, same mechanism.
    count = 240 if connection.vendor == "postgresql" else 60
    executions = [Execution.objects.submit(f"print({i})") for i in range(count)]
    workers = [start_worker("--concurrency", "2") for _ in range(3)]
    try:
        deadline = time.monotonic() + 180
        while Execution.objects.active().exists():
            assert time.monotonic() < deadline, "runs were still queued or running after 180 s"
            time.sleep(0.2)
    finally:
        logs = [stop(w) for w in workers]
    assert all(code == 0 for code, _ in logs), logs

    by_id = {e.pk: e for e in Execution.objects.all()}
    assert len(by_id) == count
    for i, submitted in enumerate(executions):
        done = by_id[submitted.pk]
        assert (done.status, done.output, done.attempts) == ("completed", f"{i}\n", 1), done
    used = {e.worker for e in by_id.values()}
    assert len(used) >= 2, f"only {used} took work"


# --- fair scheduling ---------------------------------------------------------------------------


def claim_one(worker="w1"):
    (claimed,) = Execution.objects.claim(worker, lease_s=30, limit=1)
    return claimed


@pytest.mark.django_db
def test_claims_take_turns_between_callers(alice, bob):
    """The oldest queued run of the caller with the fewest in flight goes next: ten runs from
    one caller do not hold up another caller's one."""
    alices = [Execution.objects.submit(f"print({i})", owner=alice) for i in range(10)]
    bobs = Execution.objects.submit("print('bob')", owner=bob)
    anonymous = Execution.objects.submit("print('anon')", client_ip="203.0.113.7")

    order = [claim_one().pk for _ in range(4)]
    assert order == [alices[0].pk, bobs.pk, anonymous.pk, alices[1].pk]


@pytest.mark.django_db
def test_a_caller_whose_run_ended_is_back_to_none_in_flight(alice, bob):
    first, second = (Execution.objects.submit(f"print({i})", owner=alice) for i in range(2))
    later = Execution.objects.submit("print('bob')", owner=bob)
    Execution.objects.submit("print('bob 2')", owner=bob)
    assert claim_one().pk == first.pk
    assert claim_one().pk == later.pk
    Execution.objects.filter(pk=first.pk).update(status="completed")
    assert claim_one().pk == second.pk  # alice: 0 in flight again, and her run is older


@pytest.mark.django_db
def test_anonymous_callers_are_told_apart_by_session_then_address():
    a = Execution.objects.submit("1", session_key="s1", client_ip="203.0.113.7")
    Execution.objects.submit("2", session_key="s1", client_ip="203.0.113.7")
    c = Execution.objects.submit("3", session_key="s2", client_ip="203.0.113.7")
    assert (a.caller, c.caller) == ("session:s1", "session:s2")
    assert [claim_one().pk, claim_one().pk] == [a.pk, c.pk]


@pytest.mark.django_db
def test_a_claim_lost_to_another_worker_moves_on(monkeypatch):
    first, second = Execution.objects.submit("1"), Execution.objects.submit("2", client_ip="::1")
    real = ExecutionQuerySet.next_fair
    seen = []

    def stale_then_real(self):
        seen.append(1)  # the first look sees a run another worker claims in the meantime
        return first.pk if len(seen) == 1 else real(self)

    Execution.objects.filter(pk=first.pk).update(status="running", worker="other")
    monkeypatch.setattr(ExecutionQuerySet, "next_fair", stale_then_real)
    assert claim_one().pk == second.pk and len(seen) == 2
