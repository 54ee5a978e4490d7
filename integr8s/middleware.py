"""Site-wide request and response rules: no NUL in a URL, security headers, no caching of
what may be private, password attempts over the limit as a 429 page, and debug pages that
keep credentials out."""

import re
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.cache import patch_cache_control
from django.views.debug import SafeExceptionReporterFilter

from integr8s.throttling import TooManyPasswordAttempts


class SecurityHeadersMiddleware:
    """Permissions-Policy on every answer, and Cache-Control: no-store on every page and API
    answer that did not choose its own caching: they may show a user's runs, scripts, keys or
    a CSRF token, and a shared cache or the browser's history must not keep them. Static
    files never reach this middleware (WhiteNoise answers them first, with their own headers).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        if "Cache-Control" not in response:
            patch_cache_control(response, no_store=True)
        return response


class RefuseNulMiddleware:
    """A NUL character in a request's path or query is a 400 before any view looks. No URL of
    the site holds one, and PostgreSQL refuses NUL in text: a share token, an output file's
    name or an admin filter with one was a 500 there (a 404 on SQLite). A body is left to the
    forms and serializers, which refuse NUL naming the field."""

    MESSAGE = "The address holds a NUL character (%00): no address of this site does."

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        query = request.META.get("QUERY_STRING", "")
        if "\x00" in request.path or "%00" in query or "\x00" in query:
            if request.path.startswith("/api/"):
                return JsonResponse({"detail": self.MESSAGE}, status=400)
            return HttpResponse(self.MESSAGE + "\n", status=400, content_type="text/plain")
        return self.get_response(request)


class TooManyPasswordAttemptsMiddleware:
    """A page that checked a password over THROTTLE_LOGIN (the login page, the admin's,
    changing a password) answers 429 with Retry-After, whatever the password was."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, TooManyPasswordAttempts):
            return None
        response = render(request, "429.html", {"message": exception.refusal.message})
        return exception.refusal.refuse(response)


class ExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter also hides anything named like a URL or DSN: DATABASE_URL and
    CACHE_URL carry passwords in them."""

    hidden_settings = re.compile(
        SafeExceptionReporterFilter.hidden_settings.pattern + "|URL|DSN", flags=re.I
    )
