import hashlib
import secrets
import unicodedata
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Self

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.signals import user_logged_in
from django.core.files.base import ContentFile
from django.db import connections, models, transaction
from django.db.models import Count, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce, Lower
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from executions.limits import Limits

if TYPE_CHECKING:
    from executions.sandbox import RunResult


class Status(models.TextChoices):
    """What a run is doing or how it ended: the one list of names and the words pages show.
    Execution.Status; ACTIVE, TERMINAL, the templates and the trigger's SQL derive from it."""

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    TIMEOUT = "timeout", "Timed out"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE: tuple[str, ...] = (Status.QUEUED, Status.RUNNING)
TERMINAL: tuple[str, ...] = tuple(s for s in Status if s not in ACTIVE)
# The session key under which this browser session's anonymous runs were recorded (kept in
# the server-side session data, so a client cannot claim another session's runs).
ANONYMOUS_RUNS = "anonymous_runs"


def submission_errors(script: str, python_version: str, stdin: str) -> dict[str, str]:
    """What is wrong with a submission, as {field: message a person can act on}; {} if fine.

    Shared by the API serializer and the editor form so both say the same thing.
    """
    from executions import limits, runtimes

    limit = limits.current()
    errors = {}

    def too_big(text: str, cap: int, what: str) -> str | None:
        size = len(text.encode("utf-8", "surrogatepass"))
        if size <= cap:
            return None
        return f"{what} is {limits.human_bytes(size)}; the limit is {limits.human_bytes(cap)}."

    if not isinstance(script, str) or not script.strip():
        errors["script"] = "The script is empty. Write or paste some Python code."
    elif problem := too_big(script, limit.script_bytes, "The script"):
        errors["script"] = problem
    if stdin and (problem := too_big(stdin, limit.stdin_bytes, "The input")):
        errors["stdin"] = problem
    if python_version:
        try:
            runtimes.get(python_version)
        except runtimes.UnknownVersion as exc:
            errors["python_version"] = str(exc)
    elif not runtimes.default_version():
        errors["python_version"] = "No Python version is available on this server."
    return errors


INPUT_NAME_MAX = 100  # InputFile.name's max_length


def input_name_problem(name: str) -> str | None:
    """Why name cannot be an input file's (it is one file in /tmp/inputs), or None."""
    if not name:
        return "A file has no name."
    if len(name) > INPUT_NAME_MAX:
        return f'"{name[:20]}…" is longer than {INPUT_NAME_MAX} characters.'
    if "/" in name or "\\" in name:
        return f"{name!r} has a path separator: give the file’s name only."
    if ".." in name or name == ".":
        return f'"{name}": a name may not be "." or hold "..".'
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        return f"{name!r} has a control character (NUL, a newline, ...)."
    return None


def input_file_errors(files: Sequence[tuple[str, bytes]]) -> dict[str, str]:
    """What is wrong with a run's input files [(name, contents)], as {"files": message}; {}
    if fine. The caps are the operator's (LIMIT_INPUT_FILES, LIMIT_INPUT_FILES_KB)."""
    from executions import limits

    limit = limits.current()
    problems = [p for p in (input_name_problem(name) for name, _ in files) if p]
    names = [name for name, _ in files]
    if twice := sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"Two files are called {', '.join(twice)}: each name once.")
    if len(files) > limit.input_files:
        problems.append(
            f"{len(files)} input files; the limit is {limit.input_files} files (LIMIT_INPUT_FILES)."
        )
    size = sum(len(data) for _, data in files)
    if size > limit.input_bytes:
        problems.append(
            f"The input files are {limits.human_bytes(size)} together; the limit is "
            f"{limits.human_bytes(limit.input_bytes)} (LIMIT_INPUT_FILES_KB)."
        )
    return {"files": " ".join(problems)} if problems else {}


