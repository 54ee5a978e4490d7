"""Account endpoints under /api/v1/auth/."""

from django.urls import path

from accounts import api

urlpatterns = [
    path("register", api.register, name="api-register"),
    path("token", api.TokenView.as_view(), name="api-token"),
    path("token/refresh", api.TokenRefresh.as_view(), name="api-token-refresh"),
    path("me", api.me, name="api-me"),
    path("keys", api.key_list, name="api-keys"),
    path("keys/<str:key_id>", api.key_detail, name="api-key"),
]
