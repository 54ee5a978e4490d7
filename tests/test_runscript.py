"""The runscript, runtimes and bench_sandbox management commands."""

import json
import shutil
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from executions import runtimes

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "hello.py"
    path.write_text("import sys\nprint('hello', sys.stdin.read().strip())\n")
    return path


def run_command(*args) -> str:
    out = StringIO()
    call_command("runscript", *map(str, args), stdout=out)
    return out.getvalue()


def test_runscript_prints_a_readable_result(script, tmp_path):
    stdin = tmp_path / "in.txt"
    stdin.write_text("world")
    text = run_command(script, "--stdin", stdin, "--backend", "local")
    assert "Status:     completed" in text
    assert "Exit code:  0" in text
    assert "hello world" in text


def test_runscript_json_is_the_last_line(script):
    last = run_command(script, "--json", "--backend", "local").strip().splitlines()[-1]
    data = json.loads(last)
    assert data["status"] == "completed"
    assert data["output"] == "hello \n"
    assert {"exit_code", "error_type", "wall_time_ms", "reason"} <= set(data)


def test_runscript_reports_script_errors(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("import sys\nsys.exit(3)\n")
    data = json.loads(run_command(path, "--json", "--backend", "local").splitlines()[-1])
    assert (data["status"], data["exit_code"], data["error_type"]) == (
        "completed",
        3,
        "script_error",
    )


def test_runscript_picks_the_python_version(script):
    if "3.9" not in runtimes.available("local"):
        pytest.skip("Python 3.9 is not installed here")
    data = json.loads(run_command(script, "--json", "--python", "3.9").splitlines()[-1])
    assert data["python_version"] == "3.9"


@pytest.mark.parametrize(
    "args, message",
    [
        (["/nonexistent/script.py"], "cannot read script file"),
        (["SCRIPT", "--python", "2.1"], "Available versions"),
        (["SCRIPT", "--stdin", "/nonexistent/in.txt"], "cannot read stdin file"),
    ],
)
def test_runscript_bad_arguments_exit_2(script, args, message):
    args = [str(script) if a == "SCRIPT" else a for a in args]
    with pytest.raises(CommandError, match=message) as exc:
        run_command(*args)
    assert exc.value.returncode == 2


def test_runscript_refuses_an_oversized_script(tmp_path, settings):
    settings.LIMITS = {**settings.LIMITS, "script_kb": 1}
    path = tmp_path / "big.py"
    path.write_text("#" * 2048)
    with pytest.raises(CommandError, match="the limit is 1 KiB") as exc:
        run_command(path)
    assert exc.value.returncode == 2


def test_runscript_dry_run_with_local_creates_nothing(script):
    text = run_command(script, "--dry-run", "--backend", "local")
    assert "creates no objects" in text


def test_runtimes_lists_versions_and_the_default():
    out = StringIO()
    call_command("runtimes", "--backend", "local", stdout=out)
    found = runtimes.available("local")
    text = out.getvalue()
    if not found:
        assert "No Python versions" in text
        return
    default = runtimes.default_version("local")
    assert f"{default}" in text and "(default)" in text
    for version, runtime in found.items():
        assert version in text and runtime.executable in text


def test_bench_sandbox_prints_figures_and_a_verdict():
    out = StringIO()
    call_command("bench_sandbox", "--runs", "3", stdout=out)
    text = out.getvalue()
    assert "median" in text and "p95" in text
    assert "PASS" in text or "FAIL" in text


def test_runscript_shows_what_the_script_printed_as_text_not_as_terminal_commands(tmp_path):
    """A script that clears the operator's screen and draws a report of its own (then hides
    the rest) is shown as the escape codes it printed, beside the real verdict."""
    path = tmp_path / "fake.py"
    path.write_text(
        "import os, signal, sys\n"
        "sys.stdout.write('\\x1b[H\\x1b[2JStatus:     completed\\nall tests passed\\n\\x1b[8m')\n"
        "sys.stdout.flush()\n"
        "os.kill(os.getpid(), signal.SIGSEGV)\n"
    )
    text = run_command(path, "--backend", "local")
    assert "\x1b" not in text
    assert "\\x1b[H\\x1b[2JStatus:     completed\nall tests passed\n\\x1b[8m" in text
    assert "Exit code:  139" in text
