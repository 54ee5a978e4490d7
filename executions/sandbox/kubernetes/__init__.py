"""The kubernetes backend: every run is one Pod in a dedicated namespace.

Per run: create the Pod, then a ConfigMap owned by it holding the script, its stdin and the
in-pod wrapper (wrapper.py); watch the Pod (list, then watch from that resourceVersion,
resuming after 410 Gone or a dropped stream) to a terminal state, following its log meanwhile
for live output (live.py); read its log with a byte cap; parse the wrapper's envelope; delete
the Pod and ConfigMap whatever happened.

Why the Pod comes first: the ConfigMap's ownerReference needs the Pod's uid, so a ConfigMap
can never outlive its Pod even if this worker dies between the two calls (the garbage collector
removes it). The kubelet mounts a ConfigMap volume only after scheduling, and retries when it is
not there yet; the ConfigMap is created a few milliseconds after the Pod, well before.

This is the only module that imports the kubernetes client. Configuration (in-cluster, else
KUBECONFIG) is loaded on first use, so the module imports on a machine with no cluster.
"""

import base64
import json
import logging
import math
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.rest import ApiException

from executions.sandbox.classify import result as classified
from executions.sandbox.contract import (
    INPUTS_DIR,
    Backend,
    Events,
    Facts,
    NoEvents,
    RunResult,
    RunSpec,
)
from executions.sandbox.kubernetes.live import LogFollower, envelope_line

log = logging.getLogger(__name__)

WRAPPER_SOURCE = (Path(__file__).parent / "wrapper.py").read_text()
PLOTS_SOURCE = (Path(__file__).parent / "plots.py").read_text()  # matplotlib's backend
# What the code volume shows at CODE_DIR (the script's own folder, so on its sys.path).
CODE_KEYS = ("wrapper.py", "script.py", "stdin", "integr8s_plots.py")
APP_LABEL = "app.kubernetes.io/name"
APP = "integr8s-execution"
INSTALLATION_LABEL = "integr8s/installation"
RUN_LABEL = "integr8s/execution-id"
CODE_DIR = "/integr8s"
RUN_AS = 65534  # nobody: a fixed non-root uid, as on the local backend, not the app's 10001
MIB = 1024 * 1024
WRAPPER_MEMORY = 16 * MIB  # the wrapper's own interpreter, on top of the script's allowance
WATCH_READ_TIMEOUT_S = 1  # how often a quiet watch wakes up to look at cancel and deadlines
RUN_GRACE_S = 10  # beyond the wall limit, before the backend stops waiting for the wrapper
IMAGE_ERRORS = {
    "ErrImagePull": "the image could not be pulled",
    "ImagePullBackOff": "the image could not be pulled",
    "InvalidImageName": "the image name is invalid",
    "ErrImageNeverPull": "the image is not on the node and may not be pulled",
    "CreateContainerConfigError": "the container could not be configured",
    "CreateContainerError": "the container could not be created",
    "RunContainerError": "the container could not be started",
}
NAME_OK = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
OUTPUT_NAME_OK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # as the wrapper's safe_name
# The API server refuses a ConfigMap whose data and binaryData pass 1 MiB together: the
# wrapper, the script, its stdin and its input files must fit (defaults: ~20 KiB + 64 KiB +
# 64 KiB + 512 KiB).
CONFIG_MAP_BUDGET = 1024 * 1024 - 4096


class Stop(Exception):
    """Ends a run early with a ready result."""

    def __init__(self, result: RunResult):
        self.result = result


def label_value(run_id: str) -> str:
    value = run_id.lower()
    return value if NAME_OK.fullmatch(value) else uuid.uuid5(uuid.NAMESPACE_URL, run_id).hex


def parse_node_selector(text: str) -> dict[str, str]:
    pairs = {}
    for item in filter(None, (i.strip() for i in (text or "").split(","))):
        key, _, value = item.partition("=")
        pairs[key.strip()] = value.strip()
    return pairs


