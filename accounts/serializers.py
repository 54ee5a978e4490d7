"""Account serializers for the API: sign-up, the signed-in user, API keys, token refresh."""

from typing import Any, cast

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, serializers
from rest_framework_simplejwt.serializers import TokenRefreshSerializer
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.utils import get_md5_hash_password

from accounts.models import LATIN_USERNAME, ApiKey, User, fold
from integr8s.api import NoUnknownFieldsMixin, StrictCharField

USERNAME_TAKEN = "That username is taken. Pick another."


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["username", "email", "date_joined"]
        read_only_fields = fields


class UsernameField(StrictCharField):
    """A user name as it will be stored: normalised (NFKC) before any rule is checked, so
    the length, the characters and "is it taken" are judged on what is saved."""

    def to_internal_value(self, data: Any) -> str:
        return User.normalize_username(super().to_internal_value(data))


class RegisterSerializer(NoUnknownFieldsMixin, serializers.Serializer):
    username = UsernameField(
        max_length=150,
        validators=[LATIN_USERNAME],
        help_text=(
            "Latin letters, digits and @/./+/-/_ only; at most 150 characters. Names that differ "
            'only in case or width ("Alice", "ａｌｉｃｅ") are the same name.'
        ),
    )
    password = StrictCharField(
        write_only=True, trim_whitespace=False, style={"input_type": "password"}
    )
    email = serializers.EmailField(required=False, allow_blank=True)

    def validate_username(self, value: str) -> str:
        # The database's unique username_key decides in the end (a race is answered the same).
        if User.objects.filter(username_key=fold(value)).exists():
            raise serializers.ValidationError(USERNAME_TAKEN)
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        candidate = User(username=attrs["username"], email=attrs.get("email", ""))
        try:
            password_validation.validate_password(attrs["password"], user=candidate)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"password": list(exc.messages)}) from None
        return attrs

    def create(self, validated_data: dict[str, Any]) -> User:
        return User.objects.create_user(
            validated_data["username"],
            validated_data.get("email", ""),
            validated_data["password"],
        )


class RegisteredSerializer(serializers.Serializer):
    """For the schema: the answer to a sign-up."""

    user = UserSerializer()
    access = serializers.CharField(help_text="A JWT access token: Authorization: Bearer <access>.")
    refresh = serializers.CharField(
        help_text="Trade it for a new access token at /auth/token/refresh."
    )


class RefreshSerializer(TokenRefreshSerializer):
    """simplejwt's refresh, which rotates the token (the one sent is blacklisted), and also
    refuses a token from before a password change or of a deleted account (401, not 500),
    and a second refresh of one token that raced the first past the blacklist check."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        refresh = self.token_class(attrs["refresh"])  # checks the blacklist
        user_id = refresh.payload.get(jwt_settings.USER_ID_CLAIM)
        user = User.objects.filter(**{jwt_settings.USER_ID_FIELD: user_id}).first()
        if user is None or not user.is_active:
            raise exceptions.AuthenticationFailed(
                "This token's account no longer exists.", "no_active_account"
            )
        if refresh.payload.get(jwt_settings.REVOKE_TOKEN_CLAIM) != get_md5_hash_password(
            user.password
        ):
            raise exceptions.AuthenticationFailed(
                "The password was changed since this token was made: sign in again.",
                "password_changed",
            )
        # simplejwt's rotation, but only for the request whose blacklisting wrote the row (the
        # database's unique token decides): two refreshes at once passed the check above
        # together and each got a new pair.
        # blacklist() answers get_or_create's (row, created), whatever its annotation says.
        _, first = cast("tuple[Any, bool]", refresh.blacklist())
        if not first:
            raise exceptions.AuthenticationFailed(
                "This refresh token was used already: use the one that refresh gave you, or "
                "sign in again.",
                "token_used",
            )
        data = {"access": str(refresh.access_token)}
        refresh.set_jti()
        refresh.set_exp()
        refresh.set_iat()
        refresh.outstand()
        data["refresh"] = str(refresh)
        return data


def tokens_for(user: User) -> dict[str, str]:
    refresh = RefreshToken.for_user(user)
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


class ApiKeySerializer(NoUnknownFieldsMixin, serializers.ModelSerializer):
    name = StrictCharField(max_length=100, help_text="What the key is for, to tell keys apart.")

    class Meta:
        model = ApiKey
        fields = ["key_id", "name", "prefix", "created_at", "last_used_at"]
        read_only_fields = ["key_id", "prefix", "created_at", "last_used_at"]


class NewApiKeySerializer(ApiKeySerializer):
    """The answer to making a key: the only time the key itself is shown."""

    key = serializers.CharField(
        read_only=True,
        help_text="Send it as `Authorization: Api-Key <key>`. Shown once: it is stored hashed.",
    )

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
        read_only_fields = [*ApiKeySerializer.Meta.read_only_fields, "key"]