def caller_of(fields: dict[str, Any]) -> str:
    """Who a run is queued for, as fair scheduling tells callers apart: a user, else an
    anonymous browser session, else an address."""
    owner = fields.get("owner")
    if owner is not None:
        return f"user:{owner.pk}"
    if fields.get("session_key"):
        return f"session:{fields['session_key']}"
    return f"ip:{fields.get('client_ip') or '-'}"


def operator_may(user: Any, permission: str) -> bool:
    """Operators are staff (they sign in to the admin) holding the permission. Only staff are
    asked: reading a user's permissions takes two queries, which every other signed-in
    request (most of them polls of a result) would pay for nothing."""
    return bool(user.is_authenticated and user.is_staff and user.has_perm(permission))


_NEXT_FAIR: dict[str, tuple[str, tuple]] = {}  # database alias -> next_fair's SQL


class ExecutionQuerySet(models.QuerySet["Execution"]):
    def with_file_flags(self) -> Self:
        """Whether each has output and input files, in the same query: most runs have none,
        and a result then reads no file table (ExecutionSerializer looks at the flags)."""
        return self.annotate(
            has_files=models.Exists(OutputFile.objects.filter(execution=models.OuterRef("pk"))),
            has_input_files=models.Exists(
                InputFile.objects.filter(execution=models.OuterRef("pk"))
            ),
        )

    def submit(
        self,
        script: str,
        python_version: str = "",
        stdin: str = "",
        limits: dict[str, float] | None = None,
        files: list[tuple[str, bytes]] | None = None,
        **fields: Any,
    ) -> "Execution":
        """Queue a run (call submission_errors(), input_file_errors() and
        limits.request_errors() first). limits: what the request asked for ({"memory_mb":
        256, ...}), the rest as in force now. files: input files, (name, contents). Fields:
        owner, session_key, ..."""
        from executions import metrics, runtimes
        from executions.limits import for_request

        version = python_version or runtimes.default_version()
        fields.setdefault("caller", caller_of(fields))
        values = dict(
            script=script,
            python_version=version,
            stdin=stdin or "",
            limits=for_request(limits).to_dict(),
            backend=settings.EXECUTION_BACKEND,
            **fields,
        )
        if files:
            # One transaction: no worker may claim the run before its files are there.
            with transaction.atomic():
                execution = self.create(**values)
                for name, data in files:
                    InputFile.objects.create(
                        execution=execution,
                        name=name,
                        size=len(data),
                        sha256=hashlib.sha256(data).hexdigest(),
                        file=ContentFile(data, name="input"),
                    )
        else:
            execution = self.create(**values)
        metrics.SUBMITTED.labels(python_version=version).inc()
        return execution  # on PostgreSQL a trigger wakes the workers (executions/notify.py)

    def for_caller(
        self,
        user: AbstractBaseUser | AnonymousUser | None,
        client_ip: str | None = None,
        session_key: str | None = None,
    ) -> Self:
        """Runs counted against one caller's quota: a user's, or an anonymous IP's."""
        if user is not None and user.is_authenticated:
            return self.filter(owner=user)
        if client_ip:
            return self.filter(owner=None, client_ip=client_ip)
        return self.filter(owner=None, session_key=session_key or "-")

    # --- who may see what: the one rule pages, API and admin apply ---------------------------

    def visible_to(self, request: HttpRequest) -> Self:
        """Runs this request may open (read, open in the editor, run again as its own run): a
        signed-in user's own; any anonymous run, whose UUID is its link; and every run for
        operators (staff with the view permission). Everyone else gets 404."""
        user = request.user
        if operator_may(user, "executions.view_execution"):
            return self.all()
        visible = Q(owner=None)
        if user.is_authenticated:
            visible |= Q(owner=user)
        return self.filter(visible)

    def owned_by(self, request: HttpRequest) -> Self:
        """This caller's own runs (history, Idempotency-Keys): a user's, or the anonymous runs
        of this browser session."""
        if request.user.is_authenticated:
            return self.filter(owner=request.user)
        # Reading the session loads it, which drops the key of a cookie naming no session.
        key = request.session.get(ANONYMOUS_RUNS) or request.session.session_key
        return self.filter(owner=None, session_key=key) if key else self.none()

    def controlled_by(self, request: HttpRequest) -> Self:
        """Runs this request may act on (cancel): its own, and every run for operators with
        the change permission."""
        if operator_may(request.user, "executions.change_execution"):
            return self.all()
        return self.owned_by(request)

    def adopt(self, session_key: str, user: AbstractBaseUser) -> int:
        """Give a browser session's anonymous runs to the account it signed in to. A key
        the account already used stays with the account's run: one owner, one run per key."""
        runs = self.filter(owner=None, session_key=session_key)
        used = self.filter(owner=user).exclude(idempotency_key="").values("idempotency_key")
        runs.filter(idempotency_key__in=used).update(idempotency_key="")
        return runs.update(owner=user, session_key="", caller=caller_of({"owner": user}))

    def queued(self) -> Self:
        return self.filter(status=Execution.Status.QUEUED)

    def running(self) -> Self:
        return self.filter(status=Execution.Status.RUNNING)

    def active(self) -> Self:
        return self.filter(status__in=ACTIVE)

    def terminal(self) -> Self:
        return self.filter(status__in=TERMINAL)

    def lease_expired(self, now: datetime | None = None) -> Self:
        return self.running().filter(lease_expires_at__lt=now or timezone.now())

    def claim(self, worker: str, lease_s: float, limit: int = 1) -> list["Execution"]:
        """Claim up to `limit` queued executions for `worker` (runworker's claim step), fairly:
        each claim takes the oldest queued run of the caller with the fewest runs in flight,
        so callers take turns (round robin) however many runs one of them queued.

        Each claim is a conditional UPDATE: exactly one changed row means it is ours, so any
        number of workers on SQLite or PostgreSQL can race without running anything twice.
        """
        claimed: list[Execution] = []
        misses = 0
        while len(claimed) < limit and misses < 4:
            pk = self.next_fair()
            if pk is None:
                break
            won = self._claim_one(pk, worker, lease_s)
            if won is None:
                misses += 1  # another worker got there first: look again
                continue
            claimed.append(won)
        return claimed

    def next_fair(self) -> int | None:
        """The id of the run to claim next, among all queued runs. The queued runs (a
        bounded set: submissions past MAX_QUEUED are refused) ordered by how many runs their
        caller has in flight, then by age; the count is a lookup in execution_running_caller_idx
        (status = running). The SQL is compiled once per database: a worker asks on every
        wake-up (on SQLite, every commit by anyone), and the ORM took ten times as long to
        build the query as the database to answer it."""
        sql, params = _NEXT_FAIR.get(self.db) or _NEXT_FAIR.setdefault(self.db, self._fair_sql())
        with connections[self.db].cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        return row[0] if row else None

    def _fair_sql(self) -> tuple[str, tuple]:
        in_flight = (
            Execution.objects.filter(status=Execution.Status.RUNNING, caller=OuterRef("caller"))
            .order_by()
            .values("caller")
            .annotate(n=Count("id"))
            .values("n")
        )
        first = (
            Execution.objects.using(self.db)
            .queued()
            .annotate(in_flight=Coalesce(Subquery(in_flight), 0))
            .order_by("in_flight", "created_at", "id")
            .values_list("id", flat=True)[:1]
        )
        return first.query.sql_with_params()

    def _claim_one(self, pk: int, worker: str, lease_s: float) -> "Execution | None":
        """UPDATE ... WHERE status = 'queued' RETURNING *: the conditional update and the
        claimed row in one round trip (the ORM's update() returns only a count). Both
        PostgreSQL and SQLite (3.35+) have RETURNING."""
        ops = connections[self.db].ops
        now = timezone.now()
        table = ops.quote_name(self.model._meta.db_table)
        sql = (
            f"UPDATE {table} SET status = %s, worker = %s, started_at = %s, updated_at = %s, "
            "lease_expires_at = %s, attempts = attempts + 1 "
            "WHERE id = %s AND status = %s RETURNING *"
        )
        when = [ops.adapt_datetimefield_value(t) for t in (now, now)]
        until = ops.adapt_datetimefield_value(now + timedelta(seconds=lease_s))
        params = [Execution.Status.RUNNING, worker, *when, until, pk, Execution.Status.QUEUED]
        rows = list(self.model.objects.using(self.db).raw(sql, params))
        return rows[0] if rows else None

    def recover_expired(self, max_attempts: int) -> tuple[int, int]:
        """Requeue runs whose worker vanished (lease expired); fail those lost max_attempts times.

        Returns (requeued, failed). Each write is conditional on the row still being the
        expired run we saw, so a late heartbeat from a slow (not dead) worker wins the race.
        """
        requeued = failed = 0
        now = timezone.now()
        for ex in self.lease_expired(now).only("id", "attempts", "lease_expires_at", "output"):
            same = self.filter(
                pk=ex.pk, status=Execution.Status.RUNNING, lease_expires_at=ex.lease_expires_at
            )
            if ex.attempts < max_attempts:
                requeued += same.update(
                    status=Execution.Status.QUEUED,
                    awaiting_input=False,
                    worker="",
                    lease_expires_at=None,
                    started_at=None,
                    updated_at=now,
                )
            else:
                failed += same.update(
                    status=Execution.Status.FAILED,
                    awaiting_input=False,
                    error_type=Execution.ErrorType.SYSTEM_ERROR,
                    reason=(
                        f"The worker running this script stopped unexpectedly "
                        f"{ex.attempts} times, so it was not tried again."
                    ),
                    finished_at=now,
                    updated_at=now,
                    lease_expires_at=None,
                )
        return requeued, failed