def describe_api_error(exc: Exception, doing: str) -> str:
    if isinstance(exc, ApiException):
        detail = exc.reason or ""
        try:
            detail = json.loads(exc.body or "{}").get("message") or detail
        except (TypeError, ValueError):
            pass
        hint = {
            401: "the worker's credentials were rejected",
            403: "the worker's service account is not allowed to do this (check its Role)",
            404: "the namespace or object does not exist",
            409: "an object with the same name already exists",
        }.get(exc.status, "the Kubernetes API failed")
        return f"The sandbox could not be started: {doing} failed ({exc.status}: {hint}). {detail}"
    return (
        f"The sandbox could not be started: {doing} failed,"
        f" the Kubernetes API is unreachable ({exc})."
    )


def parse_envelope(log_bytes: bytes, nonce: str) -> tuple[bytes, bytes, dict | None]:
    """The script's stdout, stderr and the wrapper's result from a pod log.

    Only lines carrying this run's nonce count, and only the last result line: the wrapper
    writes it after every process of the script is gone.
    """
    prefix = nonce.encode() + b":"
    out, err, result = [], [], None
    for line in log_bytes.split(b"\n"):
        if (found := envelope_line(line, prefix)) is None:
            continue
        kind, data = found
        if kind == b"O":
            out.append(data)
        elif kind == b"E":
            err.append(data)
        elif kind == b"R":
            try:
                parsed = json.loads(data)
            except ValueError:
                continue
            if isinstance(parsed, dict):
                result = parsed
    return b"".join(out), b"".join(err), result


def parse_files(log_bytes: bytes, nonce: str) -> list[tuple[str, bytes]]:
    """The output files the wrapper sent (``F`` lines, ``name NUL chunk``), by name."""
    prefix = nonce.encode() + b":"
    pieces: dict[str, list[bytes]] = {}
    for line in log_bytes.split(b"\n"):
        found = envelope_line(line, prefix)
        if found is None or found[0] != b"F":
            continue
        name, sep, chunk = found[1].partition(b"\0")
        text = name.decode("ascii", "replace")
        if sep and OUTPUT_NAME_OK.fullmatch(text):
            pieces.setdefault(text, []).append(chunk)
    return [(name, b"".join(pieces[name])) for name in sorted(pieces)]


def log_cap(spec: RunSpec) -> int:
    """Bytes of pod log a run can honestly produce: base64 output and output files, plus line
    overheads."""
    lim = spec.limits
    lines = lim.output_bytes // 4096 + int(lim.wall_time_s * 50 * 2) + 100
    file_lines = lim.files_bytes // 8192 + lim.output_files + 1
    return (
        math.ceil(lim.output_bytes * 4 / 3)
        + lines * 80
        + math.ceil(lim.files_bytes * 4 / 3)
        + file_lines * 200
        + 64 * 1024
    )


def capped_files(
    files: list[tuple[str, bytes]], limits: Any
) -> tuple[list[tuple[str, bytes]], bool]:
    """The first files (by name) within the output files limits, and whether any were left
    out (the wrapper keeps to them already; this holds them whatever the log says)."""
    kept: list[tuple[str, bytes]] = []
    left = limits.files_bytes
    for name, data in files:
        if len(kept) >= limits.output_files or len(data) > left:
            return kept, True
        kept.append((name, data))
        left -= len(data)
    return kept, False


def config_map_size(config_map: dict) -> int:
    """What the API server counts against a ConfigMap's 1 MiB: its keys and values."""
    data = config_map.get("data") or {}
    binary = config_map.get("binaryData") or {}
    return sum(len(k) + len(v.encode("utf-8", "surrogatepass")) for k, v in data.items()) + sum(
        len(k) + len(base64.b64decode(v)) for k, v in binary.items()
    )


