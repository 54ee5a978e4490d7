"""Locust load test of integr8s: people in the editor, signed-in users, API clients, readers.

`make load PROFILE=smoke HOST=http://127.0.0.1:8000` runs a named profile (tests/load/run.sh),
writes Locust's CSV and HTML reports, then checks the database (tests/load/check.py).
Run Locust from the repository root (the scripts module is imported as tests.load.scripts).

Each simulated user does what the real client does, request for request:

- EditorVisitor: an anonymous browser. Opens the editor, posts the run form the way HTMX does
  (form fields, csrfmiddlewaretoken and the X-CSRFToken header from <body hx-headers>, HX-*
  headers), then fetches the result partial as the page does (`hx-trigger="load delay:300ms"`)
  until the run ends. Looks at its history and loads examples now and then.
- SignedInUser: signs up once through the sign-up page, then runs scripts from the editor,
  saves them (the editor's Save, over HTMX), opens a saved one and runs it, reads its history.
- WaitingApiClient: anonymous JSON client, `POST /api/v1/execute?wait=true`.
- PollingApiClient: registers through `/api/v1/auth/register` (JWT), submits (202) and polls
  `GET /api/v1/result/<id>`; saves scripts through `/api/v1/scripts/` and runs them.
- Reader: registers, then reads `/api/v1/k8s-limits`, `/runtimes`, `/example-scripts` and its
  history.
- SmokeUser (the smoke profile only): one user walking every flow above in turn.

Scripts vary (tests/load/scripts.py): trivial, about a second of CPU, 300 KiB of output,
failing, timing out (rare). Every run's time from submission to its end, as the client saw it,
is reported as a request of type RUN named after the script's kind.

A 429 or 503 with Retry-After is a refusal the service is allowed to give under load: it
counts as a success under "<name> (refused 429|503)", and the user waits as it was told to.
Any other unexpected status is a failure "HTTP <code>: ...".

Each user sends X-Forwarded-For with an address of its own from 198.18.0.0/15 (the range set
aside for benchmarks, RFC 2544). A site run with BEHIND_PROXY=true then tells the users apart
as it would tell apart people behind a proxy (rate limits, fair scheduling); any other site
ignores the header and sees every user at the load generator's address.
"""

import itertools
import json
import random
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import gevent
from locust import FastHttpUser, User, between, constant, events, task

from tests.load import scripts

TERMINAL = ("completed", "failed", "timeout", "cancelled")
GIVE_UP_S = 120  # a user stops following a run after this long and counts a failure
REFUSAL_WAIT_CAP_S = 30  # honour Retry-After, up to this
TOKEN_REFRESH_S = 20 * 60  # JWT access tokens last 30 minutes by default (JWT_ACCESS_MINUTES)

RUN_TAG = uuid.uuid4().hex[:6]  # usernames of this load run: load-<tag>-<n>
user_numbers = itertools.count(1)
submitted_ids: list[str] = []

CSRF_HEADER = re.compile(r'hx-headers=\'\{"X-CSRFToken": "([^"]+)"\}\'')
CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
SELECTED_VERSION = re.compile(r'<option value="([^"]+)" selected>')
EXAMPLE_URL = re.compile(r'data-example-url="([^"]+)"')
STATUS = re.compile(r'data-status="([a-z]+)"')
POLL_DELAY = re.compile(r'hx-trigger="load delay:(\d+)ms"')
SAVED_SCRIPT = re.compile(r'href="/scripts/([0-9a-f-]{36})/"')
STATIC = re.compile(r'(?:src|href)="(/static/[^"]+\.(?:css|js))"')


@events.init_command_line_parser.add_listener
def _(parser):
    parser.add_argument(
        "--ids-file",
        default="",
        env_var="LOAD_IDS_FILE",
        help="Write the id of every accepted submission here, one a line (for the checker).",
    )


@events.quitting.add_listener
def _(environment, **kwargs):
    path = getattr(environment.parsed_options, "ids_file", "")
    if path:
        Path(path).write_text("".join(f"{i}\n" for i in submitted_ids))
    # Locust rewrites its CSV files once a second: let it do so once more now that every user
    # has stopped, or the last second's requests (and failures) would be missing from them.
    gevent.sleep(1.5)


