from django.contrib import admin
from django.urls import include, path

from accounts.views import AdminPasswordChangeView
from executions import health
from integr8s.metrics import metrics

urlpatterns = [
    # Before the admin's own: its old password counts as a password attempt (THROTTLE_LOGIN).
    path("admin/password_change/", admin.site.admin_view(AdminPasswordChangeView.as_view())),
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
