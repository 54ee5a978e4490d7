"""Package sets per runtime: build_runtimes, the read-only bind, the prelude's sys.path and
import message, the sandbox's environment for numpy and matplotlib, GET /api/v1/runtimes."""

import os
import shutil
import tempfile
import threading
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from executions import runtimes
from executions.limits import Limits
from executions.sandbox.contract import RunSpec
from executions.sandbox.local import LocalBackend, command

DEFAULT = runtimes.default_version("local")


@pytest.fixture(scope="session")
def package_set():
    """The default version's set, built once (about 40 s on 2 cores) unless it is there."""
    call_command("build_runtimes", default=True, if_missing=True, stdout=StringIO())
    return command.site_dir(DEFAULT)


@pytest.fixture(scope="module")
def backend():
    return LocalBackend(name="integr8s-test-packages", spares=0)


def run(backend, script, **limits):
    spec = RunSpec(
        script, runtimes.get(DEFAULT, "local"), Limits(wall_time_s=20, cpu_time_s=20, **limits)
    )
    return backend.run(spec, threading.Event())


# --- building ------------------------------------------------------------------------------


def test_build_runtimes_leaves_out_a_version_without_pins(tmp_path, monkeypatch):
    from executions.management.commands import build_runtimes

    monkeypatch.setattr(build_runtimes, "PINS", tmp_path)
    err = StringIO()
    call_command("build_runtimes", default=True, stdout=StringIO(), stderr=err)
    assert f"Python {DEFAULT}: left out, no package set is pinned for it" in err.getvalue()


def test_build_runtimes_refuses_an_unknown_version():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="not available"):
        call_command("build_runtimes", versions=["2.0"], stdout=StringIO())


def test_every_supported_version_has_hashed_pins_of_the_curated_set():
    pins = Path(command.__file__).resolve().parents[3] / "executions" / "runtime_packages"
    for version in runtimes.SUPPORTED:
        text = (pins / f"{version}.txt").read_text()
        for name in ("numpy", "pandas", "matplotlib", "scipy", "sympy", "scikit-learn"):
            assert f"\n{name}==" in text, (version, name)
        assert "--hash=sha256:" in text


def test_the_set_is_bound_read_only_only_where_built(monkeypatch):
    tmp_path = Path(tempfile.mkdtemp())  # in /tmp itself: pytest's tmp_path is mode 700
    monkeypatch.setattr(command, "RUNTIMES_DIR", str(tmp_path))
    assert command.package_binds("3.12") == []
    (tmp_path / "3.12" / "site").mkdir(parents=True)
    os.chmod(tmp_path, 0o755)
    assert command.package_binds("3.12") == ["--ro-bind", f"{tmp_path}/3.12/site", command.SITE]
    os.chmod(tmp_path, 0o700)  # the sandbox's host uid could not reach it
    assert command.package_binds("3.12") == []
    shutil.rmtree(tmp_path)


def test_the_sandbox_environment_holds_numeric_threads_to_one():
    env = command.SANDBOX_ENV
    assert env["OPENBLAS_NUM_THREADS"] == env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"
    assert (env["MPLBACKEND"], env["MPLCONFIGDIR"]) == ("module://integr8s_plots", "/tmp")


# --- in the sandbox --------------------------------------------------------------------------


@pytest.mark.slow
def test_numpy_pandas_and_matplotlib_import_and_compute(backend, package_set):
    script = (
        "import numpy as np, pandas as pd, scipy.linalg, sympy, sklearn, PIL, requests\n"
        "import matplotlib.pyplot as plt\n"
        "print(np.linalg.solve(np.eye(2) * 2, np.ones(2)).tolist())\n"
        "print(pd.DataFrame({'a': [1, 2, 3]}).a.sum())\n"
        "print(sympy.diff(sympy.Symbol('x') ** 2))\n"
        "plt.plot([1, 2]); plt.savefig('/tmp/p.png'); print(plt.get_backend())\n"
    )
    result = run(backend, script, memory_bytes=256 << 20)
    assert result.status == "completed", result
    assert result.output.split() == ["[0.5,", "0.5]", "6", "2*x", "module://integr8s_plots"]


