"""The kubernetes backend through the real `kubernetes` client against kmock (tests/k8s/fake.py)."""

import base64
import threading
import time

import pytest

from executions.limits import Limits
from executions.runtimes import Runtime
from executions.sandbox.contract import RunSpec
from executions.sandbox.kubernetes import KubernetesBackend, log_cap, parse_envelope
from tests.k8s.fake import (
    NAMESPACE,
    FakeCluster,
    Fault,
    Kubelet,
    deadline_exceeded,
    envelope,
    pending,
    run_wrapper,
    scripted,
)

RUNTIME = Runtime("3.12", image="python:3.12-slim")


@pytest.fixture
def cluster():
    fake = FakeCluster().start()
    yield fake
    fake.stop()


@pytest.fixture
def kubelet(cluster):
    started = []

    def start(scenario):
        k = Kubelet(cluster, scenario).start()
        started.append(k)
        return k

    yield start
    for k in started:
        k.stop()
        assert not k.errors, k.errors


def backend_for(cluster, **options) -> KubernetesBackend:
    options.setdefault("namespace", NAMESPACE)
    options.setdefault("installation", "integr8s-test")
    options.setdefault("start_timeout_s", 5)
    return KubernetesBackend(api=cluster.api(), **options)


def spec(script="print('hello')\n", stdin="", run_id="8d3c2b0e-0000-4000-8000-000000000001", **kw):
    return RunSpec(script=script, runtime=RUNTIME, limits=Limits(**kw), stdin=stdin, run_id=run_id)


def run(backend, s, cancel=None):
    return backend.run(s, cancel or threading.Event())


def assert_nothing_left(cluster):
    assert cluster.live("pods") == []
    assert cluster.live("configmaps") == []


# --- real wrapper, fake node ------------------------------------------------------------------


def test_it_runs_a_script_and_cleans_up(cluster, kubelet):
    kubelet(run_wrapper)
    result = run(backend_for(cluster), spec("import sys\nprint('hi')\nprint(input()*2)\n", "ab"))
    assert (result.status, result.error_type, result.exit_code) == ("completed", None, 0)
    assert result.output == "hi\nabab\n"
    assert result.cpu_time_ms is not None and result.peak_memory_kb > 0
    assert result.extra["start_seconds"] >= 0
    assert_nothing_left(cluster)


