from django.urls import path

from executions import views

urlpatterns = [
    path("", views.editor, name="editor"),
    path("run", views.run, name="run"),
    path("packages", views.editor_packages, name="editor-packages"),
    path("examples/<slug:slug>", views.example, name="example"),
    path("executions/", views.history, name="history"),
    path("executions/<uuid:execution_id>/", views.execution_detail, name="execution-detail"),
    path("executions/<uuid:execution_id>/cancel", views.cancel, name="execution-cancel"),
    path("executions/<uuid:execution_id>/retry", views.retry, name="execution-retry"),
    path("executions/<uuid:execution_id>/input", views.execution_input, name="execution-input"),
    path("executions/<uuid:execution_id>/share", views.execution_share, name="execution-share"),
    path("shared/runs/<str:token>/", views.shared_execution, name="shared-execution"),
    path("scripts/", views.scripts, name="scripts"),
    path("scripts/<uuid:script_id>/", views.script_detail, name="script-detail"),
    path("scripts/<uuid:script_id>/duplicate", views.script_duplicate, name="script-duplicate"),
    path("scripts/<uuid:script_id>/delete", views.script_delete, name="script-delete"),
    path("scripts/<uuid:script_id>/share", views.script_share, name="script-share"),
    path("shared/scripts/<str:token>/", views.shared_script, name="shared-script"),
]
