"""Everything under /api/: the OpenAPI schema, its interactive docs, and version 1 of the API
(its account endpoints, /api/v1/auth/, are accounts.api_urls, included by integr8s.urls)."""

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from executions import api

v1 = [
    path("execute", api.execute, name="api-execute"),
    path("result/<str:execution_id>", api.result, name="api-result"),
    path("k8s-limits", api.k8s_limits, name="api-k8s-limits"),
    path("runtimes", api.runtime_list, name="api-runtimes"),
    path("example-scripts", api.example_list, name="api-example-scripts"),
    path("executions/", api.execution_list, name="api-executions"),
    path("executions/<str:execution_id>/cancel", api.execution_cancel, name="api-execution-cancel"),
    path("executions/<str:execution_id>/retry", api.execution_retry, name="api-execution-retry"),
    path("executions/<str:execution_id>/input", api.execution_input, name="api-execution-input"),
    path(
        "executions/<str:execution_id>/files/<str:name>",
        api.execution_file,
        name="api-execution-file",
    ),
    path("executions/<str:execution_id>/events", api.execution_events, name="api-execution-events"),
    path("scripts/", api.SavedScriptList.as_view(), name="api-scripts"),
    path("scripts/<str:script_id>/", api.SavedScriptDetail.as_view(), name="api-script"),
]

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file: the CSP allows no inline
    # script. Its assets come from drf-spectacular-sidecar (SWAGGER_UI_DIST = "SIDECAR").
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("v1/", include(v1)),
    re_path(r"", api.not_found),
]
