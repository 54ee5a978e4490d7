"""A Kubernetes API for tests: kmock's emulator, filled in where the backend needs realism.

kmock (KubernetesEmulator) stores objects and serves create/get/list/watch/patch/delete over
real HTTP to the real `kubernetes` client. `Apiserver` adds what a real API server does and the
backend relies on: uid, resourceVersion, namespace and creationTimestamp on create; pod logs
with limitBytes; and injected faults (error statuses without storing the object, 410 Gone on a
watch, a connection cut mid-stream). It runs on its own event loop in a thread, because the
backend under test is synchronous.

`Kubelet` plays the node: it watches pods and acts each one out with a scenario, either running
the real in-pod wrapper as a local process (so the backend parses a genuine envelope) or
writing the statuses a real kubelet would (OOMKilled, DeadlineExceeded, ErrImagePull, ...).
"""

import asyncio
import base64
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import kmock
from kubernetes import client
from kubernetes.client.rest import ApiException

NAMESPACE = "integr8s-executions"


@dataclass
class Fault:
    """Answer matching requests with an error (or a cut) instead of serving them."""

    action: str  # CREATE, WATCH, LIST, DELETE, FETCH
    plural: str  # pods, configmaps
    status: int = 500  # HTTP status, or 410 as a watch ERROR event, or 0 to cut the connection
    times: int = 1_000_000
    subresource: str | None = None
    seen: list = field(default_factory=list)


class Apiserver(kmock.KubernetesEmulator):
    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.versions = itertools.count(1000)
        self.faults: list[Fault] = []
        self.logs: dict[str, bytes] = {}
        self.log_requests: list[dict] = []
        self.logs_ended: set[str] = set()  # pods whose container ended: a followed log ends

    def _fault(self, request):
        action = request.action.value if request.action else ""
        plural = request.resource.plural if request.resource else ""
        for fault in self.faults:
            if (
                fault.action == action
                and fault.plural == plural
                and fault.subresource == request.subresource
                and len(fault.seen) < fault.times
            ):
                fault.seen.append(request)
                return fault
        return None

    async def _handle(self, request):
        fault = self._fault(request) if request.resource is not None else None
        if fault is not None:
            if fault.status == 0:  # the connection drops without a word
                request._raw_request.transport.abort()
                raise asyncio.CancelledError
            if fault.status == 410 and request.action == kmock.action.WATCH:
                return await self._watch_gone(request)
            return await self._render_error(
                kmock.KubernetesError(
                    status=fault.status,
                    reason={403: "Forbidden", 409: "AlreadyExists"}.get(fault.status, "Failure"),
                    message=f"injected {fault.status} for {request.method} {request.url.path}",
                    details={},
                )
            )
        if request.subresource == "log":
            self.log_requests.append(dict(request.params))
            if request.params.get("follow") == "true":
                return await self._follow_log(request)
            data = self.logs.get(request.name, b"")
            if "limitBytes" in request.params:
                data = data[: int(request.params["limitBytes"])]
            from aiohttp import web

            return web.Response(body=data, content_type="text/plain")
        if request.resource is not None and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            if request.action == kmock.action.CREATE:
                meta.setdefault("namespace", request.namespace)
                meta["uid"] = str(uuid.uuid4())
                meta["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                if request.resource.plural == "pods":
                    request.data.setdefault("status", {"phase": "Pending"})
            if request.action in (kmock.action.CREATE, kmock.action.UPDATE):
                meta["resourceVersion"] = str(next(self.versions))
        return await super()._handle(request)

    async def _follow_log(self, request):
        """A followed log, as a kubelet serves it: what is there, then more as it is written,
        until the container ends (or 30 s pass)."""
        from aiohttp import web

        response = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
        await response.prepare(request._raw_request)
        sent, deadline = 0, time.monotonic() + 30
        while time.monotonic() < deadline:
            ended = request.name in self.logs_ended
            data = self.logs.get(request.name, b"")
            if len(data) > sent:
                await response.write(data[sent:])
                sent = len(data)
            if ended:
                break
            await asyncio.sleep(0.02)
        await response.write_eof()
        return response

    async def _watch_gone(self, request):
        from aiohttp import web

        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await response.prepare(request._raw_request)
        event = {
            "type": "ERROR",
            "object": {
                "apiVersion": "v1",
                "kind": "Status",
                "status": "Failure",
                "code": 410,
                "reason": "Expired",
                "message": "too old resource version",
            },
        }
        await response.write(json.dumps(event).encode() + b"\n")
        await response.write_eof()
        return response


class FakeCluster:
    """The Apiserver on a background event loop, with a synchronous face for tests."""

    def __init__(self):
        self._ready = threading.Event()
        self._stop = None
        self.loop = None
        self.server = None
        self.url = ""
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self):
        self.loop = asyncio.new_event_loop()

        async def serve():
            self._stop = asyncio.Event()
            async with Apiserver() as server, kmock.Server(server) as http:
                server.resources["v1/pods"] = {}
                server.resources["v1/configmaps"] = {}
                self.server = server
                self.url = str(http.url).rstrip("/")
                self._ready.set()
                await self._stop.wait()

        self.loop.run_until_complete(serve())

    def start(self) -> "FakeCluster":
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self):
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)

    def api(self) -> client.CoreV1Api:
        configuration = client.Configuration()
        configuration.host = self.url
        return client.CoreV1Api(client.ApiClient(configuration))

    def live(self, plural: str) -> list[dict]:
        """Objects of a kind that exist now (not deleted)."""
        return [
            obj.raw
            for (res, _ns, _name), obj in list(self.server.objects.items())
            if res.plural == plural and not obj.deleted
        ]

    def requests(self, action: str, plural: str, subresource=None) -> list:
        return [
            r
            for r in list(self.server._requests)
            if r.action
            and r.action.value == action
            and r.resource is not None
            and r.resource.plural == plural
            and r.subresource == subresource
        ]


