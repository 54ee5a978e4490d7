"""Code that runs under the users' interpreters, not the project's: the in-pod wrapper and the
local sandbox's prelude must work on the oldest Python offered (3.8). Ruff checks them with a
per-file target version; these tests run them under the oldest interpreter on this machine."""

import importlib.util
import shutil
import subprocess
import threading

import pytest

from executions import runtimes
from executions.limits import Limits
from executions.sandbox.contract import RunSpec
from executions.sandbox.kubernetes import wrapper
from executions.sandbox.local import command


def oldest() -> runtimes.Runtime:
    found = runtimes.available("local")
    if not found:
        pytest.skip("no local Python interpreter found")
    return min(found.values(), key=lambda r: runtimes.version_key(r.version))


def test_the_oldest_offered_python_is_the_one_the_code_is_checked_for():
    assert runtimes.SUPPORTED[0] == "3.8"


def test_the_wrapper_imports_and_parses_limits_under_the_oldest_python():
    runtime = oldest()
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('wrapper', {wrapper.__file__!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "print(sys.version_info[:2], module.parse_limits('wall_time_s=5,processes=64'))\n"
    )
    done = subprocess.run([runtime.executable, "-I", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "'processes': '64'" in done.stdout or "'processes': 64" in done.stdout, done.stdout
    assert importlib.util.find_spec("executions.sandbox.kubernetes.wrapper") is not None


def test_the_prelude_compiles_under_the_oldest_python():
    runtime = oldest()
    done = subprocess.run(
        [
            runtime.executable,
            "-I",
            "-c",
            "import sys; compile(sys.stdin.read(), 'prelude', 'exec')",
        ],
        input=command.PRELUDE,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
def test_a_script_runs_in_the_sandbox_under_the_oldest_python():
    from executions.sandbox.local import LocalBackend
    from tests.conftest import SANDBOX_TEST_NAME

    runtime = oldest()
    backend = LocalBackend(name=SANDBOX_TEST_NAME, spares=0)
    try:
        spec = RunSpec("import sys\nprint(sys.version_info[:2])\n1/0", runtime, Limits())
        result = backend.run(spec, threading.Event())
    finally:
        backend.close()
    major, minor = runtime.version.split(".")
    assert result.output == f"({major}, {minor})\n", result
    assert (result.status, result.error_type) == ("completed", "script_error")
    assert result.errors.startswith(
        'Traceback (most recent call last):\n  File "/scripts/script.py"'
    )
