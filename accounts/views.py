from django.contrib import messages
from django.contrib.auth import login
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.forms import SignUpForm
from executions.throttling import check_signup


@require_http_methods(["GET", "HEAD", "POST"])
def signup(request):
    if request.user.is_authenticated:
        return redirect("editor")
    form = SignUpForm(request.POST or None)
    refusal = None
    if request.method == "POST" and form.is_valid():
        refusal = check_signup(request)
    if refusal:
        form.add_error(None, refusal.message)
        response = render(request, "accounts/signup.html", {"form": form}, status=429)
        response["Retry-After"] = str(refusal.retry_after)
        return response
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.username}. Your runs and scripts are private.")
        return redirect("editor")
    status = 400 if request.method == "POST" else 200
    return render(request, "accounts/signup.html", {"form": form}, status=status)
