from django.contrib import admin
from django.urls import include, path

from executions import health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("", include("django_prometheus.urls")),
    path("", include("executions.urls")),
    path("accounts/", include("accounts.urls")),
    path("api/", include("executions.api_urls")),
]