def from_settings(settings: Any, **overrides: Any) -> "KubernetesBackend":
    options = dict(
        namespace=settings.K8S_NAMESPACE,
        installation=settings.SANDBOX_NAME,
        runtime_class=settings.K8S_RUNTIME_CLASS,
        node_selector=settings.K8S_NODE_SELECTOR,
        tolerations=settings.K8S_TOLERATIONS,
        start_timeout_s=settings.K8S_START_TIMEOUT_S,
        host_users=settings.K8S_HOST_USERS,
    )
    return KubernetesBackend(**(options | overrides))


def image_of(spec: RunSpec) -> str:
    return spec.runtime.image or f"python:{spec.runtime.version}-slim"


def unsafe_image(spec: RunSpec, why: object) -> str:
    """Why the wrapper would not run the script (it reported "unsafe_image"), in words."""
    problem, fix = {
        "no_ctypes": (
            "its Python has no ctypes",
            "use an image with the full standard library, such as"
            f" python:{spec.runtime.version}-slim",
        ),
    }.get(
        str(why),
        (
            "the kernel left the wrapper dumpable after prctl(PR_SET_DUMPABLE)",
            "check that the pod's seccomp profile and runtime allow that prctl",
        ),
    )
    return (
        f"The sandbox image {image_of(spec)} cannot keep the script away from the platform's"
        f" wrapper ({problem}), so the script was not run; {fix}."
    )


def system_error(spec: RunSpec, reason: str, extra: dict | None = None) -> RunResult:
    """A run the platform could not carry out; reason is a sentence a user understands."""
    return classified(spec, Facts(platform_error=reason, extra=extra or {}), KubernetesBackend.name)


