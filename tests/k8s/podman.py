"""Run the kubernetes backend's Pod and ConfigMap for real with `podman kube play`.

No cluster can be had here; podman runs the very manifests the backend generates (runAsUser,
readOnlyRootFilesystem, memory limit, ConfigMap volume, emptyDir) under runc, and the backend's
own classify() turns the container's end and log into a RunResult. What podman does not do:
activeDeadlineSeconds (the wrapper's limits are tested instead), NetworkPolicy (the pod gets
--network none) and a memory-backed, size-limited emptyDir (podman 4.3 puts /tmp on the host's
disk). Its default seccomp profile is podman's, not a Kubernetes runtime's RuntimeDefault. Set
up by .ci/podman-setup.sh (Debian bookworm's full python3: the wrapper needs ctypes).
"""

import json
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from executions.sandbox.contract import RunResult, RunSpec

IMAGE = "localhost/integr8s-python:3.11-full"  # .ci/podman-setup.sh: the full python3


def unavailable() -> str:
    """Why podman tests cannot run here, or ''."""
    if not shutil.which("podman"):
        return "podman is not installed (run .ci/podman-setup.sh)"
    try:
        found = subprocess.run(["podman", "image", "exists", IMAGE], timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"podman does not answer: {exc}"
    return "" if found else f"the image {IMAGE} is missing (run .ci/podman-setup.sh)"


def play(backend, spec: RunSpec, timeout_s: float = 60) -> RunResult:
    nonce = secrets.token_hex(16)
    pod, config_map = backend.manifests(spec, nonce=nonce)
    name = pod["metadata"]["name"]
    container = f"{name}-script"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.yaml"
        path.write_text(yaml.safe_dump_all([config_map, pod]))
        try:
            subprocess.run(
                ["podman", "kube", "play", "--network", "none", str(path)],
                check=True,
                capture_output=True,
                timeout=timeout_s,
            )
            subprocess.run(
                ["podman", "wait", container], check=True, capture_output=True, timeout=timeout_s
            )
            state = json.loads(
                subprocess.run(
                    ["podman", "inspect", container], check=True, capture_output=True
                ).stdout
            )[0]["State"]
            log = subprocess.run(
                ["podman", "logs", container], check=True, capture_output=True
            ).stdout
        finally:
            subprocess.run(["podman", "kube", "down", str(path)], capture_output=True, timeout=60)
            subprocess.run(["podman", "pod", "rm", "-f", name], capture_output=True, timeout=60)
            # podman 4.3 makes the ConfigMap a named volume, which kube down leaves behind.
            subprocess.run(["podman", "volume", "rm", name], capture_output=True, timeout=60)
    code = state["ExitCode"]
    reason = "OOMKilled" if state.get("OOMKilled") else ("Completed" if code == 0 else "Error")
    status = {
        "phase": "Succeeded" if code == 0 else "Failed",
        "containerStatuses": [
            {"name": "script", "state": {"terminated": {"exitCode": code, "reason": reason}}}
        ],
    }
    return backend.classify(spec, {"status": status}, log, nonce, {"podman_state": state})
