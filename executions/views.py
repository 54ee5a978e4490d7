"""Pages for people: the editor, live results, history and saved scripts.

Each page is one template; the fragments HTMX swaps are {% partialdef %}s in it, rendered as
"page.html#name" when request.htmx. Every page works without JavaScript too.
"""

import uuid
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django_htmx.http import push_url, reswap, retarget, trigger_client_event
from django_htmx.middleware import HtmxDetails

from accounts.models import User
from executions import examples, limits, runtimes
from executions.forms import (
    HistoryFilter,
    InputForm,
    RenameScriptForm,
    RunForm,
    SaveScriptForm,
    ShareForm,
)
from executions.models import Execution, InputLine, SavedScript
from executions.throttling import caller_fields, check_submission

PAGE_SIZE = 20
STARTER_SCRIPT = (
    "# Write Python here, then press Run (Ctrl+Enter).\n"
    "import sys\n\n"
    'print(f"Hello from Python {sys.version.split()[0]}!")\n'
)


class HtmxHttpRequest(HttpRequest):
    """A request through HtmxMiddleware, which sets request.htmx."""

    htmx: HtmxDetails


class AuthenticatedHttpRequest(HtmxHttpRequest):
    """A request that @login_required let through: its user is never anonymous."""

    user: User


# --- who may see what: Execution.objects.visible_to() and controlled_by(), as in the API --


def can_control(request: HttpRequest, execution: Execution) -> bool:
    """Cancel rights: the owner, the browser session that started an anonymous run, or an
    operator."""
    return Execution.objects.controlled_by(request).filter(pk=execution.pk).exists()


def current_path(request: HtmxHttpRequest) -> str:
    """The path of the page an HTMX request came from, or "" (HX-Current-URL is the client's
    to write: "http://[" is no URL, and must not be a 500)."""
    try:
        return urlsplit(request.htmx.current_url or "").path
    except ValueError:
        return ""


def parse_uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise Http404("No such id.") from None


# --- examples -----------------------------------------------------------------------------


def find_example(slug: str) -> dict[str, Any]:
    found = examples.get(slug)
    if found is None:
        raise Http404("No such example.")
    return found


@require_safe
def example(request: HttpRequest, slug: str) -> JsonResponse:
    """One example as JSON, for the editor's examples menu."""
    found = find_example(slug)
    return JsonResponse(
        {
            "slug": found["slug"],
            "title": found["title"],
            "description": found.get("description", ""),
            "python_version": found.get("python_version", ""),
            "script": found["script"],
        }
    )


# --- editor and runs ----------------------------------------------------------------------


def editor_initial(request: HttpRequest) -> dict[str, Any]:
    """What the editor opens with: ?from=<execution>, ?script=<saved script>, ?example=<slug>."""
    if "from" in request.GET:
        source = get_object_or_404(
            Execution.objects.visible_to(request), execution_id=parse_uuid(request.GET["from"])
        )
        return {
            "script": source.script,
            "python_version": source.python_version,
            "stdin": source.stdin,
            "execution": source,
        }
    if "script" in request.GET:
        if not request.user.is_authenticated:
            raise Http404("No such script.")
        saved = get_object_or_404(request.user.scripts, script_id=parse_uuid(request.GET["script"]))
        return {
            "script": saved.script,
            "python_version": saved.python_version,
            "stdin": saved.stdin,
            "saved": saved,
        }
    if "shared-run" in request.GET:
        run = get_object_or_404(Execution, share_token=request.GET["shared-run"] or "-")
        return {"script": run.script, "python_version": run.python_version, "stdin": run.stdin}
    if "shared-script" in request.GET:
        shared = get_object_or_404(SavedScript, share_token=request.GET["shared-script"] or "-")
        return {
            "script": shared.script,
            "python_version": shared.python_version,
            "stdin": shared.stdin,
        }
    if "example" in request.GET:
        found = find_example(request.GET["example"])
        return {"script": found["script"], "python_version": found.get("python_version", "")}
    return {"script": STARTER_SCRIPT, "python_version": ""}


