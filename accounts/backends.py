"""The one way a password is checked at sign-in: the site's login page, the admin's, and the
API's token endpoint all call authenticate(), which asks this backend."""

from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

from accounts.models import User
from integr8s.throttling import check_password_attempt


class PasswordBackend(ModelBackend):
    """Django's backend, with password attempts per address capped (THROTTLE_LOGIN). Over the
    limit it raises TooManyPasswordAttempts before looking at the password, so even the right
    one is refused and the answer (429) says nothing about it."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        if password is None:
            return None  # not a password sign-in: nothing presented, nothing counted
        check_password_attempt(request)
        return super().authenticate(request, username, password, **kwargs)

    async def aauthenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        if password is None:
            return None
        await sync_to_async(check_password_attempt)(request)
        return await super().aauthenticate(request, username, password, **kwargs)