def address(n: int) -> str:
    """The n-th address of 198.18.0.0/15."""
    n %= 2**17
    return f"198.{18 + (n >> 16)}.{(n >> 8) & 255}.{n & 255}"


class RunProblem(Exception):
    """A run that ended wrong, or that its user gave up waiting for."""


class Site(FastHttpUser):
    """What every simulated user shares: one request helper, refusals, runs followed to the end."""

    abstract = True
    wait_time = between(2, 6)
    # wait=true holds a request for up to twice (wall limit + margin) while the queue is long.
    network_timeout = 90.0
    connection_timeout = 30.0
    kinds: Iterator[scripts.Kind] | None = None  # SmokeUser sets a cycle through every kind

    def on_start(self) -> None:
        self.number = next(user_numbers)
        self.address = address(self.number)

    def next_kind(self) -> scripts.Kind:
        return next(self.kinds) if self.kinds is not None else scripts.pick()

    def send(self, method, path, *, name=None, expect=(200,), headers=None, **kwargs):
        """One request. The response if its status is one of `expect`; None for a refusal
        (after waiting as told) or a failure, both already counted."""
        name = name or path
        headers = {"X-Forwarded-For": self.address, **(headers or {})}
        with self.client.request(
            method, path, name=name, headers=headers, catch_response=True, **kwargs
        ) as response:
            code = response.status_code
            retry_after = (response.headers or {}).get("Retry-After", "")
            if code in expect:
                response.success()
                return response
            if code in (429, 503) and retry_after:
                response.request_meta["name"] = f"{name} (refused {code})"
                response.success()
            elif code == 0:
                response.failure(f"no response: {response.error!r}")
                return None
            else:
                body = " ".join((response.text or "").split())[:160]
                response.failure(f"HTTP {code}: {body}")
                return None
        wait = float(retry_after) if retry_after.isdigit() else 1.0
        gevent.sleep(min(wait, REFUSAL_WAIT_CAP_S))
        return None

    def send_json(self, method, path, **kwargs):
        """send(), then the body as JSON (None, counted as a failure, if it is not JSON)."""
        response = self.send(method, path, **kwargs)
        if response is None:
            return None, None
        try:
            return response, response.json()
        except ValueError:
            self.report("CHECK", "JSON body", f"{path}: {response.status_code} without JSON")
            return None, None

    def report(self, request_type: str, name: str, problem: str, started: float = 0) -> None:
        """An entry of our own in the statistics: RUN for a run's time from submission to its
        end (as this client saw it), CHECK for an answer that is not what the page sends."""
        self.environment.events.request.fire(
            request_type=request_type,
            name=name,
            response_time=(time.monotonic() - started) * 1000 if started else 0,
            response_length=0,
            exception=RunProblem(problem) if problem else None,
            context={},
        )

    def ended(self, kind: scripts.Kind, started: float, status: str, **seen) -> None:
        self.report("RUN", kind.name, scripts.wrong(kind, status, **seen), started)

    def gave_up(self, kind: scripts.Kind, started: float, status: str) -> None:
        self.report("RUN", kind.name, f"gave up after {GIVE_UP_S} s: still {status}", started)

    def submitted(self, execution_id: str) -> None:
        submitted_ids.append(execution_id)


# --- people in the browser ---------------------------------------------------------------


