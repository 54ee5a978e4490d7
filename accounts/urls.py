from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views


def page(name: str) -> str:
    return f"accounts/{name}.html"


urlpatterns = [
    path("", views.account, name="account"),
    path("signup/", views.signup, name="signup"),
    path(
        "login/",
        auth_views.LoginView.as_view(template_name=page("login"), redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("keys/", views.key_create, name="api-key-create"),
    path("keys/<uuid:key_id>/revoke", views.key_revoke, name="api-key-revoke"),
    path("delete/", views.delete_account, name="account-delete"),
    path(
        "password/",
        views.PasswordChangeView.as_view(template_name=page("password_change")),
        name="password_change",
    ),
    path(
        "password/done/",
        auth_views.PasswordChangeDoneView.as_view(template_name=page("password_change_done")),
        name="password_change_done",
    ),
    path(
        "password/reset/",
        views.PasswordResetView.as_view(
            template_name=page("password_reset"),
            email_template_name="accounts/password_reset_email.txt",
            subject_template_name="accounts/password_reset_subject.txt",
        ),
        name="password_reset",
    ),
    path(
        "password/reset/sent/",
        auth_views.PasswordResetDoneView.as_view(template_name=page("password_reset_done")),
        name="password_reset_done",
    ),
    path(
        "password/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(template_name=page("password_reset_confirm")),
        name="password_reset_confirm",
    ),
    path(
        "password/reset/done/",
        auth_views.PasswordResetCompleteView.as_view(template_name=page("password_reset_complete")),
        name="password_reset_complete",
    ),
]
