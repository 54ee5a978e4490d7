from typing import Any

from django import forms
from django.contrib.auth import forms as auth_forms
from django.http import HttpRequest

from accounts.models import ApiKey, User, fold
from integr8s.throttling import check_password_attempt

USERNAME_TAKEN = "A user with that username already exists."


class FoldedUsernameMixin(forms.ModelForm):
    """ "Is that name taken?" asked as the database's unique username_key decides it: after
    NFKC normalisation (which UsernameField does) and case folding, on SQLite as on
    PostgreSQL (where iexact and SQLite's LIKE disagree about non-ASCII letters)."""

    def clean_username(self) -> str:
        username = self.cleaned_data.get("username", "")
        taken = User.objects.filter(username_key=fold(username))
        if self.instance.pk:
            taken = taken.exclude(pk=self.instance.pk)
        if username and taken.exists():
            raise forms.ValidationError(USERNAME_TAKEN, code="unique")
        return username


class SignUpForm(FoldedUsernameMixin, auth_forms.UserCreationForm):
    class Meta(auth_forms.UserCreationForm.Meta):
        model = User
        fields = ("username", "email")


class AdminUserCreationForm(FoldedUsernameMixin, auth_forms.AdminUserCreationForm):
    class Meta(auth_forms.AdminUserCreationForm.Meta):
        model = User
        fields = ("username",)


class AdminUserChangeForm(FoldedUsernameMixin, auth_forms.UserChangeForm):
    class Meta(auth_forms.UserChangeForm.Meta):
        model = User


class PasswordChangeForm(auth_forms.PasswordChangeForm):
    """Django's form; the old password counts as a password attempt (THROTTLE_LOGIN)."""

    def __init__(self, user: User, *args: Any, request: HttpRequest | None = None, **kwargs: Any):
        super().__init__(user, *args, **kwargs)
        self.request = request

    def clean_old_password(self) -> str:
        check_password_attempt(self.request)
        return super().clean_old_password()


class DeleteAccountForm(forms.Form):
    password = forms.CharField(
        label="Your password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        help_text="To be sure it is you. This cannot be undone.",
    )

    def __init__(self, user: User, *args: Any, request: HttpRequest | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.user = user
        self.request = request

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        check_password_attempt(self.request)
        if not self.user.check_password(password):
            raise forms.ValidationError("That is not your password.", code="password_incorrect")
        return password


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["name"]
        widgets = {"name": forms.TextInput(attrs={"placeholder": "e.g. CI on my laptop"})}