class Browser(Site):
    """A browser on the site's pages: cookies, the page's CSRF token, HTMX's headers."""

    abstract = True

    def on_start(self) -> None:
        super().on_start()
        self.csrf = ""
        self.version = ""
        self.examples: list[str] = []
        self.static_loaded = False

    def page(self, path: str, name: str | None = None):
        """GET a full page and keep what the browser would use from it."""
        response = self.send("GET", path, name=name)
        if response is None:
            return None
        text = self.seen(response.text or "")
        if not self.static_loaded:
            # A first visit fetches the page's CSS and scripts; later ones have them cached.
            self.static_loaded = True
            for asset in dict.fromkeys(STATIC.findall(text)):
                self.send("GET", asset, name="/static/[asset]")
        return response

    def seen(self, text: str) -> str:
        """Keep the CSRF token, the selected Python version and the examples' links."""
        if found := CSRF_HEADER.search(text) or CSRF_FIELD.search(text):
            self.csrf = found.group(1)
        if found := SELECTED_VERSION.search(text):
            self.version = found.group(1)
        self.examples = EXAMPLE_URL.findall(text) or self.examples
        return text

    def htmx(self, target: str, trigger: str = "", current: str = "/") -> dict[str, str]:
        """The headers htmx adds (and the browser's Origin, which Django's CSRF check reads)."""
        headers = {
            "HX-Request": "true",
            "HX-Current-URL": self.host.rstrip("/") + current,
            "HX-Target": target,
            "X-CSRFToken": self.csrf,
            "Origin": self.host.rstrip("/"),
        }
        if trigger:
            headers["HX-Trigger"] = trigger
        return headers

    def form(self, **fields: str) -> dict[str, str]:
        """The run form as htmx serialises it (every field of <form id="run-form">)."""
        return {"csrfmiddlewaretoken": self.csrf, "python_version": self.version, **fields}

    def run_in_editor(self, kind: scripts.Kind, current: str = "/", **extra: str) -> None:
        """Press Run: POST /run over HTMX, then follow the result partial to the end."""
        started = time.monotonic()
        response = self.send(
            "POST",
            "/run",
            name="/run (htmx)",
            data=self.form(script=kind.script, stdin="", **extra),
            headers=self.htmx("result", "run-form", current),
        )
        if response is None:
            return
        try:
            trigger = json.loads(response.headers.get("HX-Trigger") or "{}")
            execution_id = trigger["execution-submitted"]["execution_id"]
        except (ValueError, KeyError, TypeError):
            self.report("CHECK", "HX-Trigger", "POST /run answered without execution-submitted")
            return
        self.submitted(execution_id)
        self.follow_partial(kind, execution_id, response.text or "", started, current)

    def follow_partial(
        self, kind: scripts.Kind, execution_id: str, html: str, started: float, current: str
    ) -> None:
        """As the page does: while the live part of the result asks (#live: hx-get, `load
        delay:<ms>`), wait that long and fetch it again, as htmx does (HX-Target: live)."""
        url = f"/executions/{execution_id}/"
        while True:
            found = STATUS.search(html)
            status = found.group(1) if found else "unknown"
            if status in TERMINAL:
                self.ended(kind, started, status)
                return
            if time.monotonic() - started > GIVE_UP_S:
                self.gave_up(kind, started, status)
                return
            delay = POLL_DELAY.search(html)
            gevent.sleep(int(delay.group(1)) / 1000 if delay else 0.3)
            response = self.send(
                "GET",
                url,
                name="/executions/[id]/ (htmx poll)",
                headers=self.htmx("live", "live", current),
            )
            if response is None:
                return
            html = response.text or ""


class EditorVisitor(Browser):
    """Anonymous: the editor, Run, the live result; history and examples now and then."""

    weight = 3

    def on_start(self) -> None:
        super().on_start()
        self.page("/", name="/ (editor)")

    @task(6)
    def run_script(self) -> None:
        if not self.csrf or random.random() < 0.3:
            self.page("/", name="/ (editor)")  # a fresh visit
        self.run_in_editor(self.next_kind())

    @task(1)
    def history(self) -> None:
        self.page("/executions/", name="/executions/ (history)")

    @task(1)
    def example(self) -> None:
        if self.examples:
            # The examples menu fetches one as JSON.
            self.send("GET", random.choice(self.examples), name="/examples/[slug]")


