"""The example scripts shared by the editor and the API."""

import ast

import pytest

from executions import examples, runtimes


def test_examples_are_well_formed():
    slugs = [e["slug"] for e in examples.EXAMPLES]
    assert len(slugs) == len(set(slugs))
    for example in examples.EXAMPLES:
        assert set(example) <= {"slug", "title", "description", "python_version", "script"}
        assert example["title"] and example["description"] and example["script"].strip()
        assert example.get("python_version", "3.12") in runtimes.SUPPORTED


@pytest.mark.parametrize("example", examples.EXAMPLES, ids=lambda e: e["slug"])
def test_examples_are_valid_python(example):
    ast.parse(example["script"], feature_version=(3, 10))


def test_the_examples_include_the_basics():
    slugs = {e["slug"] for e in examples.EXAMPLES}
    assert {"hello-world", "version-demo", "read-stdin", "exception", "timeout"} <= slugs
    assert {"memory-limit", "unicode"} <= slugs


def test_get_finds_an_example_by_slug():
    assert examples.get("hello-world")["title"] == "Hello, world"
    assert examples.get("no-such-example") is None