# --- the node ---------------------------------------------------------------------------------


def envelope(nonce: str, kind: str, payload: bytes) -> bytes:
    return f"{nonce}:{kind}:".encode() + base64.b64encode(payload) + b"\n"


def env_of(pod: dict) -> dict:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0].get("env", [])}


class Kubelet:
    """Acts out every new pod with `scenario(kubelet, pod)` in its own thread."""

    def __init__(self, cluster: FakeCluster, scenario):
        self.cluster = cluster
        self.api = cluster.api()
        self.scenario = scenario
        self.seen: set[str] = set()
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> "Kubelet":
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(3)
        for t in self.threads:
            t.join(10)

    def _loop(self):
        while not self._stop.is_set():
            for pod in self.cluster.live("pods"):
                name = pod["metadata"]["name"]
                if name not in self.seen:
                    self.seen.add(name)
                    t = threading.Thread(target=self._act, args=(pod,), daemon=True)
                    self.threads.append(t)
                    t.start()
            time.sleep(0.01)

    def _act(self, pod):
        try:
            self.scenario(self, pod)
        except ApiException as exc:
            if exc.status != 404:  # the backend deleting a pod mid-scenario is normal
                self.errors.append(exc)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the test
            self.errors.append(exc)

    # Helpers for scenarios.

    def status(self, pod: dict, status: dict):
        name = pod["metadata"]["name"]
        self.api.patch_namespaced_pod_status(name, NAMESPACE, {"status": status})

    def running(self, pod: dict):
        self.status(
            pod,
            {
                "phase": "Running",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [
                    {
                        "name": "script",
                        "image": pod["spec"]["containers"][0]["image"],
                        "imageID": "",
                        "ready": True,
                        "restartCount": 0,
                        "state": {"running": {"startedAt": "2026-11-26T00:00:00Z"}},
                    }
                ],
            },
        )

    def terminated(self, pod: dict, exit_code: int, reason: str = "", phase: str = ""):
        self.cluster.server.logs_ended.add(pod["metadata"]["name"])
        phase = phase or ("Succeeded" if exit_code == 0 else "Failed")
        self.status(
            pod,
            {
                "phase": phase,
                "containerStatuses": [
                    {
                        "name": "script",
                        "image": pod["spec"]["containers"][0]["image"],
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {
                            "terminated": {
                                "exitCode": exit_code,
                                "reason": reason or ("Completed" if exit_code == 0 else "Error"),
                            }
                        },
                    }
                ],
            },
        )

    def set_log(self, pod: dict, data: bytes):
        self.cluster.server.logs[pod["metadata"]["name"]] = data

    def exists(self, pod: dict) -> bool:
        name = pod["metadata"]["name"]
        return any(p["metadata"]["name"] == name for p in self.cluster.live("pods"))

    def config_map(self, pod: dict, wait_s: float = 5) -> dict:
        name = pod["spec"]["volumes"][0]["configMap"]["name"]
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            for cm in self.cluster.live("configmaps"):
                if cm["metadata"]["name"] == name:
                    return cm
            time.sleep(0.01)
        raise AssertionError(f"ConfigMap {name} never appeared")