class SignedInUser(Browser):
    """Signs up on the page once, then runs, saves and reopens scripts in the editor."""

    weight = 2

    def on_start(self) -> None:
        super().on_start()
        self.username = ""
        self.saved: list[str] = []
        self.sign_up()

    def sign_up(self) -> None:
        if self.page("/accounts/signup/", name="/accounts/signup/") is None:
            return
        username = f"load-{RUN_TAG}-{self.number}"
        password = secrets.token_urlsafe(12)
        fields = {
            "csrfmiddlewaretoken": self.csrf,
            "username": username,
            "email": f"{username}@example.com",
            "password1": password,
            "password2": password,
        }
        # 302 to the editor, which the client follows.
        response = self.send(
            "POST",
            "/accounts/signup/",
            name="/accounts/signup/",
            data=fields,
            headers={"Origin": self.host.rstrip("/")},
        )
        if response is None:
            return
        text = response.text or ""
        if "Signed in as" not in text:
            self.report("CHECK", "sign-up", "the sign-up page did not sign the user in")
            return
        self.username = username
        self.seen(text)  # the editor, with a new CSRF token (Django rotates it at sign-in)

    @task(4)
    def run_script(self) -> None:
        if not self.username:
            return self.sign_up()
        if not self.csrf or random.random() < 0.3:
            self.page("/", name="/ (editor)")
        self.run_in_editor(self.next_kind(), name="", description="")

    @task(2)
    def save_and_run(self) -> None:
        """Save the editor's script (Save, over HTMX), open it again, press Run."""
        if not self.username:
            return self.sign_up()
        if self.page("/", name="/ (editor)") is None:
            return
        kind = self.next_kind()
        name = f"{kind.name} {len(self.saved) + 1} {uuid.uuid4().hex[:4]}"
        response = self.send(
            "POST",
            "/scripts/",
            name="/scripts/ (htmx save)",
            data=self.form(script=kind.script, stdin="", name=name, description="load test"),
            headers=self.htmx("save-status"),
        )
        found = SAVED_SCRIPT.search(response.text or "") if response is not None else None
        if found is None:
            if response is not None:
                self.report("CHECK", "saved script", "the save answer links no saved script")
            return
        script_id = found.group(1)
        self.saved.append(script_id)
        current = f"/?script={script_id}"
        if self.page(current, name="/?script=[id] (editor)") is not None:
            self.run_in_editor(kind, current, name=name, description="load test")

    @task(1)
    def history(self) -> None:
        if self.page("/executions/", name="/executions/ (history)") is None:
            return
        # The status filter, which swaps the list over HTMX.
        self.send(
            "GET",
            "/executions/?status=completed&version=",
            name="/executions/?status= (htmx filter)",
            headers=self.htmx("history-list", current="/executions/"),
        )

    @task(1)
    def saved_scripts(self) -> None:
        if self.username:
            self.page("/scripts/", name="/scripts/ (saved scripts)")


# --- programs on the API -----------------------------------------------------------------


class ApiClient(Site):
    abstract = True

    def on_start(self) -> None:
        super().on_start()
        self.version = ""
        self.access = self.refresh = ""
        self.token_at = 0.0
        self.versions: list[str] = []

    def api(self, method: str, path: str, **kwargs):
        headers = kwargs.pop("headers", {})
        if self.access:
            if time.monotonic() - self.token_at > TOKEN_REFRESH_S:
                self.refresh_token()
            headers["Authorization"] = f"Bearer {self.access}"
        return self.send_json(method, path, headers=headers, **kwargs)

    def has_session(self) -> bool:
        return any(cookie.name == "sessionid" for cookie in self.client.cookiejar)

    def register(self) -> None:
        username = f"load-{RUN_TAG}-{self.number}"
        _, body = self.send_json(
            "POST",
            "/api/v1/auth/register",
            json={"username": username, "password": secrets.token_urlsafe(12)},
            expect=(201,),
        )
        if body:
            self.access, self.refresh = body["access"], body["refresh"]
            self.token_at = time.monotonic()

    def refresh_token(self) -> None:
        self.token_at = time.monotonic()  # one try per period, even if it fails
        _, body = self.send_json(
            "POST", "/api/v1/auth/token/refresh", json={"refresh": self.refresh}
        )
        if body:
            self.access = body["access"]
            self.refresh = body.get("refresh", self.refresh)  # when refresh tokens rotate

    def pick_version(self) -> str:
        """Mostly the default (""), sometimes any version the site offers."""
        if not self.version:
            _, body = self.api("GET", "/api/v1/runtimes")
            self.versions = [v["version"] for v in (body or {}).get("versions", [])]
            self.version = "default"
        if self.versions and random.random() < 0.2:
            return random.choice(self.versions)
        return ""

    def poll(self, kind: scripts.Kind, execution_id: str, body: dict, started: float) -> None:
        """GET /api/v1/result/<id> until the run ends."""
        while body.get("status") not in TERMINAL:
            if time.monotonic() - started > GIVE_UP_S:
                return self.gave_up(kind, started, body.get("status", "unknown"))
            gevent.sleep(random.uniform(0.2, 0.5))
            _, body = self.api("GET", f"/api/v1/result/{execution_id}", name="/api/v1/result/[id]")
            if body is None:
                return
        self.ended(
            kind,
            started,
            body["status"],
            exit_code=body.get("exit_code"),
            error_type=body.get("error_type"),
            output=body.get("output"),
        )

    def execute(self, kind: scripts.Kind, script: str, wait: bool) -> None:
        started = time.monotonic()
        path = "/api/v1/execute?wait=true" if wait else "/api/v1/execute"
        headers = {}
        # Half the clients retry safely. An anonymous caller's key belongs to its session, so
        # it sends one only once an earlier answer has set the session cookie.
        if random.random() < 0.5 and (self.access or self.has_session()):
            headers["Idempotency-Key"] = uuid.uuid4().hex
        _, body = self.api(
            "POST",
            path,
            json={"script": script, "python_version": self.pick_version()},
            headers=headers,
            expect=(200, 202) if wait else (202,),
        )
        if body is None:
            return
        self.submitted(body["execution_id"])
        # wait=true answers 202 with the current state when the run did not end in time.
        self.poll(kind, body["execution_id"], body, started)


