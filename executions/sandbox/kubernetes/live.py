"""Live output from a pod: its log followed while it runs.

The wrapper writes what the script prints as envelope lines as it goes (``<nonce>:O:<base64>``
for stdout, ``E`` for stderr). A LogFollower reads the pod's log with ``follow=true`` (the same
``get`` on ``pods/log`` the backend's final read needs: no more RBAC) in a thread of its own and
queues the script's text; the run's thread passes it on to Events. What is followed is a view
for watchers only: the result comes from the log read once the pod has ended, as before.
"""

import base64
import binascii
import codecs
import logging
import queue
import threading
from typing import Any

from executions.sandbox.contract import Events

log = logging.getLogger(__name__)

STREAMS = {b"O": "stdout", b"E": "stderr"}
# The wrapper's lines are a flush of output in base64 (~22 KiB); anything longer is not one of
# them, and is not kept while it grows.
LONGEST_LINE = 1 << 20


def envelope_line(line: bytes, prefix: bytes) -> tuple[bytes, bytes] | None:
    """(kind, data) of one of the wrapper's lines (``<nonce>:<kind>:<base64>``) for the nonce
    in prefix (``<nonce>:``); None for any other line."""
    if not line.startswith(prefix):
        return None
    kind, _, payload = line[len(prefix) :].partition(b":")
    try:
        return kind, base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None


class LogFollower:
    def __init__(self, api: Any, namespace: str, name: str, nonce: str, cap: int, longest_s: float):
        """Follows pod `name`'s log for at most `longest_s` of quiet (the run's longest); passes
        on at most `cap` bytes of text (the output cap, counted as the local backend counts it:
        on the text as it will be stored)."""
        self.api, self.namespace, self.name = api, namespace, name
        self.longest_s = longest_s
        self.prefix = nonce.encode() + b":"
        self.room = cap
        self.queue: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self.decoders = {kind: codecs.getincrementaldecoder("utf-8")("replace") for kind in STREAMS}
        self.stopped = threading.Event()
        self.response: Any = None
        self.thread = threading.Thread(target=self._run, name=f"follow-{name}", daemon=True)

    def start(self) -> "LogFollower":
        self.thread.start()
        return self

    def pass_on(self, events: Events) -> None:
        """Hand what was printed so far to events (from the run's thread)."""
        while True:
            try:
                stream, text = self.queue.get_nowait()
            except queue.Empty:
                return
            events.output(stream, text)

    def stop(self) -> None:
        self.stopped.set()
        response = self.response
        if response is not None:
            try:
                response.shutdown()  # unblocks a read waiting for more of the log
            except Exception:  # an older urllib3, or already closed
                pass
        self.thread.join(timeout=2)

    def _run(self) -> None:
        try:
            self.response = self.api.read_namespaced_pod_log(
                self.name,
                self.namespace,
                container="script",
                follow=True,
                _preload_content=False,
                _request_timeout=(5, self.longest_s),
            )
            pending = b""
            for chunk in self.response.stream(amt=None, decode_content=False):
                if self.stopped.is_set():
                    return
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    self._line(line)
                if len(pending) > LONGEST_LINE:
                    pending = b"-"  # the rest of this line is dropped too (no prefix)
        except Exception as exc:  # live output is a view: the result is read afterwards
            if not self.stopped.is_set():
                log.info("following the log of %s stopped: %s", self.name, exc)
        finally:
            if self.response is not None:
                try:
                    self.response.release_conn()
                except Exception:
                    pass

    def _line(self, line: bytes) -> None:
        found = envelope_line(line, self.prefix) if self.room > 0 else None
        if found is None or found[0] not in STREAMS:
            return
        kind, data = found
        text = self.decoders[kind].decode(data)
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > self.room:  # the rest is over the cap: what fits, whole characters
            text = text.encode("utf-8", "surrogatepass")[: self.room].decode("utf-8", "ignore")
            size = self.room
        self.room -= size
        if text:
            self.queue.put((STREAMS[kind], text))
