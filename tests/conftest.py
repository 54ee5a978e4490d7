import contextlib
import glob
import os

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from rest_framework.test import APIClient

# This test run is an installation of its own: its sandboxes' cgroups carry a name no running
# site (and no other test run) has, so neither's clean-up touches the other's runs. Workers
# the tests start as processes inherit it through the environment.
SANDBOX_TEST_NAME = f"integr8s-test-{os.getpid()}"
os.environ["SANDBOX_NAME"] = SANDBOX_TEST_NAME
django_settings.SANDBOX_NAME = SANDBOX_TEST_NAME


def pytest_sessionfinish(session, exitstatus):
    """Remove this run's (empty by now) cgroup directories."""
    for base in glob.glob(f"/sys/fs/cgroup/*/{SANDBOX_TEST_NAME}") + glob.glob(
        f"/sys/fs/cgroup/{SANDBOX_TEST_NAME}"
    ):
        for leftover in glob.glob(f"{base}/*/"):
            with contextlib.suppress(OSError):
                os.rmdir(leftover)
        with contextlib.suppress(OSError):
            os.rmdir(base)


@pytest.fixture(autouse=True)
def fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def fresh_throttle():
    """Submissions counted by earlier tests must not throttle this one."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", "alice@example.com", "alice-pass-123")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", "bob@example.com", "bob-pass-123")


@pytest.fixture
def alice_api(alice):
    """An API client signed in as alice (the owner)."""
    client = APIClient()
    client.force_authenticate(alice)
    return client


@pytest.fixture
def bob_api(bob):
    """An API client signed in as bob (another user)."""
    client = APIClient()
    client.force_authenticate(bob)
    return client


def run_of(owner=None, **fields):
    """An execution row as the queue would hold it (no worker involved)."""
    from executions.models import Execution

    fields.setdefault("script", "print('hi')")
    fields.setdefault("python_version", "3.12")
    return Execution.objects.create(owner=owner, **fields)


@pytest.fixture
def worker(transactional_db):
    """A real worker (runworker, local sandbox) in a background thread of the test process."""
    import threading
    from io import StringIO

    from django.core.management import call_command

    from executions.management.commands.runworker import Command

    command = Command(stdout=StringIO(), stderr=StringIO())
    thread = threading.Thread(
        target=call_command, args=(command,), kwargs={"concurrency": 2}, daemon=True
    )
    thread.start()
    yield command
    command.shutdown.set()
    command.wakeup.set()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the worker did not stop"


def database_url() -> str:
    """A DATABASE_URL for processes that must use the test database (workers in tests)."""
    from django.db import connection

    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or 'localhost'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture(autouse=True, scope="session")
def close_listeners(django_db_setup):
    """LISTEN connections must be gone before pytest-django drops the test database."""
    yield
    from executions import notify

    notify.waiters.close()