class WaitingApiClient(ApiClient):
    """Anonymous, like README's curl: POST /api/v1/execute?wait=true."""

    weight = 2

    @task
    def run_and_wait(self) -> None:
        kind = self.next_kind()
        self.execute(kind, kind.script, wait=True)


class PollingApiClient(ApiClient):
    """Registered (JWT): submit, poll the result; save scripts through the API and run them."""

    weight = 2

    def on_start(self) -> None:
        super().on_start()
        self.register()

    @task(5)
    def submit_and_poll(self) -> None:
        if not self.access:
            return self.register()
        kind = self.next_kind()
        self.execute(kind, kind.script, wait=False)

    @task(2)
    def save_and_run(self) -> None:
        if not self.access:
            return self.register()
        kind = self.next_kind()
        name = f"{kind.name} {uuid.uuid4().hex[:8]}"
        _, saved = self.api(
            "POST",
            "/api/v1/scripts/",
            json={"name": name, "script": kind.script, "description": "load test"},
            expect=(201,),
        )
        if saved is None:
            return
        self.api("GET", "/api/v1/scripts/")
        _, saved = self.api(
            "GET", f"/api/v1/scripts/{saved['script_id']}/", name="/api/v1/scripts/[id]/"
        )
        if saved is not None:
            self.execute(kind, saved["script"], wait=False)

    @task(1)
    def history(self) -> None:
        if self.access:
            self.api("GET", "/api/v1/executions/")


class Reader(ApiClient):
    """Registered (JWT), mostly reading: limits, runtimes, examples, its own history."""

    weight = 1

    def on_start(self) -> None:
        super().on_start()
        self.register()
        if self.access:
            kind = scripts.KINDS["trivial"]  # one run of its own, so its history is not empty
            self.execute(kind, kind.script, wait=True)

    @task(3)
    def limits(self) -> None:
        self.api("GET", "/api/v1/k8s-limits")

    @task(3)
    def runtimes(self) -> None:
        self.api("GET", "/api/v1/runtimes")

    @task(1)
    def examples(self) -> None:
        self.api("GET", "/api/v1/example-scripts")

    @task(2)
    def history(self) -> None:
        if not self.access:
            return self.register()
        self.api("GET", "/api/v1/executions/")
        self.api("GET", "/api/v1/executions/?status=completed", name="/api/v1/executions/?status=")

    @task(1)
    def me(self) -> None:
        if self.access:
            self.api("GET", "/api/v1/auth/me")


PERSONAS = [EditorVisitor, SignedInUser, WaitingApiClient, PollingApiClient, Reader]


class SmokeUser(User):
    """The smoke profile: one user who walks every flow of every persona in turn, with the
    script kinds taken in turn too, so one pass touches every page, endpoint and kind."""

    wait_time = constant(1)

    def on_start(self) -> None:
        kinds = itertools.cycle(scripts.KINDS.values())
        self.personas = []
        for persona_class in PERSONAS:
            persona_class.host = self.environment.host
            persona = persona_class(self.environment)
            persona.kinds = kinds
            persona.on_start()
            self.personas.append(persona)

    @task
    def walk(self) -> None:
        for persona in self.personas:
            for flow in dict.fromkeys(persona.tasks):  # each flow once, whatever its weight
                flow(persona)
