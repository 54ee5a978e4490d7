from django.contrib import admin
from django.urls import include, path

from executions import health
from integr8s.metrics import metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics, name="prometheus-django-metrics"),
    path("", include("executions.urls")),
    path("accounts/", include("accounts.urls")),
    # Before executions' API, whose catch-all answers unknown /api/ paths with a JSON 404.
    path("api/v1/auth/", include("accounts.api_urls")),
    path("api/", include("executions.api_urls")),
]
