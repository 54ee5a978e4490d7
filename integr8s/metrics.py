"""/metrics for Prometheus, not for the public: it names the site's traffic, queue and failures.

With METRICS_TOKEN set it answers `Authorization: Bearer <METRICS_TOKEN>` only; without it,
only clients on this machine's loopback (as client_ip() sees them, so a proxy on this host does
not make the whole internet local).
"""

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.http import require_safe
from django_prometheus.exports import ExportToDjangoView

from integr8s.throttling import is_loopback


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not constant_time_compare(given.strip(), token):
            response = HttpResponse(
                "Send Authorization: Bearer <METRICS_TOKEN>.\n",
                status=401,
                content_type="text/plain",
            )
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    elif not is_loopback(request):
        return HttpResponse(
            "/metrics answers this machine only. Set METRICS_TOKEN to scrape it from elsewhere.\n",
            status=403,
            content_type="text/plain",
        )
    return ExportToDjangoView(request)
