"""Account endpoints of the API: sign up, JWT tokens, and who am I."""

from typing import Any

from django.db import IntegrityError, transaction
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.decorators import api_view, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer, TokenRefreshSerializer
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from accounts.serializers import RegisteredSerializer, RegisterSerializer, UserSerializer
from executions.api import THROTTLED, UNAUTHORIZED, VALIDATION_ERROR, too_many
from executions.throttling import check_login, check_signup


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
    except IntegrityError:  # the same username, registered a moment ago
        raise serializers.ValidationError(
            {"username": ["That username is taken. Pick another."]}
        ) from None
    refresh = RefreshToken.for_user(user)
    body = {
        "user": UserSerializer(user).data,
        "access": str(refresh.access_token),
        "refresh": str(refresh),
    }
    return Response(body, status=status.HTTP_201_CREATED)


@extend_schema(summary="The signed-in user", responses={200: UserSerializer, 401: UNAUTHORIZED})
@api_view(["GET"])
@permission_classes([permissions.IsAuthenticated])
def me(request: Request) -> Response:
    return Response(UserSerializer(request.user).data)


@extend_schema(
    summary="Get a JWT token pair",
    description="Send username and password; use the access token as `Authorization: Bearer ...`.",
    responses={
        200: TokenObtainPairSerializer,
        400: VALIDATION_ERROR,
        401: OpenApiResponse(description="Wrong username or password."),
        429: THROTTLED,
    },
)
class TokenView(TokenObtainPairView):
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        refusal = check_login(request)
        if refusal:
            return too_many(refusal)
        return super().post(request, *args, **kwargs)


@extend_schema(
    summary="Refresh a JWT access token",
    responses={
        200: TokenRefreshSerializer,
        400: VALIDATION_ERROR,
        401: OpenApiResponse(description="The refresh token is invalid or expired."),
    },
)
class TokenRefresh(TokenRefreshView):
    pass