class Shareable(models.Model):
    """A read-only share link, turned on and off by the owner: an unguessable token (192
    random bits) in the URL, "" when not shared; turning it off breaks every earlier link."""

    share_token = models.CharField(max_length=64, blank=True, db_index=True)

    class Meta:
        abstract = True

    def share(self) -> None:
        if not self.share_token:
            self.share_token = secrets.token_urlsafe(24)
            self.save(update_fields=["share_token"])

    def unshare(self) -> None:
        if self.share_token:
            self.share_token = ""
            self.save(update_fields=["share_token"])


class Execution(Shareable):
    Status = Status

    class ErrorType(models.TextChoices):
        SCRIPT_ERROR = "script_error", "script error"
        TIMEOUT = "timeout"
        MEMORY_LIMIT = "memory_limit", "memory limit"
        OUTPUT_LIMIT = "output_limit", "output limit"
        PROCESS_LIMIT = "process_limit", "process limit"
        SYSTEM_ERROR = "system_error", "system error"
        CANCELLED = "cancelled"

    execution_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="executions",
    )
    # Anonymous runs are listed for the browser session that made them.
    session_key = models.CharField(max_length=64, blank=True, db_index=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    caller = models.CharField(max_length=100, blank=True, help_text="Fair scheduling's caller.")
    # stdin stays open after `stdin` for input sent while it runs, until its end is sent.
    interactive = models.BooleanField(default=False)
    # An interactive run's script is blocked reading its input now (the worker says, as it
    # changes): the page shows its input line only then.
    awaiting_input = models.BooleanField(
        default=False,
        help_text="Running, interactive, and its script waits for input now (POST .../input).",
    )

    script = models.TextField()
    python_version = models.CharField(max_length=10)
    stdin = models.TextField(blank=True)
    limits = models.JSONField(default=dict, help_text="The limits this run was held to.")
    backend = models.CharField(max_length=20, blank=True)

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    output = models.TextField(blank=True)
    errors = models.TextField(blank=True)
    output_truncated = models.BooleanField(default=False)
    errors_truncated = models.BooleanField(default=False)
    exit_code = models.IntegerField(null=True, blank=True)
    # null, not "": the API contract says error_type is null for a clean run.
    error_type = models.CharField(  # noqa: DJ001
        max_length=20, choices=ErrorType.choices, null=True, blank=True
    )
    reason = models.TextField(blank=True, help_text="Why the run ended as it did, in words.")
    wall_time_ms = models.PositiveIntegerField(null=True, blank=True)
    cpu_time_ms = models.PositiveIntegerField(null=True, blank=True)
    peak_memory_kb = models.PositiveIntegerField(null=True, blank=True)

    # Queue bookkeeping.
    worker = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries"
    )

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ExecutionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # runworker's claim step: oldest queued first.
            models.Index(
                fields=["created_at"],
                name="execution_queued_idx",
                condition=Q(status=Status.QUEUED),
            ),
            # runworker's recovery step: running rows whose lease ran out.
            models.Index(
                fields=["lease_expires_at"],
                name="execution_lease_idx",
                condition=Q(status=Status.RUNNING),
            ),
            # runworker's claim step: a caller's runs in flight (ExecutionQuerySet.next_fair).
            models.Index(
                fields=["caller"],
                name="execution_running_caller_idx",
                condition=Q(status=Status.RUNNING),
            ),
            models.Index(fields=["owner", "-created_at"], name="execution_owner_idx"),
            # throttling.check_submission: a caller's queued and running runs, on every submit.
            models.Index(
                fields=["owner", "client_ip"],
                name="execution_active_caller_idx",
                condition=Q(status__in=ACTIVE),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=~Q(idempotency_key="") & Q(owner__isnull=False),
                name="execution_idempotency_owner",
            ),
            # An anonymous key belongs to a browser session (see executions/api.py).
            models.UniqueConstraint(
                fields=["session_key", "idempotency_key"],
                condition=~Q(idempotency_key="") & Q(owner__isnull=True),
                name="execution_idempotency_session",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.execution_id} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("execution-detail", args=[self.execution_id])

    def get_share_url(self) -> str:
        return reverse("shared-execution", args=[self.share_token]) if self.share_token else ""

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def run_limits(self) -> Limits:
        return Limits.from_dict(self.limits)

    def _end(self, candidates: ExecutionQuerySet, **fields: Any) -> bool:
        """Write a final state if this row is still among candidates; True if this call won.

        Every terminal write goes through here, conditional on a non-terminal status, so a
        late or duplicate writer can never overwrite a result.
        """
        now = timezone.now()
        fields.update(finished_at=now, updated_at=now, lease_expires_at=None, awaiting_input=False)
        won = candidates.filter(pk=self.pk).update(**fields) == 1
        if won:
            for name, value in fields.items():
                setattr(self, name, value)
        return won

    def finish(self, result: "RunResult", worker: str | None = None) -> bool:
        """Store a sandbox RunResult. Only the worker holding the claim may write it."""
        candidates = Execution.objects.running()
        if worker is not None:
            candidates = candidates.filter(worker=worker)
        return self._end(
            candidates,
            status=result.status,
            exit_code=result.exit_code,
            error_type=result.error_type,
            output=result.output,
            errors=result.errors,
            output_truncated=result.output_truncated,
            errors_truncated=result.errors_truncated,
            wall_time_ms=result.wall_time_ms,
            cpu_time_ms=result.cpu_time_ms,
            peak_memory_kb=result.peak_memory_kb,
            reason=result.reason,
        )

    def cancel(self, by: str = "its owner") -> bool:
        """Cancel: a queued run ends now; a running one is flagged and its worker kills it."""
        if self._end(
            Execution.objects.queued(),
            status=Execution.Status.CANCELLED,
            error_type=Execution.ErrorType.CANCELLED,
            reason=f"Cancelled by {by} before it started.",
        ):
            return True
        changed = (
            Execution.objects.running()
            .filter(pk=self.pk)
            .update(cancel_requested=True, reason=f"Cancelled by {by}.")
        )
        if changed:
            self.cancel_requested = True
            self.reason = f"Cancelled by {by}."
        return bool(changed)

    def retry_problem(self) -> str | None:
        """Why this run cannot be run again, in words; None if it can. Pages, API and admin
        ask the same question."""
        if not self.is_terminal:
            return f"This execution is still {self.status}; wait for it to end or cancel it first."
        problems = submission_errors(self.script, self.python_version, self.stdin)
        problems |= input_file_errors(self.input_files_content())
        if problems:
            return "This execution cannot run again: " + " ".join(problems.values())
        return None

    def input_bytes(self) -> int:
        """Bytes of input this run was given: its stdin and what was sent while it ran, which
        one cap (its stdin limit) holds together, on the page and in the API."""
        texts = [self.stdin, *self.inputs.values_list("text", flat=True)]
        return sum(len(text.encode("utf-8", "surrogatepass")) for text in texts)

    def live_output(self) -> tuple[str, str]:
        """(stdout, stderr) so far: the printed chunks while it runs, the result once ended."""
        if self.status != Status.RUNNING:
            return self.output, self.errors
        streams: dict[str, list[str]] = {"stdout": [], "stderr": []}
        for stream, text in self.chunks.values_list("stream", "text"):
            streams[stream].append(text)
        return "".join(streams["stdout"]), "".join(streams["stderr"])

    def retry(self, **overrides: Any) -> "Execution":
        """A new queued execution running the same script, version and input."""
        fields: dict[str, Any] = dict(
            owner=self.owner,
            session_key=self.session_key,
            client_ip=self.client_ip,
            retry_of=self,
        )
        fields.update(overrides)
        return Execution.objects.submit(
            self.script,
            self.python_version,
            self.stdin,
            files=list(self.input_files_content()),
            **fields,
        )

    def input_files_content(self) -> tuple[tuple[str, bytes], ...]:
        """The run's input files as the sandbox takes them: (name, contents), by name."""
        found = []
        for item in self.input_files.all():
            with item.file.open("rb") as f:
                found.append((item.name, f.read()))
        return tuple(found)

    def input_digests(self) -> list[tuple[str, str]]:
        """(name, sha256) of each input file, by name: what tells two requests' files apart."""
        return list(self.input_files.values_list("name", "sha256"))


