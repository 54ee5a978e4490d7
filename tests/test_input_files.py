"""Files in: a run may bring files, read-only in /tmp/inputs, capped in count and size, with
names checked; they are stored with the run, so retries and Idempotency-Key replays carry them."""

import base64
import os
import shutil
import threading
import uuid
from dataclasses import replace
from io import StringIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from executions import runtimes
from executions.limits import Limits
from executions.models import Execution, InputFile
from executions.sandbox.contract import RunSpec
from executions.sandbox.local import LocalBackend
from tests.conftest import SANDBOX_TEST_NAME

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
CSV = b"city,people\nLyon,522000\nNantes,320000\n"
READ_CSV = (
    "import csv\n"
    "rows = list(csv.DictReader(open('/tmp/inputs/cities.csv')))\n"
    "print(sum(int(r['people']) for r in rows))\n"
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture(scope="module")
def backend():
    backend = LocalBackend(name=SANDBOX_TEST_NAME)
    yield backend
    backend.close()


def run(backend, script, files=(), **limits):
    runtime = runtimes.get("", "local")
    spec = RunSpec(
        script, runtime, replace(Limits(), **limits), run_id=uuid.uuid4().hex, files=files
    )
    return backend.run(spec, threading.Event())


# --- in the sandbox ------------------------------------------------------------------------


@needs_bwrap
def test_an_input_csv_is_read_with_the_csv_module(backend):
    result = run(backend, READ_CSV, files=(("cities.csv", CSV), ("my notes.txt", b"x")))
    assert (result.status, result.output) == ("completed", "842000\n"), result


@needs_bwrap
def test_an_input_csv_is_read_with_pandas(backend):
    version = runtimes.get("", "local").version
    if not os.path.isdir(f"runtime-packages/{version}/site/pandas"):
        pytest.skip(
            f"no package set with pandas for Python {version}: "
            "python manage.py build_runtimes --default --if-missing (about 40 s)"
        )
    script = (
        "import pandas as pd\n"
        "frame = pd.read_csv('/tmp/inputs/cities.csv')\n"
        "print(frame['people'].sum(), list(frame['city']))\n"
    )
    result = run(backend, script, files=(("cities.csv", CSV),), memory_bytes=256 << 20)
    assert result.status == "completed", result
    assert result.output == "842000 ['Lyon', 'Nantes']\n"


@needs_bwrap
def test_the_script_cannot_change_its_input_files(backend):
    attempts = {
        "write": "open('/tmp/inputs/cities.csv', 'w')",
        "append": "open('/tmp/inputs/cities.csv', 'a')",
        "chmod": "os.chmod('/tmp/inputs/cities.csv', 0o666)",
        "remove": "os.remove('/tmp/inputs/cities.csv')",
        "rename": "os.rename('/tmp/inputs/cities.csv', '/tmp/inputs/other.csv')",
        "add": "open('/tmp/inputs/new.txt', 'w')",
        "chmod_dir": "os.chmod('/tmp/inputs', 0o777)",
        "move_dir": "os.rename('/tmp/inputs', '/tmp/elsewhere')",
    }
    script = "import os\n" + "".join(
        f"try:\n    {code}\n    print('{what} allowed')\nexcept OSError:\n    pass\n"
        for what, code in attempts.items()
    )
    script += f"print(open('/tmp/inputs/cities.csv', 'rb').read() == {CSV!r})\n"
    result = run(backend, script, files=(("cities.csv", CSV),))
    assert (result.status, result.output) == ("completed", "True\n"), result


@needs_bwrap
def test_no_inputs_no_inputs_directory(backend):
    result = run(backend, "import os\nprint(os.path.exists('/tmp/inputs'))")
    assert result.output == "False\n", result


# --- the API -------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name",
    [
        "../escape.csv",
        "a/b.csv",
        "..",
        ".",
        "back\\slash",
        "nul\x00.csv",
        "new\nline",
        "x" * 101,
        "",
    ],
)
def test_hostile_names_are_refused(alice_api, name):
    r = alice_api.post(
        "/api/v1/execute",
        {"script": "print(1)", "files": [{"name": name, "content_base64": b64(b"x")}]},
        format="json",
    )
    assert r.status_code == 400, r.content
    assert "files" in r.json()
    assert not Execution.objects.exists()


@pytest.mark.django_db
def test_caps_hold_and_are_named(alice_api, settings):
    settings.LIMITS = {**settings.LIMITS, "input_files": 2, "input_files_kb": 1}
    three = [{"name": f"f{i}.txt", "content_base64": b64(b"x")} for i in range(3)]
    r = alice_api.post("/api/v1/execute", {"script": "1", "files": three}, format="json")
    assert r.status_code == 400
    assert "the limit is 2 files (LIMIT_INPUT_FILES)" in r.json()["files"][0]
    big = [{"name": "big.bin", "content_base64": b64(b"x" * 1025)}]
    r = alice_api.post("/api/v1/execute", {"script": "1", "files": big}, format="json")
    assert r.status_code == 400
    assert "the limit is 1 KiB (LIMIT_INPUT_FILES_KB)" in r.json()["files"][0]
    twice = [{"name": "a", "content_base64": ""}, {"name": "a", "content_base64": ""}]
    r = alice_api.post("/api/v1/execute", {"script": "1", "files": twice}, format="json")
    assert r.status_code == 400 and "each name once" in r.json()["files"][0]
    bad = [{"name": "a", "content_base64": "not base64!"}]
    r = alice_api.post("/api/v1/execute", {"script": "1", "files": bad}, format="json")
    assert r.status_code == 400 and r.json()["files"]["0"]["content_base64"] == [
        "Not valid base64."
    ]
    assert not Execution.objects.exists()