def test_the_config_map_is_owned_by_the_pod(cluster, kubelet):
    seen = {}

    def scenario(k, pod):
        seen["pod"] = pod
        seen["cm"] = k.config_map(pod)
        run_wrapper(k, pod)

    kubelet(scenario)
    run(backend_for(cluster), spec())
    owner = seen["cm"]["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "Pod" and owner["name"] == seen["pod"]["metadata"]["name"]
    assert owner["uid"] == seen["pod"]["metadata"]["uid"]
    assert set(seen["cm"]["data"]) == {"wrapper.py", "script.py", "stdin", "integr8s_plots.py"}


def test_a_traceback_is_a_completed_script_error(cluster, kubelet):
    kubelet(run_wrapper)
    result = run(backend_for(cluster), spec("print('before')\nraise SystemExit(3)\n"))
    assert (result.status, result.error_type, result.exit_code) == ("completed", "script_error", 3)
    assert result.output == "before\n"
    assert_nothing_left(cluster)


def test_stderr_is_kept_apart(cluster, kubelet):
    kubelet(run_wrapper)
    result = run(backend_for(cluster), spec("import sys\nprint('out')\n1/0\n"))
    assert result.output == "out\n"
    assert "ZeroDivisionError" in result.errors
    assert result.error_type == "script_error"


def test_the_output_cap_stops_the_script(cluster, kubelet):
    kubelet(run_wrapper)
    result = run(
        backend_for(cluster), spec("while True:\n    print('x' * 1000)\n", output_bytes=10_000)
    )
    assert (result.status, result.error_type) == ("failed", "output_limit")
    assert result.output_truncated
    assert len(result.output) + len(result.errors) <= 10_000
    assert result.output.startswith("x" * 1000)


class Watcher:
    """Events that note what was passed on, and when."""

    def __init__(self):
        self.seen: list[tuple[float, str, str]] = []

    def output(self, stream, text):
        self.seen.append((time.monotonic(), stream, text))

    def poll(self):
        return None


def test_output_is_passed_on_while_the_pod_runs(cluster, kubelet, monkeypatch):
    """The pod's log is followed (the same get on pods/log): the first line reaches the
    watchers while the script still sleeps, and the result still comes from the log read at
    the end."""
    ended = []
    terminated = Kubelet.terminated

    def note_the_end(self, pod, *args, **kwargs):
        ended.append(time.monotonic())
        return terminated(self, pod, *args, **kwargs)

    monkeypatch.setattr(Kubelet, "terminated", note_the_end)
    kubelet(run_wrapper)
    watcher = Watcher()
    script = "import sys, time\nprint('first')\ntime.sleep(1.5)\nprint('oops', file=sys.stderr)\n"
    result = backend_for(cluster).run(spec(script), threading.Event(), watcher)
    assert (result.status, result.output, result.errors) == ("completed", "first\n", "oops\n")
    first = next(t for t, stream, text in watcher.seen if stream == "stdout" and "first" in text)
    assert ended and first < ended[0] - 0.5, (watcher.seen, ended)
    assert "".join(t for _, s, t in watcher.seen if s == "stdout") == "first\n"
    follows = [r for r in cluster.server.log_requests if r.get("follow") == "true"]
    assert len(follows) == 1 and "limitBytes" not in follows[0]
    assert_nothing_left(cluster)


def test_what_is_passed_on_live_is_held_to_the_output_cap(cluster, kubelet):
    kubelet(run_wrapper)
    watcher = Watcher()
    script = (
        "import time\nfor _ in range(4):\n    print('é' * 99)\ntime.sleep(1.5)\n"
        "for _ in range(50):\n    print('é' * 99)\n"
    )
    result = backend_for(cluster).run(spec(script, output_bytes=1000), threading.Event(), watcher)
    shown = "".join(text for _, _, text in watcher.seen)
    assert len(shown.encode()) <= 1000 and shown.startswith("é" * 99)
    assert (result.status, result.error_type) == ("failed", "output_limit")


def test_the_cpu_limit_is_a_timeout(cluster, kubelet):
    kubelet(run_wrapper)
    result = run(backend_for(cluster), spec("print('spin')\nwhile True: pass\n", cpu_time_s=1))
    assert (result.status, result.error_type) == ("timeout", "timeout")
    assert result.output == "spin\n"


def test_the_wall_limit_is_a_timeout(cluster, kubelet):
    kubelet(run_wrapper)
    result = run(
        backend_for(cluster), spec("import time\nprint('nap')\ntime.sleep(30)\n", wall_time_s=1)
    )
    assert (result.status, result.error_type) == ("timeout", "timeout")
    assert result.output == "nap\n"


def test_a_forged_result_line_does_not_count(cluster, kubelet):
    kubelet(run_wrapper)
    script = (
        "import os\n"
        "nonce = os.environ.get('INTEGR8S_NONCE', 'none')\n"
        "print(nonce + ':R:eyJleGl0X2NvZGUiOiAwfQ==')\n"  # {"exit_code": 0}
        "raise SystemExit(5)\n"
    )
    result = run(backend_for(cluster), spec(script))
    assert (result.exit_code, result.error_type) == (5, "script_error")
    assert result.output == "none:R:eyJleGl0X2NvZGUiOiAwfQ==\n"  # inside the envelope, harmless


# --- statuses a real kubelet writes -----------------------------------------------------------


def test_oom_killed_is_memory_limit_with_partial_output(cluster, kubelet):
    kubelet(scripted(lambda n: envelope(n, "O", b"allocating\n"), 137, "OOMKilled"))
    result = run(backend_for(cluster), spec("x = ' ' * 10**10\n"))
    assert (result.status, result.error_type, result.exit_code) == ("failed", "memory_limit", 137)
    assert result.output == "allocating\n"
    assert "128 MiB" in result.reason
    assert_nothing_left(cluster)


def test_exit_137_without_a_result_is_memory_limit(cluster, kubelet):
    kubelet(scripted(lambda n: envelope(n, "O", b"a\n"), 137, "Error"))
    result = run(backend_for(cluster), spec())
    assert result.error_type == "memory_limit"


def test_a_forged_result_is_ignored_when_the_wrapper_was_killed(cluster, kubelet):
    forged = lambda n: envelope(n, "R", b'{"exit_code": 0}')  # noqa: E731
    kubelet(scripted(forged, 137, "OOMKilled"))
    result = run(backend_for(cluster), spec())
    assert result.error_type == "memory_limit"


def test_deadline_exceeded_is_a_timeout(cluster, kubelet):
    kubelet(deadline_exceeded)
    result = run(backend_for(cluster), spec())
    assert (result.status, result.error_type) == ("timeout", "timeout")
    assert result.output == "tick\n"
    assert_nothing_left(cluster)


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff", "InvalidImageName"])
def test_an_image_that_cannot_be_pulled_is_a_system_error(cluster, kubelet, reason):
    kubelet(pending(reason, 'pull access denied for "python:9.9-slim"'))
    result = run(backend_for(cluster), spec())
    assert (result.status, result.error_type) == ("failed", "system_error")
    assert reason in result.reason and "image" in result.reason
    assert_nothing_left(cluster)


def test_an_unschedulable_pod_is_a_system_error(cluster, kubelet):
    kubelet(pending(unschedulable=True))
    result = run(backend_for(cluster), spec())
    assert (result.status, result.error_type) == ("failed", "system_error")
    assert "no node" in result.reason and "Insufficient memory" in result.reason
    assert_nothing_left(cluster)


def test_a_pod_that_never_starts_times_out_as_a_system_error(cluster, kubelet):
    kubelet(pending())
    began = time.monotonic()
    result = run(backend_for(cluster, start_timeout_s=1), spec())
    assert time.monotonic() - began < 5
    assert (result.status, result.error_type) == ("failed", "system_error")
    assert "did not start within 1 s" in result.reason
    assert_nothing_left(cluster)


def test_a_result_without_an_envelope_is_a_system_error(cluster, kubelet):
    kubelet(scripted(b"python3: can't open file '/integr8s/wrapper.py'\n", 2))
    result = run(backend_for(cluster), spec())
    assert (result.status, result.error_type) == ("failed", "system_error")
    assert "exit code 2" in result.reason


# --- cancel, watch resumption, log cap, reaper ------------------------------------------------


def test_cancel_deletes_the_pod_at_once(cluster, kubelet):
    kubelet(run_wrapper)
    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()
    began = time.monotonic()
    result = run(backend_for(cluster), spec("import time\ntime.sleep(4)\n", wall_time_s=5), cancel)
    assert result.status == "cancelled" and result.error_type == "cancelled"
    assert time.monotonic() - began < 3
    assert_nothing_left(cluster)


def test_the_watch_resumes_after_410_gone(cluster, kubelet):
    cluster.server.faults.append(Fault("WATCH", "pods", 410, times=2))
    kubelet(scripted(lambda n: envelope(n, "R", b'{"exit_code": 0}'), delay=0.3))
    result = run(backend_for(cluster), spec())
    assert result.status == "completed"
    assert len(cluster.requests("LIST", "pods")) >= 3  # listed again after each 410


def test_the_watch_resumes_after_a_dropped_connection(cluster, kubelet):
    cluster.server.faults.append(Fault("WATCH", "pods", 0, times=2))
    kubelet(scripted(lambda n: envelope(n, "R", b'{"exit_code": 0}'), delay=0.3))
    result = run(backend_for(cluster), spec())
    assert result.status == "completed"
    assert len(cluster.requests("WATCH", "pods")) >= 3


def test_the_watch_survives_a_transient_500(cluster, kubelet):
    cluster.server.faults.append(Fault("WATCH", "pods", 500, times=2))
    kubelet(scripted(lambda n: envelope(n, "R", b'{"exit_code": 0}'), delay=0.3))
    assert run(backend_for(cluster), spec()).status == "completed"


def test_logs_are_read_with_a_byte_cap(cluster, kubelet):
    huge = lambda n: envelope(n, "O", b"y" * 60_000) * 100  # noqa: E731
    kubelet(scripted(huge))
    s = spec(output_bytes=1024, files_bytes=1024)  # the cap has room for files too
    result = run(backend_for(cluster), s)
    assert cluster.server.log_requests[-1]["limitBytes"] == str(log_cap(s))
    assert (result.status, result.error_type) == ("failed", "output_limit")
    assert result.output_truncated


def test_the_reaper_deletes_only_this_installations_stale_runs(cluster):
    api = cluster.api()
    live_id, stale_id = (
        "aaaaaaaa-0000-4000-8000-000000000001",
        "bbbbbbbb-0000-4000-8000-000000000002",
    )
    mine = backend_for(cluster)
    theirs = backend_for(cluster, installation="someone-else")
    for b, run_id in ((mine, live_id), (mine, stale_id), (theirs, stale_id)):
        pod, cm = b.manifests(spec(run_id=run_id))
        api.create_namespaced_pod(NAMESPACE, pod)
        api.create_namespaced_config_map(NAMESPACE, cm)
    api.create_namespaced_pod(
        NAMESPACE,
        {"metadata": {"name": "unrelated"}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
    )
    assert mine.cleanup_stale({live_id}) == 2  # the stale pod and its ConfigMap
    left = {
        (
            o["metadata"]["labels"].get("integr8s/installation"),
            o["metadata"]["labels"].get("integr8s/execution-id"),
        )
        for o in cluster.live("pods") + cluster.live("configmaps")
        if o["metadata"].get("labels")
    }
    assert left == {("integr8s-test", live_id), ("someone-else", stale_id)}
    assert any(p["metadata"]["name"] == "unrelated" for p in cluster.live("pods"))


# --- API errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "words"),
    [(403, "not allowed"), (409, "already exists"), (500, "Kubernetes API failed")],
)
def test_pod_creation_errors_are_clear_system_errors(cluster, status, words):
    cluster.server.faults.append(Fault("CREATE", "pods", status))
    result = run(backend_for(cluster), spec())
    assert (result.status, result.error_type) == ("failed", "system_error")
    assert str(status) in result.reason and words in result.reason
    assert_nothing_left(cluster)


@pytest.mark.parametrize("status", [403, 500])
def test_config_map_errors_delete_the_pod(cluster, status):
    cluster.server.faults.append(Fault("CREATE", "configmaps", status))
    result = run(backend_for(cluster), spec())
    assert result.error_type == "system_error" and "ConfigMap" in result.reason
    assert_nothing_left(cluster)
    assert len(cluster.requests("DELETE", "pods")) == 1


def test_a_watch_forbidden_is_a_system_error_without_a_leak(cluster, kubelet):
    kubelet(pending())
    cluster.server.faults.append(Fault("WATCH", "pods", 403))
    result = run(backend_for(cluster), spec())
    assert result.error_type == "system_error" and "403" in result.reason
    assert_nothing_left(cluster)


def test_a_watch_that_keeps_failing_gives_up(cluster, kubelet):
    kubelet(pending())
    cluster.server.faults.append(Fault("WATCH", "pods", 500))
    result = run(backend_for(cluster), spec())
    assert result.error_type == "system_error" and "500" in result.reason
    assert_nothing_left(cluster)


def test_an_unreachable_api_is_a_system_error():
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = "http://127.0.0.1:9"  # discard port: connection refused
    configuration.retries = False
    b = KubernetesBackend(api=client.CoreV1Api(client.ApiClient(configuration)))
    result = run(b, spec())
    assert result.error_type == "system_error" and "unreachable" in result.reason


def test_no_configuration_is_a_system_error(monkeypatch, tmp_path):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    result = run(KubernetesBackend(), spec())
    assert result.error_type == "system_error" and "configuration" in result.reason


# --- the envelope parser ----------------------------------------------------------------------


def test_only_the_last_result_line_with_the_nonce_counts():
    log = (
        b"noise\n"
        + envelope("n1", "O", b"a")
        + envelope("other", "O", b"forged")
        + envelope("n1", "R", b'{"exit_code": 9}')
        + envelope("n1", "E", b"b")
        + b"n1:O:not base64!!\n"
        + envelope("n1", "R", b'{"exit_code": 0}')
    )
    out, err, result = parse_envelope(log, "n1")
    assert (out, err, result) == (b"a", b"b", {"exit_code": 0})


# --- files in and out -------------------------------------------------------------------------


def test_input_files_travel_as_binary_data_mounted_read_only(cluster, kubelet):
    seen = {}

    def scenario(k, pod):
        seen["pod"], seen["cm"] = pod, k.config_map(pod)
        run_wrapper(k, pod)

    kubelet(scenario)
    files = (("cities.csv", b"city\nLyon\n"), ("raw data.bin", bytes(range(256))))
    s = RunSpec(script="print(1)", runtime=RUNTIME, limits=Limits(), run_id="files-in", files=files)
    assert run(backend_for(cluster), s).status == "completed"
    cm, pod = seen["cm"], seen["pod"]
    assert {k: base64.b64decode(v) for k, v in cm["binaryData"].items()} == {
        "input-0": b"city\nLyon\n",
        "input-1": bytes(range(256)),
    }
    volumes = {v["name"]: v["configMap"] for v in pod["spec"]["volumes"] if "configMap" in v}
    assert volumes["inputs"]["items"] == [
        {"key": "input-0", "path": "cities.csv"},
        {"key": "input-1", "path": "raw data.bin"},
    ]
    assert [i["key"] for i in volumes["code"]["items"]] == [
        "wrapper.py", "script.py", "stdin", "integr8s_plots.py"
    ]  # fmt: skip
    mounts = {m["name"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["inputs"] == {"name": "inputs", "mountPath": "/tmp/inputs", "readOnly": True}


def test_input_files_past_a_config_maps_budget_are_a_system_error(cluster):
    big = (("big.bin", b"x" * (1024 * 1024)),)
    s = RunSpec(script="print(1)", runtime=RUNTIME, limits=Limits(), run_id="too-big", files=big)
    result = run(backend_for(cluster), s)
    assert (result.status, result.error_type) == ("failed", "system_error")
    assert "more than a pod's ConfigMap holds" in result.reason
    assert_nothing_left(cluster)


def test_output_files_come_back_through_the_log_within_the_caps(cluster, kubelet):
    def log(nonce):
        lines = [
            envelope(nonce, "F", b"a.txt\0al"),
            envelope(nonce, "F", b"a.txt\0pha"),
            envelope(nonce, "F", b"empty\0"),
            envelope(nonce, "F", b"../escape\0x"),  # a name the wrapper never sends: dropped
            envelope("not-the-nonce", "F", b"forged\0x"),
            envelope(nonce, "R", b'{"exit_code": 0, "files_capped": false}'),
        ]
        return b"".join(lines)

    kubelet(scripted(log))
    result = run(backend_for(cluster), spec())
    assert (result.status, result.error_type) == ("completed", None), result
    assert result.files == [("a.txt", b"alpha"), ("empty", b"")]


def test_output_files_are_held_to_the_caps_whatever_the_log_says(cluster, kubelet):
    def log(nonce):
        files = b"".join(envelope(nonce, "F", f"f{i}\0x".encode()) for i in range(5))
        return files + envelope(nonce, "R", b'{"exit_code": 0}')

    kubelet(scripted(log))
    result = run(backend_for(cluster), spec(output_files=3))
    assert [name for name, _ in result.files] == ["f0", "f1", "f2"]
    assert (result.status, result.error_type) == ("failed", "output_limit")


def test_the_script_gets_one_blas_thread_and_a_headless_matplotlib(cluster, kubelet):
    kubelet(run_wrapper)
    script = "import os\nprint(os.environ['OPENBLAS_NUM_THREADS'], os.environ['MPLBACKEND'])\n"
    result = run(backend_for(cluster), spec(script))
    assert result.output == "1 module://integr8s_plots\n", result  # Agg; show() saves PNGs


def test_the_follower_passes_on_only_this_run_s_envelope_lines(monkeypatch):
    """What the followed log carries besides the wrapper's lines for this run's nonce (another
    nonce, a line longer than any the wrapper writes, which is not kept while it grows) is
    dropped."""
    from executions.sandbox.kubernetes import live

    monkeypatch.setattr(live, "LONGEST_LINE", 64)
    nonce = "n0nce"
    good = envelope(nonce, "O", b"hello\n")

    class Response:
        def stream(self, amt=None, decode_content=False):
            yield envelope("other", "O", b"forged\n")
            yield b"x" * 100  # no newline: past LONGEST_LINE
            yield b"y" * 100 + b"\n" + good

        def release_conn(self):
            pass

    class Api:
        def read_namespaced_pod_log(self, *args, **kwargs):
            return Response()

    follower = live.LogFollower(Api(), NAMESPACE, "pod", nonce, 1000, 5).start()
    follower.thread.join(5)
    watcher = Watcher()
    follower.pass_on(watcher)
    assert [(stream, text) for _, stream, text in watcher.seen] == [("stdout", "hello\n")]
