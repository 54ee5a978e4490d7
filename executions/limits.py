"""The limits every run is held to, from settings.LIMITS (which reads the environment).

The sandbox imports Limits, so Django is imported only where settings are read.
"""

from dataclasses import asdict, dataclass, replace

KIB = 1024
MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    wall_time_s: float = 5.0
    cpu_time_s: float = 5.0
    memory_bytes: int = 128 * MIB
    processes: int = 64
    tmp_bytes: int = 16 * MIB
    output_bytes: int = 1 * MIB
    script_bytes: int = 64 * KIB
    stdin_bytes: int = 64 * KIB
    output_files: int = 20  # files collected from /tmp/outputs when the run ends
    files_bytes: int = 8 * MIB  # their size together
    input_files: int = 10  # files a request may bring, read-only in /tmp/inputs
    input_bytes: int = 512 * KIB  # their size together
    cpu_request: str = "100m"
    cpu_limit: str = "1000m"

    @property
    def memory_mib(self) -> int:
        return self.memory_bytes // MIB

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Limits":
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def describe(self) -> list[tuple[str, str]]:
        """The limits as (name, value) pairs in words a user understands."""
        return [
            ("Wall time (from the script's start)", f"{self.wall_time_s:g} s"),
            ("CPU time", f"{self.cpu_time_s:g} s"),
            ("Memory", human_bytes(self.memory_bytes)),
            ("Processes and threads", str(self.processes)),
            ("Disk (/tmp)", human_bytes(self.tmp_bytes)),
            ("Output (stdout + stderr)", human_bytes(self.output_bytes)),
            ("Script size", human_bytes(self.script_bytes)),
            ("Input (stdin) size", human_bytes(self.stdin_bytes)),
            (
                "Output files (/tmp/outputs)",
                f"{self.output_files} files, {human_bytes(self.files_bytes)} together",
            ),
            (
                "Input files (/tmp/inputs, read-only)",
                f"{self.input_files} files, {human_bytes(self.input_bytes)} together",
            ),
            ("Network", "none"),
        ]


def human_bytes(n: int) -> str:
    if n >= MIB and n % MIB == 0:
        return f"{n // MIB} MiB"
    if n >= KIB and n % KIB == 0:
        return f"{n // KIB} KiB"
    return f"{n} bytes"


# What a request may ask for (API `limits`, the editor's fields): its name there -> (the
# Limits field, that field's units per unit of the request's, the smallest value, the setting
# of the operator's maximum).
REQUESTABLE = {
    "memory_mb": ("memory_bytes", MIB, 16, "LIMIT_MAX_MEMORY_MB"),
    "wall_time_s": ("wall_time_s", 1, 0.1, "LIMIT_MAX_WALL_TIME_S"),
    "cpu_time_s": ("cpu_time_s", 1, 0.1, "LIMIT_MAX_CPU_TIME_S"),
    "output_kb": ("output_bytes", KIB, 1, "LIMIT_MAX_OUTPUT_KB"),
}


def maxima() -> dict[str, float]:
    """The most a request may ask for, by the request's names (memory_mb, ...)."""
    from django.conf import settings

    return dict(settings.LIMIT_MAXIMA)


def request_errors(asked: dict | None) -> dict[str, str]:
    """{name: message} for each asked-for limit above the operator's maximum; {} if none."""
    top = maxima()
    errors = {}
    for name, value in (asked or {}).items():
        if value is not None and value > top[name]:
            setting = REQUESTABLE[name][3]
            errors[name] = f"{value:g} is above this server's maximum, {top[name]:g} ({setting})."
    return errors


def for_request(asked: dict | None) -> Limits:
    """The limits in force with a request's own (checked by request_errors() first)."""
    base = current()
    changes: dict = {}
    for name, value in (asked or {}).items():
        if value is None:
            continue
        field, unit, _, _ = REQUESTABLE[name]
        changes[field] = type(getattr(base, field))(value * unit)
    return replace(base, **changes)


def body_too_big(content_length: str | None) -> str | None:
    """Why a request body of this Content-Length is refused before it is read, in words, or
    None. A multipart one's file parts would go to disk with no cap of Django's own; a JSON
    one is held to the same DATA_UPLOAD_MAX_MEMORY_SIZE (which has room for base64 files)."""
    from django.conf import settings

    cap = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        length = int(content_length or 0)
    except ValueError:
        return None
    if length <= cap:
        return None
    return (
        f"The request is {human_bytes(length)}; the most it may be is {human_bytes(cap)} "
        f"(input files are limited to {human_bytes(current().input_bytes)} together, "
        "LIMIT_INPUT_FILES_KB)."
    )


def current() -> Limits:
    """The limits in force now."""
    from django.conf import settings

    c = settings.LIMITS
    return Limits(
        wall_time_s=float(c["wall_time_s"]),
        cpu_time_s=float(c["cpu_time_s"]),
        memory_bytes=int(c["memory_mb"]) * MIB,
        processes=int(c["processes"]),
        tmp_bytes=int(c["tmp_mb"]) * MIB,
        output_bytes=int(c["output_kb"]) * KIB,
        script_bytes=int(c["script_kb"]) * KIB,
        stdin_bytes=int(c["stdin_kb"]) * KIB,
        output_files=int(c["output_files"]),
        files_bytes=int(c["files_mb"]) * MIB,
        input_files=int(c["input_files"]),
        input_bytes=int(c["input_files_kb"]) * KIB,
        cpu_request=str(c["cpu_request"]),
        cpu_limit=str(c["cpu_limit"]),
    )