@pytest.mark.django_db
def test_a_multipart_body_past_the_cap_is_refused_unread(alice_api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    r = alice_api.post(
        "/api/v1/execute",
        {"script": "1", "files": [SimpleUploadedFile("big.bin", b"x" * 5000)]},
        format="multipart",
    )
    assert r.status_code == 413 and "LIMIT_INPUT_FILES_KB" in r.json()["detail"]


@pytest.mark.django_db
def test_json_files_are_stored_with_the_run(alice_api):
    r = alice_api.post(
        "/api/v1/execute",
        {"script": READ_CSV, "files": [{"name": "cities.csv", "content_base64": b64(CSV)}]},
        format="json",
    )
    assert r.status_code == 202, r.content
    execution = Execution.objects.get(execution_id=r.json()["execution_id"])
    assert execution.input_files_content() == (("cities.csv", CSV),)
    body = alice_api.get(f"/api/v1/result/{execution.execution_id}").json()
    assert body["input_files"] == [{"name": "cities.csv", "size": len(CSV)}]


@pytest.mark.django_db
def test_multipart_takes_files_and_limits(alice_api):
    r = alice_api.post(
        "/api/v1/execute",
        {
            "script": READ_CSV,
            "limits": '{"memory_mb": 200}',
            "files": [
                SimpleUploadedFile("cities.csv", CSV),
                SimpleUploadedFile("b.txt", b"\x00\xff"),
            ],
        },
        format="multipart",
    )
    assert r.status_code == 202, r.content
    execution = Execution.objects.get(execution_id=r.json()["execution_id"])
    assert execution.input_files_content() == (("b.txt", b"\x00\xff"), ("cities.csv", CSV))
    assert execution.run_limits.memory_bytes == 200 << 20
    bad = alice_api.post(
        "/api/v1/execute", {"script": "1", "limits": "{memory"}, format="multipart"
    )
    assert bad.status_code == 400 and "limits" in bad.json()


@pytest.mark.django_db
def test_an_idempotency_key_with_other_files_is_another_request(alice_api):
    def send(files):
        return alice_api.post(
            "/api/v1/execute",
            {"script": "print(1)", "files": files},
            format="json",
            headers={"Idempotency-Key": "k1"},
        )

    first = [{"name": "a.txt", "content_base64": b64(b"one")}]
    assert send(first).status_code == 202
    assert send(first).status_code == 200  # the same request again: replayed
    other = [{"name": "a.txt", "content_base64": b64(b"two")}]
    refused = send(other)
    assert refused.status_code == 422 and "input files" in refused.json()["Idempotency-Key"][0]
    assert send([]).status_code == 422
    assert Execution.objects.count() == 1


@pytest.mark.django_db
def test_files_go_with_their_run(alice):
    execution = Execution.objects.submit("1", owner=alice, files=[("a.txt", b"a")])
    path = InputFile.objects.get(execution=execution).file.path
    assert open(path, "rb").read() == b"a"
    execution.delete()
    assert not os.path.exists(path) and not InputFile.objects.exists()


# --- end to end: worker, sandbox, access ---------------------------------------------------


@needs_bwrap
@pytest.mark.django_db(transaction=True)
def test_a_run_reads_its_file_retry_carries_it_and_bob_gets_404(alice_api, bob_api, alice):
    r = alice_api.post(
        "/api/v1/execute",
        {"script": READ_CSV, "files": [{"name": "cities.csv", "content_base64": b64(CSV)}]},
        format="json",
    )
    execution_id = r.json()["execution_id"]
    call_command("runworker", once=True, stdout=StringIO())
    body = alice_api.get(f"/api/v1/result/{execution_id}").json()
    assert (body["status"], body["output"]) == ("completed", "842000\n"), body

    assert bob_api.get(f"/api/v1/result/{execution_id}").status_code == 404
    assert bob_api.post(f"/api/v1/executions/{execution_id}/retry").status_code == 404
    assert APIClient().get(f"/api/v1/result/{execution_id}").status_code == 404

    again = alice_api.post(f"/api/v1/executions/{execution_id}/retry")
    assert again.status_code == 202
    call_command("runworker", once=True, stdout=StringIO())
    retried = alice_api.get(f"/api/v1/result/{again.json()['execution_id']}").json()
    assert (retried["status"], retried["output"]) == ("completed", "842000\n"), retried
    assert retried["input_files"] == [{"name": "cities.csv", "size": len(CSV)}]


# --- the editor ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_editor_has_an_upload_control_and_runs_with_files(alice):
    page = Client()
    page.force_login(alice)
    html = page.get("/").content.decode()
    assert 'type="file"' in html and 'enctype="multipart/form-data"' in html
    assert "10 files, 512 KiB together" in html
    r = page.post("/run", {"script": READ_CSV, "uploads": [SimpleUploadedFile("cities.csv", CSV)]})
    assert r.status_code == 302, r.content.decode()[-2000:]
    assert Execution.objects.get().input_files_content() == (("cities.csv", CSV),)
    bad = page.post("/run", {"script": "1", "uploads": [SimpleUploadedFile("a..b", b"")]})
    assert bad.status_code == 400 and "hold &quot;..&quot;" in bad.content.decode()
    assert Execution.objects.count() == 1