class SavedScript(Shareable):
    script_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="scripts"
    )
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, max_length=1000)
    script = models.TextField()
    python_version = models.CharField(max_length=10, blank=True)
    stdin = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [
            # Case-insensitive, the one rule form and API follow: "Foo" and "foo" are one name.
            models.UniqueConstraint(Lower("name"), "owner", name="savedscript_owner_name_ci"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("script-detail", args=[self.script_id])

    def get_share_url(self) -> str:
        return reverse("shared-script", args=[self.share_token]) if self.share_token else ""

    @classmethod
    def room_problem(cls, owner: Any) -> str | None:
        """Why owner may not save another script now (MAX_SAVED_SCRIPTS), in words; None if
        they may."""
        held = cls.objects.filter(owner=owner).count()
        if held >= settings.MAX_SAVED_SCRIPTS:
            return (
                f"You have {held} saved scripts, as many as an account keeps. Delete one you no "
                "longer need first."
            )
        return None

    @classmethod
    def name_taken(cls, owner: Any, name: str, other_than: int | None = None) -> bool:
        """Whether owner has another script of this name, compared as the constraint compares
        (lower() in the database), so form, API and constraint never disagree."""
        same = cls.objects.alias(key=Lower("name")).filter(owner=owner, key=Lower(Value(name)))
        if other_than is not None:
            same = same.exclude(pk=other_than)
        return same.exists()


class OutputChunk(models.Model):
    """Output of a running execution as it is printed, in small batches from its worker (live
    pages, the events stream, the result while it runs). Bounded by the run's output cap; the
    execution's own output and errors, written when it ends, are the result; the chunks go."""

    class Stream(models.TextChoices):
        STDOUT = "stdout"
        STDERR = "stderr"

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="chunks")
    seq = models.PositiveIntegerField()  # 1, 2, 3 ... per execution: the events' ids
    stream = models.CharField(max_length=6, choices=Stream.choices)
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["seq"]
        constraints = [
            models.UniqueConstraint(fields=["execution", "seq"], name="outputchunk_seq"),
        ]

    def __str__(self) -> str:
        return f"{self.execution_id} #{self.seq} {self.stream}"


def output_file_path(instance: "OutputFile", filename: str) -> str:
    return f"outputs/{instance.execution.execution_id}/{filename}"


class OutputFile(models.Model):
    """A file the script left in /tmp/outputs, kept with its execution (storage API)."""

    RASTER = ("image/png", "image/jpeg", "image/gif", "image/webp")  # shown inline

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="files")
    name = models.CharField(max_length=100)
    size = models.PositiveIntegerField()
    content_type = models.CharField(max_length=100)
    file = models.FileField(upload_to=output_file_path, max_length=300)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["execution", "name"], name="outputfile_name"),
        ]

    def __str__(self) -> str:
        return f"{self.execution_id}/{self.name}"

    @property
    def is_raster(self) -> bool:
        return self.content_type in self.RASTER


