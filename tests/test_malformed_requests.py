"""Malformed requests an attacker sends on purpose: a NUL character in a URL's path or query
is a 400 on every page and endpoint, never a 500 (PostgreSQL refuses NUL in text, so looking
one up as a share token, a file name or an admin filter failed in the database)."""

import pytest
from django.test import Client

from executions.limits import Limits
from tests.conftest import run_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw")


def paths(execution_id):
    return [
        "/shared/runs/%00/",
        "/shared/scripts/%00/",
        "/?shared-run=%00",
        "/?shared-script=%00",
        f"/api/v1/executions/{execution_id}/files/%00",
        "/admin/executions/execution/?status__exact=%00",
        "/api/v1/executions/?status=x%00",
    ]


def test_a_nul_in_the_path_or_query_is_a_400(operator):
    run = run_of(owner=operator, status="completed", limits=Limits().to_dict())
    client = Client(raise_request_exception=False)
    client.force_login(operator)
    for path in paths(run.execution_id):
        response = client.get(path)
        assert response.status_code == 400, path
        assert "no-store" in response["Cache-Control"], path


def test_the_api_says_so_in_json():
    response = Client().get("/api/v1/result/%00")
    assert response.status_code == 400
    assert "NUL" in response.json()["detail"]


def test_a_nul_elsewhere_is_left_to_the_forms(client):
    """A body is the forms' and serializers' to judge: they name the field."""
    response = client.post("/run", {"script": "print(1)\x00"})
    assert response.status_code == 400
    assert "Null characters are not allowed." in response.content.decode()
