"""Example scripts offered by the web editor and GET /api/v1/example-scripts.

Each is a dict: slug, title, description, script, and optionally python_version (the version
the example is about; omitted means "any", and the editor keeps the user's choice).
"""

VERSION_DEMO = """\
from typing import TypeGuard
def is_string(value: object) -> TypeGuard[str]:
    return isinstance(value, str)
def example_function(data: object):
    match data:  # Match statement introduced in Python 3.10
        case int() if data > 10:
            print("An integer greater than 10")
        case str() if is_string(data):
            print(f"A string: {data}")
        case _:
            print("Something else")
example_function(15)
example_function("hello")
example_function([1, 2, 3])
"""

EXAMPLES: list[dict] = [
    {
        "slug": "hello-world",
        "title": "Hello, world",
        "description": "The smallest script: print one line.",
        "script": 'print("Hello, world!")\n',
    },
    {
        "slug": "version-demo",
        "title": "Python versions differ",
        "description": (
            "match statements (3.10) and TypeGuard (3.10). Run it on 3.12, then on 3.9 to see "
            "a SyntaxError."
        ),
        "python_version": "3.12",
        "script": VERSION_DEMO,
    },
    {
        "slug": "read-stdin",
        "title": "Reading input",
        "description": "Reads the input box line by line and counts the words on each line.",
        "script": (
            "import sys\n"
            "\n"
            "lines = sys.stdin.read().splitlines()\n"
            "if not lines:\n"
            '    print("No input. Type some lines in the input box and run again.")\n'
            "for number, line in enumerate(lines, 1):\n"
            '    print(f"line {number}: {len(line.split())} words: {line!r}")\n'
        ),
    },
    {
        "slug": "exception",
        "title": "An exception",
        "description": (
            "An uncaught exception: the traceback goes to errors, the exit code is 1 and the "
            "run still counts as completed."
        ),
        "script": (
            "def divide(a, b):\n"
            "    return a / b\n"
            "\n"
            'print("About to divide by zero...")\n'
            "divide(1, 0)\n"
        ),
    },
    {
        "slug": "exit-code",
        "title": "Exit codes",
        "description": "sys.exit() with a number: the run completes with that exit code.",
        "script": ('import sys\n\nprint("Something went wrong", file=sys.stderr)\nsys.exit(3)\n'),
    },
    {
        "slug": "timeout",
        "title": "Hitting the time limit",
        "description": (
            "Loops forever. The run is stopped at the wall-time limit; what it printed before "
            "is kept."
        ),
        "script": (
            "import time\n"
            "\n"
            "seconds = 0\n"
            "while True:\n"
            '    print(f"still running after {seconds} s", flush=True)\n'
            "    time.sleep(1)\n"
            "    seconds += 1\n"
        ),
    },
    {
        "slug": "memory-limit",
        "title": "Hitting the memory limit",
        "description": (
            "Allocates 10 MiB at a time until the memory limit stops it; the run fails with "
            "error type memory_limit."
        ),
        "script": (
            "chunks = []\n"
            "while True:\n"
            "    chunks.append(bytearray(10 * 1024 * 1024))\n"
            '    print(f"holding {len(chunks) * 10} MiB", flush=True)\n'
        ),
    },
    {
        "slug": "unicode",
        "title": "Unicode output",
        "description": "Prints text in several scripts and some emoji; output is UTF-8.",
        "script": (
            'greetings = ["Hello", "Grüß Gott", "Привет", "こんにちは", "مرحبا", "👋🐍"]\n'
            "for greeting in greetings:\n"
            '    print(f"{greeting:<12} {len(greeting)} characters")\n'
        ),
    },
    {
        "slug": "no-network",
        "title": "No network",
        "description": "Tries to open a connection; the sandbox has no network, so it fails.",
        "script": (
            "import socket\n"
            "\n"
            "try:\n"
            '    socket.create_connection(("example.com", 80), timeout=2)\n'
            '    print("connected (this should not happen)")\n'
            "except OSError as exc:\n"
            '    print(f"no network: {exc}")\n'
        ),
    },
    {
        "slug": "standard-library",
        "title": "The standard library",
        "description": "json, collections and statistics work as usual; there is no pip.",
        "script": (
            "import json\n"
            "import statistics\n"
            "from collections import Counter\n"
            "\n"
            'words = "the quick brown fox jumps over the lazy dog the end".split()\n'
            "print(json.dumps(Counter(words).most_common(3)))\n"
            "print(statistics.mean(len(w) for w in words))\n"
        ),
    },
    {
        "slug": "temp-files",
        "title": "Writing files in /tmp",
        "description": "Each run has its own small, private /tmp that is gone when it ends.",
        "script": (
            "from pathlib import Path\n"
            "\n"
            'path = Path("/tmp/notes.txt")\n'
            'path.write_text("written by this run\\n")\n'
            "print(path.read_text(), end='')\n"
        ),
    },
]


def get(slug: str) -> dict | None:
    return next((e for e in EXAMPLES if e["slug"] == slug), None)