@receiver(post_delete, sender="executions.OutputFile", dispatch_uid="executions.drop_output_file")
@receiver(post_delete, sender="executions.InputFile", dispatch_uid="executions.drop_input_file")
def drop_stored_file(sender: type, instance: "OutputFile | InputFile", **kwargs: Any) -> None:
    """A run's files, out and in, go with their rows, however the rows go (an execution
    deleted, a purge)."""
    instance.file.delete(save=False)


def input_file_path(instance: "InputFile", filename: str) -> str:
    return f"inputs/{instance.execution.execution_id}/{filename}"


class InputFile(models.Model):
    """A file a run brought with it, read-only in /tmp/inputs (storage API). Stored under a
    name of the storage's choosing; `name` is the one the script sees."""

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="input_files")
    name = models.CharField(max_length=INPUT_NAME_MAX)
    size = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    file = models.FileField(upload_to=input_file_path, max_length=300)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["execution", "name"], name="inputfile_name"),
        ]

    def __str__(self) -> str:
        return f"{self.execution_id}/{self.name}"


class InputLine(models.Model):
    """Input sent to a running interactive execution, taken by its worker in order."""

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="inputs")
    text = models.TextField(blank=True)
    eof = models.BooleanField(default=False)  # the end of input: the script reads EOF
    created_at = models.DateTimeField(default=timezone.now)
    taken = models.BooleanField(default=False)

    class Meta:
        ordering = ["id"]
        indexes = [
            # runworker's heartbeat: input not yet taken for its interactive runs.
            models.Index(
                fields=["execution"], name="inputline_pending_idx", condition=Q(taken=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.execution_id} input {'EOF' if self.eof else len(self.text)}"


class Worker(models.Model):
    """A runworker process, seen through its heartbeat (for /readyz and the admin)."""

    name = models.CharField(max_length=100, unique=True)
    backend = models.CharField(max_length=20)
    concurrency = models.PositiveSmallIntegerField(default=1)
    in_flight = models.PositiveSmallIntegerField(default=0)
    started_at = models.DateTimeField(default=timezone.now)
    seen_at = models.DateTimeField(default=timezone.now, db_index=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-seen_at"]

    def __str__(self) -> str:
        return self.name


@receiver(user_logged_in, dispatch_uid="executions.adopt_anonymous_runs")
def adopt_anonymous_runs(
    sender: type, request: HttpRequest | None, user: Any, **kwargs: Any
) -> None:
    """Runs this browser made anonymously become the account's when it signs up or in."""
    session = getattr(request, "session", None)
    key = session.pop(ANONYMOUS_RUNS, None) if session is not None else None
    if key:
        Execution.objects.adopt(key, user)