class KubernetesBackend(Backend):
    name = "kubernetes"

    def __init__(
        self,
        api: Any = None,
        api_client: Any = None,
        namespace: str = "integr8s-executions",
        installation: str = "integr8s",
        runtime_class: str = "",
        node_selector: dict[str, str] | str = "",
        tolerations: list | str = "",
        start_timeout_s: float = 60.0,
        host_users: bool = True,
    ):
        """api: a CoreV1Api, or api_client: an ApiClient (tests); else configured on first use.
        installation names this installation's pods (the reaper touches only those)."""
        self._api = api or (client.CoreV1Api(api_client) if api_client else None)
        self._lock = threading.Lock()
        if isinstance(tolerations, str):
            tolerations = json.loads(tolerations) if tolerations.strip() else []
        if isinstance(node_selector, str):
            node_selector = parse_node_selector(node_selector)
        self.namespace = namespace
        self.installation = installation
        self.runtime_class = runtime_class
        self.node_selector = node_selector
        self.tolerations = tolerations
        self.start_timeout_s = float(start_timeout_s)
        self.host_users = bool(host_users)

    # --- the API ------------------------------------------------------------------------------

    @property
    def api(self) -> Any:
        if self._api is None:
            with self._lock:
                if self._api is None:
                    configuration = client.Configuration()
                    try:
                        kube_config.load_incluster_config(client_configuration=configuration)
                    except kube_config.ConfigException:
                        kube_config.load_kube_config(client_configuration=configuration)
                    self._api = client.CoreV1Api(client.ApiClient(configuration))
        return self._api

    def _call(self, method: str, *args: Any, **kwargs: Any) -> dict:
        """A raw API call: the decoded JSON body (dicts, not models)."""
        resp = getattr(self.api, method)(*args, _preload_content=False, **kwargs)
        try:
            data = resp.data
        finally:
            resp.release_conn()
        return json.loads(data) if data else {}

    # --- what a run creates -------------------------------------------------------------------

    def labels(self, spec: RunSpec) -> dict[str, str]:
        return {
            APP_LABEL: APP,
            "app.kubernetes.io/managed-by": "integr8s",
            INSTALLATION_LABEL: self.installation,
            RUN_LABEL: label_value(spec.run_id),
        }

    def manifests(self, spec: RunSpec, nonce: str = "", suffix: str = "") -> list[dict]:
        """The Pod and ConfigMap a run creates (the ConfigMap's ownerReference is added later)."""
        nonce = nonce or secrets.token_hex(16)
        suffix = suffix or secrets.token_hex(3)
        run = label_value(spec.run_id or uuid.uuid4().hex)
        name = f"{self.installation}-run-{run}"[:55].rstrip("-") + f"-{suffix}"
        lim = spec.limits
        labels = self.labels(spec) | {RUN_LABEL: run}
        memory = lim.memory_bytes + WRAPPER_MEMORY
        ephemeral = lim.tmp_bytes + 2 * log_cap(spec) + 16 * MIB
        wrapper_limits = {
            "wall_time_s": lim.wall_time_s,
            "cpu_time_s": lim.cpu_time_s,
            "processes": lim.processes,
            "output_bytes": lim.output_bytes,
            "memory_bytes": lim.memory_bytes,
            "output_files": lim.output_files,
            "files_bytes": lim.files_bytes,
        }
        container: dict[str, Any] = {
            "name": "script",
            "image": image_of(spec),
            "imagePullPolicy": "IfNotPresent",
            "command": ["python3", "-u", "-S", f"{CODE_DIR}/wrapper.py"],
            "workingDir": "/tmp",
            "env": [
                {"name": "INTEGR8S_NONCE", "value": nonce},
                {
                    "name": "INTEGR8S_LIMITS",
                    "value": ",".join(f"{k}={v}" for k, v in wrapper_limits.items()),
                },
                {"name": "PYTHONUNBUFFERED", "value": "1"},
                {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
                {"name": "HOME", "value": "/tmp"},
            ],
            "resources": {
                "requests": {
                    "cpu": lim.cpu_request,
                    "memory": str(memory),
                    "ephemeral-storage": str(ephemeral),
                },
                "limits": {
                    "cpu": lim.cpu_limit,
                    "memory": str(memory),
                    "ephemeral-storage": str(ephemeral),
                },
            },
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS,
                "runAsGroup": RUN_AS,
                "allowPrivilegeEscalation": False,
                "privileged": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "volumeMounts": [
                {"name": "code", "mountPath": CODE_DIR, "readOnly": True},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
            "terminationMessagePolicy": "File",
        }
        pod_spec: dict[str, Any] = {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": math.ceil(lim.wall_time_s + self.start_timeout_s)
            + RUN_GRACE_S,
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "hostNetwork": False,
            "hostPID": False,
            "hostIPC": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS,
                "runAsGroup": RUN_AS,
                "fsGroup": RUN_AS,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": [
                {
                    "name": "code",
                    "configMap": {
                        "name": name,
                        "defaultMode": 0o444,
                        "items": [{"key": k, "path": k} for k in CODE_KEYS],
                    },
                },
                {
                    # A tmpfs of exactly sizeLimit: writing more fails with ENOSPC, and what
                    # is written counts against the memory limit, as on the local backend.
                    "name": "tmp",
                    "emptyDir": {"medium": "Memory", "sizeLimit": str(lim.tmp_bytes)},
                },
            ],
        }
        if self.runtime_class:
            pod_spec["runtimeClassName"] = self.runtime_class
        if not self.host_users:
            pod_spec["hostUsers"] = False
        if self.node_selector:
            pod_spec["nodeSelector"] = dict(self.node_selector)
        if self.tolerations:
            pod_spec["tolerations"] = list(self.tolerations)
        metadata = {
            "name": name,
            "namespace": self.namespace,
            "labels": labels,
            "annotations": {"integr8s/python-version": spec.runtime.version},
        }
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}
        config_map = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": self.namespace, "labels": dict(labels)},
            "immutable": True,
            "data": {
                "wrapper.py": WRAPPER_SOURCE,
                "script.py": spec.script,
                "stdin": spec.stdin,
                "integr8s_plots.py": PLOTS_SOURCE,
            },
        }
        if spec.files:
            # Input files: binaryData under keys of our own (a key allows few characters), each
            # mounted read-only at /tmp/inputs/<its name> (a read-only volume inside /tmp).
            config_map["binaryData"] = {
                f"input-{i}": base64.b64encode(data).decode()
                for i, (_, data) in enumerate(spec.files)
            }
            pod_spec["volumes"].append(
                {
                    "name": "inputs",
                    "configMap": {
                        "name": name,
                        "defaultMode": 0o444,
                        "items": [
                            {"key": f"input-{i}", "path": file_name}
                            for i, (file_name, _) in enumerate(spec.files)
                        ],
                    },
                }
            )
            container["volumeMounts"].append(
                {"name": "inputs", "mountPath": INPUTS_DIR, "readOnly": True}
            )
        return [pod, config_map]

    # --- a run --------------------------------------------------------------------------------

    def run(
        self, spec: RunSpec, cancel: threading.Event, events: Events | None = None
    ) -> RunResult:
        # The result comes from the log once the pod has ended; while it runs, its log is
        # followed for live output (live.py).
        nonce = secrets.token_hex(16)
        pod, config_map = self.manifests(spec, nonce=nonce)
        name = pod["metadata"]["name"]
        created = None
        extra = {"pod": name, "namespace": self.namespace}
        if (size := config_map_size(config_map)) > CONFIG_MAP_BUDGET:
            return system_error(
                spec,
                "The sandbox could not be started: the script, its input and its input files "
                f"are {size // 1024} KiB together, more than a pod's ConfigMap holds "
                f"({CONFIG_MAP_BUDGET // 1024} KiB); send smaller input files.",
                extra=extra,
            )
        try:
            try:
                created = self._call("create_namespaced_pod", self.namespace, pod)
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
                return system_error(spec, describe_api_error(exc, "creating the pod"), extra=extra)
            except kube_config.ConfigException as exc:
                return system_error(
                    spec,
                    f"The sandbox could not be started: no Kubernetes configuration ({exc}).",
                    extra=extra,
                )
            owner = {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": name,
                "uid": created.get("metadata", {}).get("uid", ""),
                "blockOwnerDeletion": False,
            }
            config_map["metadata"]["ownerReferences"] = [owner]
            try:
                self._call("create_namespaced_config_map", self.namespace, config_map)
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
                return system_error(
                    spec, describe_api_error(exc, "creating the script's ConfigMap"), extra=extra
                )
            return self._follow(spec, name, nonce, cancel, extra, events or NoEvents())
        except Stop as stop:
            return stop.result
        except Exception as exc:  # never raise for the platform's failures
            log.exception("kubernetes run %s failed", name)
            return system_error(spec, f"The sandbox failed unexpectedly: {exc}", extra=extra)
        finally:
            if created is not None:
                self._delete(name)

    def _delete(self, name: str) -> None:
        for method in ("delete_namespaced_pod", "delete_namespaced_config_map"):
            try:
                self._call(method, name, self.namespace, grace_period_seconds=0)
            except ApiException as exc:
                if exc.status != 404:
                    log.warning("could not delete %s %s: %s", method, name, exc)
            except Exception as exc:
                log.warning("could not delete %s %s: %s", method, name, exc)

    def _follow(
        self,
        spec: RunSpec,
        name: str,
        nonce: str,
        cancel: threading.Event,
        extra: dict,
        events: Events,
    ) -> RunResult:
        started = time.monotonic()
        start_deadline = started + self.start_timeout_s
        run_deadline = None
        running_at = None
        last_pod = None
        follower: LogFollower | None = None
        try:
            for pod in self._watch(spec, name, cancel):
                last_pod = pod
                now = time.monotonic()
                if pod is not None:
                    state = self._state(pod)
                    if state == "running" and running_at is None:
                        running_at = now
                        extra["start_seconds"] = round(now - started, 3)
                        run_deadline = now + spec.limits.wall_time_s + RUN_GRACE_S
                        if not isinstance(events, NoEvents):  # someone may be watching
                            follower = LogFollower(
                                self.api,
                                self.namespace,
                                name,
                                nonce,
                                spec.limits.output_bytes,
                                spec.limits.wall_time_s + RUN_GRACE_S,
                            ).start()
                    if state == "terminal":
                        if running_at is None:
                            extra["start_seconds"] = round(now - started, 3)
                        return self._finish(spec, name, nonce, pod, extra)
                    problem = self._start_problem(pod)
                    if problem:
                        return system_error(spec, problem, extra=extra)
                if follower is not None:
                    follower.pass_on(events)
                events.poll()  # lets the watchers' view catch up (pods take no input)
                if cancel.is_set():
                    self._delete(name)
                    cancelled = Facts(started=True, cancelled=True, extra=extra)
                    return classified(spec, cancelled, self.name)
                if running_at is None and now > start_deadline:
                    waiting = self._waiting_reason(last_pod) if last_pod else ""
                    return system_error(
                        spec,
                        f"The sandbox did not start within {self.start_timeout_s:g} s"
                        + (f" ({waiting})." if waiting else "."),
                        extra=extra,
                    )
                if run_deadline is not None and now > run_deadline:
                    return self._finish(spec, name, nonce, last_pod, extra, timed_out=True)
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            if follower is not None:
                follower.stop()

    def _watch(self, spec: RunSpec, name: str, cancel: threading.Event) -> Iterator[dict | None]:
        """Yield the pod each time it changes, and None at least every second (list + watch).

        Resumes from the last resourceVersion after a dropped stream, and lists again after
        410 Gone. Gives up with a system error after repeated API failures.
        """
        failures = 0
        resource_version = None
        while True:
            try:
                if resource_version is None:
                    listed = self._call(
                        "list_namespaced_pod",
                        self.namespace,
                        field_selector=f"metadata.name={name}",
                    )
                    resource_version = listed.get("metadata", {}).get("resourceVersion")
                    pods = [p for p in listed.get("items", []) if self._is(p, name)]
                    yield pods[0] if pods else None
                resp = self.api.list_namespaced_pod(
                    self.namespace,
                    field_selector=f"metadata.name={name}",
                    watch=True,
                    allow_watch_bookmarks=True,
                    resource_version=resource_version,
                    timeout_seconds=max(1, int(self.start_timeout_s)),
                    _preload_content=False,
                    _request_timeout=(5, WATCH_READ_TIMEOUT_S),
                )
                failures = 0
                try:
                    for event in self._events(resp):
                        kind, obj = event.get("type"), event.get("object") or {}
                        if kind == "ERROR":
                            if obj.get("code") == 410:
                                resource_version = None  # expired: list again
                                break
                            raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                        version = obj.get("metadata", {}).get("resourceVersion")
                        if version:
                            resource_version = version
                        if kind == "BOOKMARK" or not self._is(obj, name):
                            yield None
                            continue
                        if kind == "DELETED":
                            raise Stop(
                                system_error(spec, "The sandbox pod was deleted by someone else.")
                            )
                        yield obj
                finally:
                    resp.release_conn()
                yield None  # the stream ended: look at cancel and deadlines, then watch again
            except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ProtocolError):
                yield None  # a quiet or dropped stream: resume from the last version
            except ApiException as exc:
                if exc.status == 410:
                    resource_version = None
                    continue
                failures += 1
                if failures >= 5 or exc.status in (401, 403, 404):
                    raise Stop(
                        system_error(spec, describe_api_error(exc, "watching the pod"))
                    ) from exc
                time.sleep(min(0.2 * failures, 1))
                yield None
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                failures += 1
                if failures >= 5:
                    raise Stop(
                        system_error(spec, describe_api_error(exc, "watching the pod"))
                    ) from exc
                time.sleep(min(0.2 * failures, 1))
                yield None
            if cancel.is_set():
                yield None

    @staticmethod
    def _events(resp: Any) -> Iterator[dict]:
        buffer = b""
        for chunk in resp.stream(amt=None, decode_content=False):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    try:
                        yield json.loads(line)
                    except ValueError:
                        continue
        if buffer.strip():
            try:
                yield json.loads(buffer)
            except ValueError:
                pass

    def _is(self, pod: dict, name: str) -> bool:
        meta = pod.get("metadata", {})
        return meta.get("name") == name and meta.get("namespace", self.namespace) == self.namespace

    @staticmethod
    def _container(pod: dict) -> dict:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        return statuses[0] if statuses else {}

    def _state(self, pod: dict) -> str:
        status = pod.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            return "terminal"
        state = self._container(pod).get("state") or {}
        if "terminated" in state:
            return "terminal"
        if "running" in state:
            return "running"
        return "pending"

    def _waiting_reason(self, pod: dict) -> str:
        waiting = (self._container(pod).get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            return f"{waiting['reason']}: {waiting.get('message', '')}".strip(": ")
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("status") == "False" and cond.get("reason"):
                return f"{cond['reason']}: {cond.get('message', '')}".strip(": ")
        return (pod.get("status") or {}).get("phase", "")

    def _start_problem(self, pod: dict) -> str:
        """Why this pending pod will never run, in words, or ''."""
        waiting = (self._container(pod).get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason", "")
        if reason in IMAGE_ERRORS:
            image = self._container(pod).get("image") or pod["spec"]["containers"][0]["image"]
            return (
                f"The sandbox could not start: {IMAGE_ERRORS[reason]} ({reason}, image {image})."
                f" {waiting.get('message', '')}"
            ).strip()
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if (
                cond.get("type") == "PodScheduled"
                and cond.get("status") == "False"
                and cond.get("reason") == "Unschedulable"
            ):
                return (
                    "The sandbox could not start: no node in the cluster can run it"
                    f" (Unschedulable). {cond.get('message', '')}"
                ).strip()
        return ""

    def _read_log(self, spec: RunSpec, name: str) -> tuple[bytes, bool]:
        cap = log_cap(spec)
        try:
            resp = self.api.read_namespaced_pod_log(
                name,
                self.namespace,
                container="script",
                limit_bytes=cap,
                _preload_content=False,
                _request_timeout=(5, 30),
            )
            try:
                data = resp.data or b""
            finally:
                resp.release_conn()
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            log.warning("could not read the log of %s: %s", name, exc)
            return b"", False
        return data[:cap], len(data) >= cap

    def _finish(
        self,
        spec: RunSpec,
        name: str,
        nonce: str,
        pod: dict | None,
        extra: dict,
        timed_out: bool = False,
    ) -> RunResult:
        raw, log_full = self._read_log(spec, name)
        return self.classify(spec, pod, raw, nonce, extra, timed_out=timed_out, log_full=log_full)

    def classify(
        self,
        spec: RunSpec,
        pod: dict | None,
        raw: bytes,
        nonce: str,
        extra: dict | None = None,
        timed_out: bool = False,
        log_full: bool = False,
    ) -> RunResult:
        """The run's result from its pod (as the API returns it) and its log."""
        facts = self.facts(spec, pod, raw, nonce, extra, timed_out, log_full)
        return classified(spec, facts, self.name)

    def facts(
        self,
        spec: RunSpec,
        pod: dict | None,
        raw: bytes,
        nonce: str,
        extra: dict | None = None,
        timed_out: bool = False,
        log_full: bool = False,
    ) -> Facts:
        """What the pod's status and the wrapper's envelope say happened."""
        out, err, envelope = parse_envelope(raw, nonce)
        status = (pod or {}).get("status") or {}
        terminated = (self._container(pod or {}).get("state") or {}).get("terminated") or {}
        exit_code = terminated.get("exitCode")
        facts = Facts(
            started=True,
            stdout=out,
            stderr=err,
            extra=(extra or {}) | {"pod_reason": status.get("reason") or terminated.get("reason")},
        )
        # The wrapper's word counts only if it ended on its own: a forged result line from the
        # script cannot outlive a wrapper that was killed.
        trusted = envelope is not None and exit_code == 0
        if envelope is not None and trusted:
            facts.exit_code = envelope.get("exit_code")
            facts.stdout_cut = bool(envelope.get("output_truncated"))
            facts.stderr_cut = bool(envelope.get("errors_truncated"))
            facts.wall_time_ms = envelope.get("wall_time_ms")
            facts.cpu_time_ms = envelope.get("cpu_time_ms")
            facts.peak_memory_kb = envelope.get("peak_memory_kb")
            why = envelope.get("reason")
            facts.output_capped = why == "output_limit"
            facts.wall_timeout = why == "wall_time"
            facts.cpu_exceeded = why == "cpu_time"
            # OOM kills in the container during the run, whether or not the script died of
            # one (a child may have): classify() says what they mean.
            facts.oom_kills = int(bool(envelope.get("oom_killed")) or why == "memory_limit")
            facts.process_limit_hit = why == "process_limit"
            facts.tmp_full = bool(envelope.get("tmp_full"))
            facts.files, facts.files_capped = capped_files(parse_files(raw, nonce), spec.limits)
            facts.files_capped |= bool(envelope.get("files_capped"))
            if why == "terminated":
                facts.platform_error = "The sandbox was stopped before the script finished."
            elif why == "unsafe_image":
                facts.started = False
                facts.platform_error = unsafe_image(spec, envelope.get("unsafe"))
        if timed_out or status.get("reason") == "DeadlineExceeded":
            facts.wall_timeout = True
            facts.wall_time_ms = facts.wall_time_ms or int(spec.limits.wall_time_s * 1000)
        elif terminated.get("reason") == "OOMKilled" or (not trusted and exit_code == 137):
            facts.oom_kills = max(facts.oom_kills, 1)
            facts.exit_code = facts.exit_code if trusted else 137
        elif not trusted:
            if log_full:
                facts.output_capped = facts.stdout_cut = True
            else:
                detail = terminated.get("reason") or status.get("reason") or status.get("phase")
                facts.platform_error = (
                    f"The sandbox ended without reporting a result (exit code {exit_code},"
                    f" {detail or 'no reason given'})."
                )
        return facts

    # --- the reaper ---------------------------------------------------------------------------

    def cleanup_stale(self, live_run_ids: set[str] | None = None) -> int:
        """Delete this installation's pods and ConfigMaps whose run is not in live_run_ids."""
        live = {label_value(r) for r in (live_run_ids or ())}
        selector = f"{APP_LABEL}={APP},{INSTALLATION_LABEL}={self.installation}"
        removed = 0
        for kind, lister, deleter in (
            ("pod", "list_namespaced_pod", "delete_namespaced_pod"),
            ("configmap", "list_namespaced_config_map", "delete_namespaced_config_map"),
        ):
            try:
                items = self._call(lister, self.namespace, label_selector=selector).get("items", [])
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
                log.warning("reaper: could not list %ss: %s", kind, exc)
                continue
            for item in items:
                labels = item.get("metadata", {}).get("labels") or {}
                # Checked again here: a selector the server ignored must not widen the sweep.
                if (
                    labels.get(APP_LABEL) != APP
                    or labels.get(INSTALLATION_LABEL) != self.installation
                ):
                    continue
                if labels.get(RUN_LABEL) in live:
                    continue
                try:
                    self._call(
                        deleter, item["metadata"]["name"], self.namespace, grace_period_seconds=0
                    )
                    removed += 1
                except ApiException as exc:
                    if exc.status != 404:
                        log.warning(
                            "reaper: could not delete %s: %s", item["metadata"]["name"], exc
                        )
                except (urllib3.exceptions.HTTPError, OSError) as exc:
                    log.warning("reaper: could not delete %s: %s", item["metadata"]["name"], exc)
        return removed
