"""The scripts simulated users run, and what each must end as.

Shared by the locustfile (which picks one per run and checks what it sees) and the checker
(which finds the load test's runs in the database by their first line and checks them again).
No Locust and no Django here: both sides import it.
"""

import random
from dataclasses import dataclass

MARKER = "# integr8s-load: "  # every load-test script starts with this, then its kind

OUTPUT_LINES = 300  # of 1 KiB each: 300 KiB, under the default 1 MiB output cap
OUTPUT_LINE = "x" * 1023


@dataclass(frozen=True)
class Kind:
    name: str
    weight: int  # how often simulated users pick it
    body: str
    # What it must end as: status, exit code (None: any), error type, stdout (None: any).
    status: str = "completed"
    exit_code: int | None = 0
    error_type: str | None = None
    output: str | None = None

    @property
    def script(self) -> str:
        return f"{MARKER}{self.name}\n{self.body}"


KINDS = {
    kind.name: kind
    for kind in [
        Kind("trivial", 64, "print(1)\n", output="1\n"),
        # About a second of CPU, counted by the process itself: the same need on any machine.
        Kind(
            "cpu",
            10,
            "import time\nwhile time.process_time() < 0.9:\n    pass\nprint('done')\n",
            output="done\n",
        ),
        Kind(
            "output",
            10,
            f"line = 'x' * {len(OUTPUT_LINE)}\nfor _ in range({OUTPUT_LINES}):\n    print(line)\n",
            output=(OUTPUT_LINE + "\n") * OUTPUT_LINES,
        ),
        Kind(
            "fail",
            15,
            "raise RuntimeError('failing on purpose')\n",
            exit_code=1,
            error_type="script_error",
        ),
        # Holds a run slot for the whole wall limit: rare, or it starves the queue.
        Kind(
            "timeout",
            1,
            "import time\ntime.sleep(3600)\n",
            status="timeout",
            exit_code=None,
            error_type="timeout",
        ),
    ]
}


def pick() -> Kind:
    kinds = list(KINDS.values())
    return random.choices(kinds, weights=[k.weight for k in kinds])[0]


def kind_of(script: str) -> Kind | None:
    """The kind named on a load-test script's first line; None for any other script."""
    if not script.startswith(MARKER):
        return None
    return KINDS.get(script[len(MARKER) :].split("\n", 1)[0].strip())


def wrong(kind: Kind, status: str, exit_code=..., error_type=..., output=...) -> str:
    """Why a finished run of this kind is not what its script does, or "" if it is right.
    Leave out (...) what the caller did not see: a page shows the status, not the exit code.
    Cancelled counts as wrong: no simulated user cancels."""
    if status != kind.status:
        why = f" ({error_type})" if isinstance(error_type, str) else ""
        return f"{kind.name}: ended {status}{why}, not {kind.status}"
    if exit_code is not ... and kind.exit_code is not None and exit_code != kind.exit_code:
        return f"{kind.name}: exit code {exit_code}, not {kind.exit_code}"
    if error_type is not ... and error_type != kind.error_type:
        return f"{kind.name}: error type {error_type}, not {kind.error_type}"
    if output is not ... and kind.output is not None and output != kind.output:
        return f"{kind.name}: {len(output)} characters of output ({output[:20]!r}...), " + (
            f"not {len(kind.output)}"
        )
    return ""
