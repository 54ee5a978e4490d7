"""Files out: what a script leaves in /tmp/outputs is kept with the run, within caps, served
under the run's access rule; plt.show() saves PNGs. Hostile names and file kinds are ignored."""

import os
import shutil
import threading
import uuid
from dataclasses import replace
from io import StringIO

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from executions import runtimes
from executions.limits import MIB, Limits
from executions.models import Execution, OutputFile
from executions.sandbox.contract import RunSpec
from executions.sandbox.local import LocalBackend
from tests.conftest import SANDBOX_TEST_NAME

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")


@pytest.fixture(scope="module")
def backend():
    backend = LocalBackend(name=SANDBOX_TEST_NAME)
    yield backend
    backend.close()


def run(backend, script, **limits):
    runtime = runtimes.get("", "local")
    spec = RunSpec(script, runtime, replace(Limits(), **limits), run_id=uuid.uuid4().hex)
    return backend.run(spec, threading.Event())


def test_files_left_in_outputs_are_collected(backend):
    result = run(
        backend,
        "open('/tmp/outputs/result.csv', 'w').write('a,b\\n1,2\\n')\n"
        "open('/tmp/outputs/raw.bin', 'wb').write(bytes(range(256)))\n"
        "open('/tmp/elsewhere.txt', 'w').write('not kept')\n",
    )
    assert (result.status, result.error_type) == ("completed", None), result
    assert result.files == [("raw.bin", bytes(range(256))), ("result.csv", b"a,b\n1,2\n")]


def test_links_fifos_directories_and_odd_names_are_passed_over(backend):
    result = run(
        backend,
        "import os\n"
        "os.symlink('/etc/passwd', '/tmp/outputs/passwd')\n"
        "os.symlink('/proc/self/environ', '/tmp/outputs/environ')\n"
        "os.mkfifo('/tmp/outputs/pipe')\n"
        "os.mkdir('/tmp/outputs/sub')\n"
        "open('/tmp/outputs/sub/inner.txt', 'w').write('x')\n"
        "open('/tmp/outputs/.hidden', 'w').write('x')\n"
        "open('/tmp/outputs/with space', 'w').write('x')\n"
        "open('/tmp/outputs/ok.txt', 'w').write('SAFE')\n"
        "os.link('/tmp/outputs/ok.txt', '/tmp/outputs/hardlink.txt')\n",
    )
    assert result.status == "completed", result
    # A hard link is a second name for a file the script made: the same plain file.
    assert result.files == [("hardlink.txt", b"SAFE"), ("ok.txt", b"SAFE")]


def test_a_huge_sparse_file_is_judged_by_its_size_not_read(backend):
    result = run(
        backend,
        "import os\nwith open('/tmp/outputs/sparse', 'wb') as f:\n"
        "    f.truncate(12 << 20)\n"  # 12 MiB of holes: over the 8 MiB cap, never read
        "open('/tmp/outputs/small.txt', 'w').write('kept')\n",
    )
    assert (result.status, result.error_type) == ("failed", "output_limit"), result
    assert "output files were over the limit" in result.reason
    assert result.files == [("small.txt", b"kept")]


def test_output_files_are_capped_in_count_and_size(backend):
    many = run(
        backend,
        "for i in range(5):\n    open(f'/tmp/outputs/f{i}.txt', 'w').write(str(i))\n",
        output_files=3,
    )
    assert [name for name, _ in many.files] == ["f0.txt", "f1.txt", "f2.txt"]
    assert many.error_type == "output_limit" and "3 files" in many.reason
    big = run(
        backend,
        "open('/tmp/outputs/a.bin', 'wb').write(b'a' * (600 << 10))\n"
        "open('/tmp/outputs/b.bin', 'wb').write(b'b' * (600 << 10))\n",
        files_bytes=1 * MIB,
    )
    assert [name for name, _ in big.files] == ["a.bin"] and big.error_type == "output_limit"


def has_matplotlib() -> bool:
    runtime = runtimes.get("", "local")
    return os.path.isdir(f"runtime-packages/{runtime.version}/site/matplotlib")