def input_caps() -> str:
    lim = limits.current()
    return f"{lim.input_files} files, {limits.human_bytes(lim.input_bytes)} together"


def packages_context(version: str) -> dict[str, Any]:
    """The package set the editor shows for version: what GET /api/v1/runtimes lists (local
    backend only: a pod has its image's packages)."""
    local = settings.EXECUTION_BACKEND == "local"
    return {
        "packages_version": version,
        "packages_local": local,
        "packages": runtimes.packages(version) if local and version in runtimes.versions() else [],
    }


def editor_context(request: HttpRequest, form: RunForm, **extra: Any) -> dict[str, Any]:
    version = form["python_version"].value() or runtimes.default_version()
    return {
        "form": form,
        **packages_context(version),
        "versions": runtimes.versions(),
        "selected_version": version,
        "limits": limits.current().describe(),
        "input_caps": input_caps(),
        "examples": examples.EXAMPLES,
        **extra,
    }


@require_safe
def editor(request: HttpRequest) -> HttpResponse:
    initial = editor_initial(request)
    form = RunForm(initial=initial)
    source = initial.get("execution")
    context = editor_context(
        request,
        form,
        saved=initial.get("saved"),
        **(result_context(request, source) if source is not None else {}),
    )
    return render(request, "executions/editor.html", context)


@require_safe
def editor_packages(request: HtmxHttpRequest) -> HttpResponse:
    """The editor's package list for another Python version (the version picker asks)."""
    version = request.GET.get("python_version") or runtimes.default_version()
    return render(request, "executions/editor.html#packages", packages_context(version))


def editor_errors(request: HtmxHttpRequest, form: RunForm, status: int = 400) -> HttpResponse:
    """Bad input or a refusal: the message next to the editor, never an error page."""
    if request.htmx:
        response = render(
            request, "executions/editor.html#form-errors", {"form": form}, status=status
        )
        return reswap(retarget(response, "#form-errors"), "outerHTML")
    return render(request, "executions/editor.html", editor_context(request, form), status=status)


@require_POST
def run(request: HtmxHttpRequest) -> HttpResponse:
    if problem := limits.body_too_big(request.META.get("CONTENT_LENGTH")):
        form = RunForm()  # nothing of the body is read
        form.cleaned_data = {}
        form.add_error(None, problem)
        return editor_errors(request, form, status=413)
    form = RunForm(request.POST, request.FILES)
    if not form.is_valid():
        return editor_errors(request, form, status=400)
    refusal = check_submission(request)
    if refusal:
        form.add_error(None, refusal.message)
        return refusal.refuse(editor_errors(request, form))
    data = form.cleaned_data
    execution = Execution.objects.submit(
        data["script"],
        data["python_version"],
        data["stdin"],
        limits=form.asked_limits(),
        files=form.input_files(),
        interactive=data["interactive"],
        **caller_fields(request),
    )
    if not request.htmx:
        return redirect(execution)
    response = render(
        request, "executions/editor.html#run-response", result_context(request, execution)
    )
    return trigger_client_event(
        response, "execution-submitted", {"execution_id": str(execution.execution_id)}
    )


def live_console(execution: Execution) -> list[tuple[str, str]] | None:
    """What a run printed so far, and the input typed into it, in the order they came:
    [(stream, text), ...] with stream stdout, stderr or input. None once the run ended: the
    result (stdout, then stderr) is the truth then, and the printed chunks are gone."""
    if execution.is_terminal:
        return None
    pieces = [(c.created_at, 0, c.seq, c.stream, c.text) for c in execution.chunks.all()]
    if execution.interactive:
        pieces += [
            (line.created_at, 1, line.pk, "input", "^D\n" if line.eof else line.text)
            for line in execution.inputs.all()
        ]
    return [(stream, text) for *_, stream, text in sorted(pieces)]


