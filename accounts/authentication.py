"""API keys as a DRF authentication class, and their place in the OpenAPI schema."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from accounts.models import ApiKey, User

KEYWORDS = (b"api-key", b"token")


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Api-Key <key>` or `Authorization: Token <key>`. request.auth is the
    ApiKey, so views can tell a key from a password-backed sign-in."""

    def authenticate(self, request: Request) -> tuple[User, ApiKey] | None:
        words = get_authorization_header(request).split()
        if not words or words[0].lower() not in KEYWORDS:
            return None  # another scheme (Bearer) or none: not ours to judge
        if len(words) != 2:
            raise exceptions.AuthenticationFailed(
                "Send the key as: Authorization: Api-Key <key> (one word after the scheme)."
            )
        try:
            key = words[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("That API key is not valid.") from None
        found = ApiKey.find(key)
        if found is None:
            raise exceptions.AuthenticationFailed(
                "That API key is not valid: it was revoked, its account's password changed, "
                "or it never existed."
            )
        return found.user, found

    def authenticate_header(self, request: Request) -> str:
        return 'Api-Key realm="api"'


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = "apiKeyAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": (
                "A key made on the account page or with POST /api/v1/auth/keys, sent as "
                "`Authorization: Api-Key <key>` (or `Token <key>`)."
            ),
        }
