from django.contrib import admin, messages

from executions.models import Execution, SavedScript, Worker
from executions.throttling import check_queue

RESULT_FIELDS = [
    "execution_id",
    "status",
    "output",
    "errors",
    "output_truncated",
    "errors_truncated",
    "exit_code",
    "error_type",
    "reason",
    "wall_time_ms",
    "cpu_time_ms",
    "peak_memory_kb",
    "limits",
    "backend",
    "worker",
    "lease_expires_at",
    "attempts",
    "cancel_requested",
    "retry_of",
    "created_at",
    "started_at",
    "finished_at",
    "updated_at",
]


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    list_display = [
        "execution_id",
        "status",
        "error_type",
        "python_version",
        "owner",
        "created_at",
        "wall_time_ms",
        "exit_code",
    ]
    list_filter = ["status", "error_type", "python_version", "backend", "created_at"]
    search_fields = ["execution_id", "owner__username", "owner__email", "client_ip"]
    date_hierarchy = "created_at"
    list_select_related = ["owner"]
    # Results are the worker's, and what ran is history: operators look, cancel and retry.
    readonly_fields = [
        *RESULT_FIELDS,
        "owner",
        "session_key",
        "client_ip",
        "idempotency_key",
        "python_version",
        "script",
        "stdin",
    ]
    fieldsets = [
        (None, {"fields": ["execution_id", "status", "owner", "session_key", "client_ip"]}),
        ("What ran", {"fields": ["python_version", "script", "stdin", "limits", "backend"]}),
        (
            "Result",
            {
                "fields": [
                    "exit_code",
                    "error_type",
                    "reason",
                    "output",
                    "output_truncated",
                    "errors",
                    "errors_truncated",
                    "wall_time_ms",
                    "cpu_time_ms",
                    "peak_memory_kb",
                ]
            },
        ),
        (
            "Queue",
            {
                "classes": ["collapse"],
                "fields": [
                    "worker",
                    "lease_expires_at",
                    "attempts",
                    "cancel_requested",
                    "retry_of",
                    "idempotency_key",
                    "created_at",
                    "started_at",
                    "finished_at",
                    "updated_at",
                ],
            },
        ),
    ]
    actions = ["cancel_runs", "retry_runs"]

    def has_add_permission(self, request):
        return False  # runs are submitted through the site or the API, never typed in here

    def get_queryset(self, request):
        # The one access rule of pages and API: operators with the view permission see all.
        return Execution.objects.visible_to(request).select_related("owner")

    @admin.action(description="Cancel selected runs", permissions=["change"])
    def cancel_runs(self, request, queryset):
        chosen = queryset.count()
        mine = Execution.objects.controlled_by(request).filter(pk__in=queryset.values("pk"))
        cancelled = sum(ex.cancel(by="an operator") for ex in mine.active())
        self.message_user(request, f"Cancelled {cancelled} run(s).", messages.SUCCESS)
        if chosen - cancelled:
            self.message_user(
                request,
                f"{chosen - cancelled} run(s) had already ended and were left as they were.",
                messages.WARNING,
            )

    @admin.action(description="Retry selected runs (as new runs)", permissions=["change"])
    def retry_runs(self, request, queryset):
        """The same checks as "Run again" on the page and in the API (Execution.retry_problem):
        a run still going, or one whose version or size is no longer accepted, is skipped; so
        is every run past a full queue (MAX_QUEUED). The runs stay their owners' (an operator's
        own rate and caps do not apply)."""
        new, refused = [], []
        for ex in queryset:
            full = check_queue()
            problem = ex.retry_problem() or (full.message if full else None)
            if problem:
                refused.append(f"{ex.execution_id}: {problem}")
            else:
                new.append(ex.retry())
        self.message_user(request, f"Queued {len(new)} new run(s).", messages.SUCCESS)
        for why in refused:
            self.message_user(request, f"Not run again: {why}", messages.WARNING)


@admin.register(SavedScript)
class SavedScriptAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "python_version", "updated_at"]
    list_filter = ["python_version", "updated_at"]
    search_fields = ["name", "description", "script_id", "owner__username"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]
    readonly_fields = ["script_id", "created_at", "updated_at"]


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    """Workers register themselves by heartbeat; the admin only shows them."""

    list_display = [
        "name",
        "backend",
        "concurrency",
        "in_flight",
        "started_at",
        "seen_at",
        "stopped_at",
    ]
    list_filter = ["backend"]
    search_fields = ["name"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
