"""Python versions and the interpreters or images that run them."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from executions import runtimes


@pytest.fixture(autouse=True)
def fresh_cache():
    runtimes._available.cache_clear()
    yield
    runtimes._available.cache_clear()


def test_explicit_runtimes_replace_discovery(settings, tmp_path):
    python = tmp_path / "python3.12"
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    settings.INTEGR8S_RUNTIMES = f"3.12={python}"
    found = runtimes.available("local")
    assert list(found) == ["3.12"]
    assert found["3.12"].executable == str(python)
    assert found["3.12"].prefix == str(tmp_path.parent)


def test_a_non_executable_runtime_is_a_configuration_error(settings):
    settings.INTEGR8S_RUNTIMES = "3.12=/nonexistent/python"
    with pytest.raises(ImproperlyConfigured, match="not executable"):
        runtimes.available("local")


def test_malformed_pairs_are_a_configuration_error():
    with pytest.raises(ImproperlyConfigured, match="VERSION=VALUE"):
        runtimes.parse_pairs("3.12", "INTEGR8S_RUNTIMES")


def test_kubernetes_images_default_and_override(settings):
    settings.K8S_VERSIONS = "3.11,3.12"
    settings.K8S_IMAGES = "3.12=registry.example/python:3.12"
    found = runtimes.available("kubernetes")
    assert list(found) == ["3.12", "3.11"]  # newest first
    assert found["3.11"].image == "python:3.11-slim"
    assert found["3.12"].image == "registry.example/python:3.12"


def test_unknown_version_lists_the_available_ones(settings):
    settings.K8S_VERSIONS = "3.12"
    settings.K8S_IMAGES = ""
    with pytest.raises(runtimes.UnknownVersion, match="Available versions: 3.12"):
        runtimes.get("2.7", "kubernetes")
    assert runtimes.get(None, "kubernetes").version == "3.12"


def test_discovery_finds_only_interpreters_that_report_their_version():
    for version, runtime in runtimes.discover_local().items():
        assert runtimes.interpreter_version(runtime.executable) == version
