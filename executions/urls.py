from django.urls import path

from executions import views

urlpatterns = [
    path("", views.editor, name="editor"),
]
