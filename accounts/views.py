"""Account pages: sign up, the account page (API keys, delete), password change and reset.
Signing in is Django's LoginView: its password check is counted by accounts.backends."""

import uuid
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse_lazy
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from accounts.forms import (
    USERNAME_TAKEN,
    ApiKeyForm,
    DeleteAccountForm,
    PasswordChangeForm,
    SignUpForm,
)
from accounts.models import ApiKey, User
from integr8s.throttling import check_address, check_signup

BACKEND = "accounts.backends.PasswordBackend"


class AuthenticatedHttpRequest(HttpRequest):
    """A request that @login_required let through: its user is never anonymous."""

    user: User


@require_http_methods(["GET", "HEAD", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("editor")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        refusal = check_signup(request)
        if refusal:
            form.add_error(None, refusal.message)
            return refusal.refuse(render(request, "accounts/signup.html", {"form": form}))
        try:
            with transaction.atomic():
                user = form.save()
        except IntegrityError:  # the same name, signed up a moment ago
            form.add_error("username", USERNAME_TAKEN)
        else:
            # Runs this browser made before signing up become the new account's (login()
            # announces it; executions moves them).
            login(request, user, backend=BACKEND)
            messages.success(
                request, f"Welcome, {user.username}. Your runs and scripts are private."
            )
            return redirect("editor")
    status = 400 if request.method == "POST" else 200
    return render(request, "accounts/signup.html", {"form": form}, status=status)


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's view: the old password is a counted attempt; saving the new one ends every
    other session, token and API key of the user (User.save); this session stays."""

    form_class = PasswordChangeForm

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "request": self.request}


class AdminPasswordChangeView(PasswordChangeView):
    """The admin's own "Change password" page, as this view: the admin builds its page from
    Django's view, whose form never sees the request, so the old password went uncounted."""

    template_name = "registration/password_change_form.html"  # the admin's template
    success_url = reverse_lazy("admin:password_change_done")

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        request.current_app = admin.site.name  # the admin's URLs in its templates
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), **admin.site.each_context(self.request)}


def account_context(request: AuthenticatedHttpRequest, **extra: Any) -> dict[str, Any]:
    return {
        "keys": request.user.api_keys.all(),
        "key_form": ApiKeyForm(),
        "delete_form": DeleteAccountForm(request.user),
        **extra,
    }


@login_required
@require_safe
def account(request: AuthenticatedHttpRequest) -> HttpResponse:
    return render(request, "accounts/account.html", account_context(request))


@login_required
@require_POST
def key_create(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Make an API key and show it, once: the answer is the page itself (no redirect, so the
    key is in no URL, message store or later page)."""
    form = ApiKeyForm(request.POST)
    if form.is_valid() and (problem := ApiKey.room_problem(request.user)):
        form.add_error(None, problem)
    if not form.is_valid():
        return render(
            request, "accounts/account.html", account_context(request, key_form=form), status=400
        )
    made, key = ApiKey.issue(request.user, form.cleaned_data["name"])
    return render(request, "accounts/account.html", account_context(request, new_key=key, new=made))


@login_required
@require_POST
def key_revoke(request: AuthenticatedHttpRequest, key_id: uuid.UUID) -> HttpResponse:
    found = get_object_or_404(ApiKey, user=request.user, key_id=key_id)
    found.delete()
    messages.success(request, f"Revoked the key “{found.name}”. Programs using it are refused.")
    return redirect("account")


@login_required
@require_POST
def delete_account(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Delete the account with its runs, saved scripts and keys, after the password."""
    form = DeleteAccountForm(request.user, request.POST, request=request)
    if not form.is_valid():
        context = account_context(request, delete_form=form)
        return render(request, "accounts/account.html", context, status=400)
    user = request.user
    logout(request)
    user.delete()
    messages.success(request, "Your account, its runs, saved scripts and API keys are deleted.")
    return redirect("editor")


class PasswordResetView(auth_views.PasswordResetView):
    """Django's: mails a one-time link to the account with that address, if there is one (the
    answer is the same either way). Requests per address are capped like sign-ups."""

    def form_valid(self, form: Any) -> HttpResponse:
        refusal = check_address(
            self.request, "reset", settings.THROTTLE_SIGNUP, "password reset e-mails"
        )
        if refusal:
            form.add_error(None, refusal.message)
            return refusal.refuse(self.form_invalid(form))
        return super().form_valid(form)