@pytest.mark.slow
def test_numpy_thread_pools_stay_within_the_process_limit(backend, package_set):
    script = (
        "import threadpoolctl, numpy as np\n"
        "print(sorted({p['num_threads'] for p in threadpoolctl.threadpool_info()}))\n"
        "print(float(np.ones((300, 300)) @ np.ones(300) @ np.ones(300)))\n"
    )
    result = run(backend, script, processes=4)
    assert result.status == "completed", result
    assert result.output.split() == ["[1]", "90000.0"]


@pytest.mark.slow
def test_the_package_set_cannot_be_written(backend, package_set):
    from tests.hostile.cases import PACKAGE_SET_WRITES

    result = run(backend, PACKAGE_SET_WRITES)
    assert result.output.strip() == "SAFE", result


@pytest.mark.slow
def test_an_import_not_offered_says_which_packages_are(backend, package_set):
    result = run(backend, "import tensorflow")
    assert "No module named 'tensorflow'" in result.errors
    assert "these packages: " in result.errors and "numpy, " in result.errors
    assert "scikit-learn" in result.errors
    assert result.error_type == "script_error"


@pytest.mark.slow
def test_a_caught_import_error_says_nothing_more(backend, package_set):
    result = run(backend, "try:\n    import nothere\nexcept ImportError:\n    print('ok')")
    assert (result.output, result.errors) == ("ok\n", "")


@pytest.mark.slow
def test_the_prelude_leaves_no_names_with_the_set(backend, package_set):
    result = run(backend, "print(sorted(n for n in dir() if not n.startswith('__')))")
    assert result.output == "[]\n"


# --- the API ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_runtimes_lists_each_versions_packages(tmp_path, monkeypatch, settings):
    settings.EXECUTION_BACKEND = "local"
    monkeypatch.setattr(command, "RUNTIMES_DIR", str(tmp_path))
    dist = tmp_path / DEFAULT / "site" / "numpy-2.5.5.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: numpy\nVersion: 2.5.5\n")
    data = APIClient().get("/api/v1/runtimes").json()
    by_version = {v["version"]: v for v in data["versions"]}
    assert by_version[DEFAULT]["packages"] == [{"name": "numpy", "version": "2.5.5"}]
    others = [v for v in by_version if v != DEFAULT]
    assert all(by_version[v]["packages"] == [] for v in others)


@pytest.mark.slow
def test_build_runtimes_installs_a_pinned_set_for_real(tmp_path, monkeypatch):
    """A one-package set (tabulate, pure Python) through the real pip, hashes checked."""
    from executions.management.commands import build_runtimes

    lines = Path(build_runtimes.PINS, f"{DEFAULT}.txt").read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("tabulate=="))
    block = [lines[first]]
    for line in lines[first + 1 :]:
        if not line.startswith("    --hash"):
            break
        block.append(line)
    (tmp_path / "pins").mkdir()
    (tmp_path / "pins" / f"{DEFAULT}.txt").write_text("\n".join(block) + "\n")
    monkeypatch.setattr(build_runtimes, "PINS", tmp_path / "pins")
    monkeypatch.setattr(command, "RUNTIMES_DIR", str(tmp_path / "out"))
    call_command("build_runtimes", versions=[DEFAULT], stdout=StringIO())
    names = [p["name"] for p in runtimes.packages(DEFAULT)]
    assert names == ["tabulate"]
    site = Path(command.site_dir(DEFAULT))
    assert not site.with_name("site.new").exists()
    assert oct(site.stat().st_mode & 0o777) == "0o755"


def test_the_kubernetes_runtime_image_installs_the_same_pinned_set():
    """k8s/runtime/Dockerfile (one image per version, by build arg) installs the pins
    build_runtimes installs locally, the same way: hashes required, wheels only, no deps."""
    from pathlib import Path

    from django.conf import settings

    root = Path(__file__).resolve().parent.parent
    dockerfile = (root / "k8s" / "runtime" / "Dockerfile").read_text()
    command = (root / "executions/management/commands/build_runtimes.py").read_text()
    for flag in ("--require-hashes", "--only-binary=:all:", "--no-deps"):
        assert flag in dockerfile and flag in command
    assert "COPY executions/runtime_packages/${PYTHON_VERSION}.txt" in dockerfile
    assert "FROM docker.io/library/python:${PYTHON_VERSION}-slim" in dockerfile
    for version in settings.K8S_VERSIONS.split(","):
        assert (root / "executions" / "runtime_packages" / f"{version}.txt").is_file(), version
    assert "k8s/runtime/Dockerfile" in (root / "k8s" / "README.md").read_text()
