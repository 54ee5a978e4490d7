"""Account serializers for the API: sign-up and the signed-in user."""

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from executions.serializers import NoUnknownFieldsMixin, StrictCharField

User = get_user_model()


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["username", "email", "date_joined"]
        read_only_fields = fields


class RegisterSerializer(NoUnknownFieldsMixin, serializers.Serializer):
    username = StrictCharField(
        max_length=150,
        validators=[
            UnicodeUsernameValidator(),
            # Case-insensitive, like Django's sign-up form: "Alice" may not impersonate "alice".
            UniqueValidator(
                queryset=User.objects.all(),
                lookup="iexact",
                message="That username is taken. Pick another.",
            ),
        ],
        help_text="Letters, digits and @/./+/-/_ only; at most 150 characters.",
    )
    password = StrictCharField(
        write_only=True, trim_whitespace=False, style={"input_type": "password"}
    )
    email = serializers.EmailField(required=False, allow_blank=True)

    def validate(self, attrs):
        candidate = User(username=attrs["username"], email=attrs.get("email", ""))
        try:
            password_validation.validate_password(attrs["password"], user=candidate)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"password": list(exc.messages)}) from None
        return attrs

    def create(self, validated_data):
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
