"""API plumbing every app's endpoints share: the error handler, strict input fields, refusals
and the error responses the schema describes."""

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from executions.limits import human_bytes  # plain Python, no app state
from integr8s.throttling import Refusal, TooManyPasswordAttempts


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus the errors Django raises while reading a body, as JSON 4xx, and
    password attempts over the limit as 429."""
    if isinstance(exc, TooManyPasswordAttempts):
        return too_many(exc.refusal)
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge(
            f"The request body is larger than the limit of "
            f"{human_bytes(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)}."
        )
    elif isinstance(exc, RecursionError) and "JSON" in str(exc):
        exc = exceptions.ParseError("JSON parse error - the document is nested too deeply.")
    return drf_exception_handler(exc, context)


def too_many(refusal: Refusal) -> Response:
    return Response(
        {"detail": refusal.message},
        status=refusal.status,
        headers={"Retry-After": str(refusal.retry_after)},
    )


def conflict(message: str) -> Response:
    return Response({"detail": message}, status=status.HTTP_409_CONFLICT)


# --- Input ---------------------------------------------------------------------------------


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of turning them into text."""

    default_error_messages = {"invalid": "Must be a string (text in double quotes)."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class NoUnknownFieldsMixin(serializers.Serializer):
    """Refuse fields the client may not set, so a typo ("stdinn") is not silently ignored."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            writable = [name for name, field in self.fields.items() if not field.read_only]
            errors = {
                str(key): [
                    "This field is read-only."
                    if key in self.fields
                    else f"Unknown field. Allowed fields: {', '.join(writable)}."
                ]
                for key in data
                if key not in writable
            }
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


# --- Responses, for the schema ---------------------------------------------------------------


class DetailSerializer(serializers.Serializer):
    """For the schema only: the body of most errors."""

    detail = serializers.CharField(help_text="What went wrong, in words.")


VALIDATION_ERROR = OpenApiResponse(
    response={
        "type": "object",
        "additionalProperties": {"type": "array", "items": {"type": "string"}},
    },
    description="Bad input: each field named, with what is wrong with it.",
    examples=[
        OpenApiExample(
            "Empty script",
            value={"script": ["The script is empty. Write or paste some Python code."]},
            status_codes=["400"],
        )
    ],
)
THROTTLED = OpenApiResponse(
    DetailSerializer,
    description="Too many requests of this kind: see the Retry-After header.",
)
UNAUTHORIZED = OpenApiResponse(DetailSerializer, description="Not signed in.")
FORBIDDEN = OpenApiResponse(DetailSerializer, description="Not allowed with these credentials.")
CONFLICT = OpenApiResponse(DetailSerializer, description="Not possible in the current state.")
TOO_LARGE = OpenApiResponse(DetailSerializer, description="The request body is too large.")