def run_wrapper(kubelet: Kubelet, pod: dict):
    """The real wrapper runs the script as a local process; its stdout becomes the pod log."""
    cm = kubelet.config_map(pod)
    kubelet.running(pod)
    env = env_of(pod)
    with tempfile.TemporaryDirectory() as code_dir:
        for key, value in cm["data"].items():
            with open(os.path.join(code_dir, key), "w") as f:
                f.write(value)
        proc = subprocess.Popen(
            [sys.executable, "-u", "-S", os.path.join(code_dir, "wrapper.py")],
            env={
                "INTEGR8S_NONCE": env["INTEGR8S_NONCE"],
                "INTEGR8S_LIMITS": env["INTEGR8S_LIMITS"],
                "INTEGR8S_CODE_DIR": code_dir,
                "INTEGR8S_OUTPUTS": os.path.join(code_dir, "outputs"),  # not the host's /tmp
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            },
            stdout=subprocess.PIPE,
        )
        chunks = []

        def read() -> None:  # the pod's log grows as the wrapper writes, as a kubelet's does
            while data := proc.stdout.read1(65536):
                chunks.append(data)
                kubelet.set_log(pod, b"".join(chunks))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        while proc.poll() is None:
            if not kubelet.exists(pod):  # deleted (cancelled): the container is killed
                proc.kill()
                proc.wait()
                return
            time.sleep(0.02)
        reader.join(5)
    kubelet.set_log(pod, b"".join(chunks))
    kubelet.terminated(pod, proc.returncode)


def scripted(log: bytes = b"", exit_code: int = 0, reason: str = "", phase: str = "", delay=0.05):
    """A scenario that runs, writes `log` and terminates as told."""

    def scenario(kubelet: Kubelet, pod: dict):
        kubelet.config_map(pod)
        kubelet.running(pod)
        time.sleep(delay)
        data = log(env_of(pod)["INTEGR8S_NONCE"]) if callable(log) else log
        kubelet.set_log(pod, data)
        kubelet.terminated(pod, exit_code, reason, phase)

    return scenario


def pending(waiting_reason: str = "", message: str = "", unschedulable: bool = False):
    """A scenario where the pod never starts."""

    def scenario(kubelet: Kubelet, pod: dict):
        status = {"phase": "Pending"}
        if unschedulable:
            status["conditions"] = [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": message or "0/3 nodes are available: 3 Insufficient memory.",
                }
            ]
        if waiting_reason:
            status["containerStatuses"] = [
                {
                    "name": "script",
                    "image": pod["spec"]["containers"][0]["image"],
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": waiting_reason, "message": message}},
                }
            ]
        time.sleep(0.05)
        kubelet.status(pod, status)

    return scenario


def deadline_exceeded(kubelet: Kubelet, pod: dict):
    nonce = env_of(pod)["INTEGR8S_NONCE"]
    kubelet.config_map(pod)
    kubelet.running(pod)
    time.sleep(0.05)
    kubelet.set_log(pod, envelope(nonce, "O", b"tick\n"))
    kubelet.status(
        pod,
        {
            "phase": "Failed",
            "reason": "DeadlineExceeded",
            "message": "Pod was active on the node longer than the specified deadline",
        },
    )
