from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.forms import SignUpForm
from executions.throttling import check_login, check_signup


class ThrottledLoginView(LoginView):
    """Django's login page, with password attempts per address capped (THROTTLE_LOGIN)."""

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        return self.refused(form) or super().form_valid(form)

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        return self.refused(form) or super().form_invalid(form)

    def refused(self, form: AuthenticationForm) -> HttpResponse | None:
        refusal = check_login(self.request)
        if refusal is None:
            return None
        form.errors.clear()
        form.add_error(None, refusal.message)
        return refusal.refuse(self.render_to_response(self.get_context_data(form=form)))


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
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.username}. Your runs and scripts are private.")
        return redirect("editor")
    status = 400 if request.method == "POST" else 200
    return render(request, "accounts/signup.html", {"form": form}, status=status)