@pytest.mark.django_db(transaction=True)
def test_a_plot_comes_back_as_a_png_the_api_serves_to_its_reader_only(alice, bob):
    if not has_matplotlib():
        pytest.skip("no package set with matplotlib built (python manage.py build_runtimes)")
    script = (
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3], [1, 4, 9])\nplt.title('squares')\nplt.show()\n"
        "open('/tmp/outputs/notes.txt', 'w').write('three points')\n"
    )
    execution = Execution.objects.submit(script, owner=alice)
    call_command("runworker", once=True, stdout=StringIO())
    execution.refresh_from_db()
    assert execution.status == "completed", (execution.reason, execution.errors)

    owner = APIClient()
    owner.force_authenticate(alice)
    listed = owner.get(f"/api/v1/result/{execution.execution_id}").json()["files"]
    assert [(f["name"], f["content_type"]) for f in listed] == [
        ("figure-1.png", "image/png"),
        ("notes.txt", "text/plain"),
    ]
    png = owner.get(listed[0]["url"])
    assert png.status_code == 200 and png["Content-Type"] == "image/png"
    assert b"".join(png.streaming_content).startswith(b"\x89PNG\r\n\x1a\n")
    assert "attachment" not in png.get("Content-Disposition", "")
    notes = owner.get(listed[1]["url"])
    assert notes["Content-Disposition"].startswith("attachment")
    assert notes["Content-Type"] == "application/octet-stream"

    other = APIClient()
    other.force_authenticate(bob)
    assert other.get(listed[0]["url"]).status_code == 404
    assert APIClient().get(listed[0]["url"]).status_code == 404
    missing = owner.get(f"/api/v1/executions/{execution.execution_id}/files/nope.png")
    assert missing.status_code == 404


@pytest.mark.django_db(transaction=True)
def test_files_go_with_their_execution_and_old_ones_are_purged(alice, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    execution = Execution.objects.submit("open('/tmp/outputs/a.txt', 'w').write('a')", owner=alice)
    call_command("runworker", once=True, stdout=StringIO())
    stored = OutputFile.objects.get(execution=execution)
    path = stored.file.path
    assert os.path.exists(path) and open(path).read() == "a"

    out = StringIO()
    call_command("purge_files", days=1, stdout=out)
    assert "Deleted 0" in out.getvalue() and os.path.exists(path)
    call_command("purge_files", days=0, stdout=out)
    assert not os.path.exists(path) and not OutputFile.objects.exists()

    again = Execution.objects.submit("open('/tmp/outputs/b.txt', 'w').write('b')", owner=alice)
    call_command("runworker", once=True, stdout=StringIO())
    path = OutputFile.objects.get(execution=again).file.path
    again.delete()
    assert not os.path.exists(path)


PLOT = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()\n"


@pytest.mark.django_db(transaction=True)
def test_the_result_panel_shows_images_inline_and_links_the_rest(alice, bob, settings, tmp_path):
    if not has_matplotlib():
        pytest.skip("no package set with matplotlib built (python manage.py build_runtimes)")
    from django.test import Client

    settings.MEDIA_ROOT = str(tmp_path)
    script = PLOT + "open('/tmp/outputs/data.csv', 'w').write('x,y\\n1,1\\n')\n"
    execution = Execution.objects.submit(script, owner=alice)
    call_command("runworker", once=True, stdout=StringIO())
    page = Client()
    page.force_login(alice)
    html = page.get(execution.get_absolute_url()).content.decode()
    base = f"/api/v1/executions/{execution.execution_id}/files"
    assert f'<img src="{base}/figure-1.png"' in html
    link = f'<a href="{base}/data.csv" download>data.csv</a> <span class="muted">8 bytes</span>'
    assert link in html
    assert f'<img src="{base}/data.csv"' not in html
    png = page.get(f"{base}/figure-1.png")  # what the <img> loads, with the page's session
    assert png.status_code == 200 and png["Content-Type"] == "image/png"
    other = Client()
    other.force_login(bob)
    assert other.get(execution.get_absolute_url()).status_code == 404
    assert other.get(f"{base}/figure-1.png").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_a_run_is_seen_ending_with_its_files_never_without(alice, settings, tmp_path, monkeypatch):
    """The end and the files commit together: a file stored after the end was missing from
    wait=true's answer (the waiter woke at the end's commit and listed no files)."""
    from django.db import connection

    settings.MEDIA_ROOT = str(tmp_path)
    execution = Execution.objects.submit(
        "open('/tmp/outputs/big.bin', 'wb').write(b'x' * 500_000)", owner=alice
    )
    seen = []
    create = OutputFile.objects.create

    def stored(**fields):
        # Storing a file: the run's end must not be committed yet (it is this transaction's).
        seen.append(connection.in_atomic_block)
        return create(**fields)

    monkeypatch.setattr(OutputFile.objects, "create", stored)
    call_command("runworker", once=True, stdout=StringIO())
    assert seen == [True]
    execution.refresh_from_db()
    assert execution.status == "completed"
    assert OutputFile.objects.get(execution=execution).size == 500_000
