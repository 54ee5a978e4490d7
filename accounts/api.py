"""Account endpoints of the API: sign up, JWT tokens, API keys, and who am I."""

import uuid

from django.db import IntegrityError, transaction
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer, TokenRefreshSerializer
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from accounts.models import ApiKey, User
from accounts.serializers import (
    USERNAME_TAKEN,
    ApiKeySerializer,
    NewApiKeySerializer,
    RefreshSerializer,
    RegisteredSerializer,
    RegisterSerializer,
    UserSerializer,
    tokens_for,
)
from integr8s.api import (
    CONFLICT,
    FORBIDDEN,
    THROTTLED,
    UNAUTHORIZED,
    VALIDATION_ERROR,
    DetailSerializer,
    conflict,
    too_many,
)
from integr8s.throttling import check_signup


class AuthenticatedRequest(Request):
    """A request that IsAuthenticated let through: its user is never anonymous."""

    user: User


@extend_schema(
    summary="Create an account",
    description="Answers with the new user and a pair of JWT tokens, so no second call is needed.",
    request=RegisterSerializer,
    responses={201: RegisteredSerializer, 400: VALIDATION_ERROR, 429: THROTTLED},
)
@api_view(["POST"])
@permission_classes([permissions.AllowAny])
def register(request: Request) -> Response:
    signup = RegisterSerializer(data=request.data)
    signup.is_valid(raise_exception=True)
    refusal = check_signup(request)
    if refusal:
        return too_many(refusal)
    try:
        with transaction.atomic():
            user = signup.save()
    except IntegrityError:  # the same name, registered a moment ago
        raise serializers.ValidationError({"username": [USERNAME_TAKEN]}) from None
    body = {"user": UserSerializer(user).data, **tokens_for(user)}
    return Response(body, status=status.HTTP_201_CREATED)


@extend_schema(summary="The signed-in user", responses={200: UserSerializer, 401: UNAUTHORIZED})
@api_view(["GET"])
@permission_classes([permissions.IsAuthenticated])
def me(request: Request) -> Response:
    return Response(UserSerializer(request.user).data)


@extend_schema(
    summary="Get a JWT token pair",
    description=(
        "Send username and password; use the access token as `Authorization: Bearer ...`. "
        "Password attempts are limited per address (429 with Retry-After over the limit, "
        "whatever the password)."
    ),
    responses={
        200: TokenObtainPairSerializer,
        400: VALIDATION_ERROR,
        401: OpenApiResponse(description="Wrong username or password."),
        429: THROTTLED,
    },
)
class TokenView(TokenObtainPairView):
    pass


@extend_schema(
    summary="Refresh a JWT access token",
    description=(
        "Answers with a new access token and a new refresh token; the refresh token sent is "
        "used up (blacklisted). Tokens from before a password change are refused."
    ),
    responses={
        200: TokenRefreshSerializer,
        400: VALIDATION_ERROR,
        401: OpenApiResponse(description="The refresh token is invalid, used up or expired."),
    },
)
class TokenRefresh(TokenRefreshView):
    serializer_class = RefreshSerializer


# --- API keys ------------------------------------------------------------------------------


def key_owner(request: Request) -> User:
    """Keys are managed with a password-backed sign-in (JWT or session), never with a key: a
    leaked key must not be able to make itself successors that outlive its revocation."""
    if isinstance(request.auth, ApiKey):
        raise exceptions.PermissionDenied(
            "API keys cannot manage API keys. Use a JWT access token or sign in on the site."
        )
    assert isinstance(request.user, User)  # IsAuthenticated let it through
    return request.user


@extend_schema(
    methods=["GET"],
    summary="Your API keys",
    description="The keys themselves are never shown again; each has its prefix to spot it.",
    responses={200: ApiKeySerializer(many=True), 401: UNAUTHORIZED, 403: FORBIDDEN},
)
@extend_schema(
    methods=["POST"],
    summary="Make an API key",
    description=(
        "For programs: send it as `Authorization: Api-Key <key>` (or `Token <key>`). The "
        "answer holds the key once; it is stored hashed. Keys last until revoked, until the "
        "password changes, or until the account is deleted. An account keeps at most "
        "MAX_API_KEYS keys (20 by default): past them, 409."
    ),
    request=ApiKeySerializer,
    responses={
        201: NewApiKeySerializer,
        400: VALIDATION_ERROR,
        401: UNAUTHORIZED,
        403: FORBIDDEN,
        409: CONFLICT,
    },
)
@api_view(["GET", "POST"])
@permission_classes([permissions.IsAuthenticated])
def key_list(request: Request) -> Response:
    user = key_owner(request)
    if request.method == "GET":
        return Response(ApiKeySerializer(user.api_keys.all(), many=True).data)
    form = ApiKeySerializer(data=request.data)
    form.is_valid(raise_exception=True)
    if problem := ApiKey.room_problem(user):
        return conflict(problem)
    made, key = ApiKey.issue(user, form.validated_data["name"])
    made.key = key  # type: ignore[attr-defined]  # shown this once, never stored
    return Response(NewApiKeySerializer(made).data, status=status.HTTP_201_CREATED)


@extend_schema(
    summary="Revoke an API key",
    parameters=[OpenApiParameter("key_id", str, OpenApiParameter.PATH)],
    responses={
        204: None,
        401: UNAUTHORIZED,
        403: FORBIDDEN,
        404: OpenApiResponse(DetailSerializer, description="No such key of yours."),
    },
)
@api_view(["DELETE"])
@permission_classes([permissions.IsAuthenticated])
def key_detail(request: Request, key_id: str) -> Response:
    user = key_owner(request)
    try:
        found = user.api_keys.get(key_id=uuid.UUID(key_id))
    except (ValueError, ApiKey.DoesNotExist):
        raise exceptions.NotFound("You have no API key with that id.") from None
    found.delete()
    return Response(status=status.HTTP_204_NO_CONTENT)