def result_context(request: HttpRequest, execution: Execution, **extra: Any) -> dict[str, Any]:
    """What the result's parts are rendered with. Who may control or share the run, and
    whether its input is open, are each a query asked only by the template that shows them
    (once): the live part, which a running run's page polls a few times a second, needs none
    of them."""
    context = {
        "execution": execution,
        "can_control": cache(lambda: can_control(request, execution)),
        "owns": cache(lambda: Execution.objects.owned_by(request).filter(pk=execution.pk).exists()),
        "console": live_console(execution),
        "result_url": execution.get_absolute_url(),
        "sent_input": execution.inputs.filter(eof=False) if execution.interactive else (),
        "input_open": cache(
            lambda: (
                execution.interactive
                and not execution.is_terminal
                and not execution.inputs.filter(eof=True).exists()
            )
        ),
        "share_form": ShareForm(),
        **extra,
    }
    return context


def render_result(
    request: HtmxHttpRequest, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    """The result panel. HTMX's poll of its live part (#live) gets that part while the run
    goes, and, once it ended, the whole panel in its place, announced to screen readers."""
    page = "executions/execution_detail.html"
    if not request.htmx:
        return render(request, page, context, status=status)
    if request.htmx.target == "live":
        if not context["execution"].is_terminal:
            return render(request, page + "#live", context, status=status)
        response = render(request, page + "#ended", context, status=status)
        return reswap(retarget(response, "#result"), "outerHTML")
    return render(request, page + "#result", context, status=status)


@require_safe
def execution_detail(request: HtmxHttpRequest, execution_id: uuid.UUID) -> HttpResponse:
    execution = get_object_or_404(Execution.objects.visible_to(request), execution_id=execution_id)
    return render_result(request, result_context(request, execution))


@require_safe
def shared_execution(request: HtmxHttpRequest, token: str) -> HttpResponse:
    """A shared run, read-only, for anyone with the link."""
    execution = get_object_or_404(Execution, share_token=token)
    context = result_context(request, execution, shared=True, can_control=False, owns=False)
    context["result_url"] = execution.get_share_url()
    return render_result(request, context)


@require_POST
def execution_input(request: HtmxHttpRequest, execution_id: uuid.UUID) -> HttpResponse:
    """A line typed into a running interactive run (or its end), for its worker to hand on."""
    execution = get_object_or_404(
        Execution.objects.controlled_by(request), execution_id=execution_id
    )
    form = InputForm(
        request.POST, sent=execution.input_bytes(), cap=execution.run_limits.stdin_bytes
    )
    if (
        execution.is_terminal
        or not execution.interactive
        or execution.inputs.filter(eof=True).exists()
    ):
        problem = (
            "This run has ended, so it takes no more input."
            if execution.is_terminal
            else "This run's input has ended."
            if execution.interactive
            else "This run was not started as interactive, so it takes no input while it runs."
        )
        if not request.htmx:
            messages.error(request, problem)
            return redirect(execution)
        context = result_context(request, execution, problem=problem)
        response = render(request, "executions/execution_detail.html#result", context, status=409)
        return reswap(retarget(response, "#result"), "outerHTML")
    if not form.is_valid():
        context = result_context(request, execution, input_form=form)
        if request.htmx:
            response = render(
                request, "executions/execution_detail.html#input", context, status=400
            )
            return reswap(retarget(response, "#input"), "outerHTML")
        return render(request, "executions/execution_detail.html", context, status=400)
    data = form.cleaned_data
    # A line as typed, ended as Enter ends it: input() reads up to the newline.
    text = "" if data["eof"] else data["text"] + "\n"
    InputLine.objects.create(execution=execution, eof=data["eof"], text=text)
    if not request.htmx:
        return redirect(execution)
    if data["eof"]:  # no input line any more
        response = render(
            request, "executions/execution_detail.html#result", result_context(request, execution)
        )
        return reswap(retarget(response, "#result"), "outerHTML")
    return render(
        request, "executions/execution_detail.html#live", result_context(request, execution)
    )


def toggle_share(request: HtmxHttpRequest, item: Execution | SavedScript) -> HttpResponse | None:
    """Turn item's share link on or off from a ShareForm post; a 400 response if the form
    is wrong, else None (the caller answers)."""
    form = ShareForm(request.POST)
    if not form.is_valid():
        return HttpResponse(
            "Share link: say share=on or share=off.", status=400, content_type="text/plain"
        )
    if form.cleaned_data["share"] == "on":
        item.share()
    else:
        item.unshare()
    return None


@require_POST
def execution_share(request: HtmxHttpRequest, execution_id: uuid.UUID) -> HttpResponse:
    """The owner turns a read-only share link on (a new token) or off."""
    execution = get_object_or_404(Execution.objects.owned_by(request), execution_id=execution_id)
    if refused := toggle_share(request, execution):
        return refused
    if request.htmx:
        return render(request, "executions/execution_detail.html#share", {"item": execution})
    return redirect(execution)


@require_POST
def cancel(request: HtmxHttpRequest, execution_id: uuid.UUID) -> HttpResponse:
    execution = get_object_or_404(
        Execution.objects.controlled_by(request), execution_id=execution_id
    )
    mine = execution.owner_id is None or execution.owner_id == request.user.pk
    execution.cancel(by="its owner" if mine else "an operator")
    execution.refresh_from_db()
    if not request.htmx:
        return redirect(execution)
    response = render(
        request, "executions/execution_detail.html#result", result_context(request, execution)
    )
    return trigger_client_event(
        response, "execution-cancelled", {"execution_id": str(execution.execution_id)}
    )


@require_POST
def retry(request: HtmxHttpRequest, execution_id: uuid.UUID) -> HttpResponse:
    """Run again: the same script, version and input, as a new run of this caller's."""
    old = get_object_or_404(Execution.objects.visible_to(request), execution_id=execution_id)
    # Everything that can refuse is asked before the new run exists.
    problem = old.retry_problem()
    refusal = None if problem else check_submission(request)
    if problem or refusal:
        context = result_context(request, old, problem=refusal.message if refusal else problem)
        template = "executions/execution_detail.html" + ("#result" if request.htmx else "")
        response = render(request, template, context, status=400)
        return refusal.refuse(response) if refusal else response
    # On an execution's own page the address follows the new run; the editor stays at /.
    follow = request.htmx and current_path(request).startswith("/executions/")
    new = old.retry(**caller_fields(request))
    if not request.htmx:
        return redirect(new)
    response = render(
        request, "executions/execution_detail.html#started", result_context(request, new)
    )
    if follow:
        push_url(response, new.get_absolute_url())
    return trigger_client_event(
        response, "execution-submitted", {"execution_id": str(new.execution_id)}
    )


# --- history ------------------------------------------------------------------------------


@require_safe
def history(request: HtmxHttpRequest) -> HttpResponse:
    runs = Execution.objects.owned_by(request)
    filters = HistoryFilter(request.GET)
    status = 200
    if filters.is_valid():
        if filters.cleaned_data["status"]:
            runs = runs.filter(status=filters.cleaned_data["status"])
        if filters.cleaned_data["version"]:
            runs = runs.filter(python_version=filters.cleaned_data["version"])
    else:
        runs, status = runs.none(), 400
    page = Paginator(runs.defer("output", "errors", "stdin"), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "page": page,
        "filters": filters,
        "versions": runtimes.versions(),
        "query": query.urlencode(),
    }
    template = "executions/history.html#list" if request.htmx else "executions/history.html"
    return render(request, template, context, status=status)


# --- saved scripts ------------------------------------------------------------------------


def owned_script(request: AuthenticatedHttpRequest, script_id: uuid.UUID) -> SavedScript:
    return get_object_or_404(SavedScript, owner=request.user, script_id=script_id)


def saved_from_editor(request: HttpRequest, saved: SavedScript) -> HttpResponse:
    response = render(request, "executions/scripts.html#saved", {"saved": saved})
    return trigger_client_event(response, "script-saved", {"name": saved.name})


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def scripts(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The user's saved scripts; POST saves the editor's content as a new one."""
    form = SaveScriptForm(owner=request.user)
    status = 200
    if request.method == "POST":
        form = SaveScriptForm(request.POST, owner=request.user)
        if form.is_valid() and (saved := form.save_or_taken(owner=request.user)):
            if request.htmx:
                return saved_from_editor(request, saved)
            messages.success(request, f"Saved “{saved.name}”.")
            return redirect(saved)
        status = 400
        if request.htmx:
            return render(
                request, "executions/scripts.html#save-errors", {"form": form}, status=status
            )
    context = {"scripts": request.user.scripts.all(), "form": form}
    return render(request, "executions/scripts.html", context, status=status)


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def script_detail(request: AuthenticatedHttpRequest, script_id: uuid.UUID) -> HttpResponse:
    """A saved script. POST renames it, or, from the editor (with a script), saves changes."""
    saved = owned_script(request, script_id)
    from_editor = "script" in request.POST
    form_class = SaveScriptForm if from_editor else RenameScriptForm
    data = request.POST if request.method == "POST" else None
    form = form_class(data, instance=saved, owner=request.user)
    status = 200
    if form.is_bound and form.is_valid() and form.save_or_taken():
        if from_editor and request.htmx:
            return saved_from_editor(request, saved)
        if not request.htmx:
            messages.success(request, f"Saved “{saved.name}”.")
            return redirect(saved)
        form = RenameScriptForm(instance=saved, owner=request.user)
    elif form.is_bound:
        status = 400
        saved.refresh_from_db()  # show what is stored, not the rejected input
        if from_editor and request.htmx:
            return render(
                request, "executions/scripts.html#save-errors", {"form": form}, status=status
            )
    context = {"saved": saved, "form": form}
    if request.htmx:
        return render(request, "executions/script_detail.html#about", context, status=status)
    return render(request, "executions/script_detail.html", context, status=status)


@login_required
@require_POST
def script_duplicate(request: AuthenticatedHttpRequest, script_id: uuid.UUID) -> HttpResponse:
    saved = owned_script(request, script_id)
    if problem := SavedScript.room_problem(request.user):
        messages.error(request, problem)
        return redirect(saved)
    # Names compare case-insensitively, as the constraint does.
    taken = {name.lower() for name in request.user.scripts.values_list("name", flat=True)}
    base = f"{saved.name} (copy)"[:90]
    n = 1
    for _ in range(10):  # another request may take the name we picked: pick the next one
        name = base
        while name.lower() in taken:
            n += 1
            name = f"{base} {n}"
        try:
            with transaction.atomic():
                copy = SavedScript.objects.create(
                    owner=request.user,
                    name=name,
                    description=saved.description,
                    script=saved.script,
                    python_version=saved.python_version,
                    stdin=saved.stdin,
                )
        except IntegrityError:
            taken.add(name.lower())
            continue
        messages.success(request, f"Made a copy: “{copy.name}”.")
        return redirect(copy)
    return HttpResponse("Other copies were being made at the same time. Try again.", status=409)


@login_required
@require_POST
def script_share(request: AuthenticatedHttpRequest, script_id: uuid.UUID) -> HttpResponse:
    saved = owned_script(request, script_id)
    if refused := toggle_share(request, saved):
        return refused
    if request.htmx:
        return render(request, "executions/execution_detail.html#share", {"item": saved})
    return redirect(saved)


@require_safe
def shared_script(request: HttpRequest, token: str) -> HttpResponse:
    """A shared saved script, read-only, for anyone with the link."""
    saved = get_object_or_404(SavedScript, share_token=token)
    return render(request, "executions/shared_script.html", {"saved": saved})


@login_required
@require_POST
def script_delete(request: AuthenticatedHttpRequest, script_id: uuid.UUID) -> HttpResponse:
    saved = owned_script(request, script_id)
    saved.delete()
    if request.htmx:
        response = HttpResponse("")
        return trigger_client_event(response, "script-deleted", {"name": saved.name})
    messages.success(request, f"Deleted “{saved.name}”.")
    return redirect("scripts")
