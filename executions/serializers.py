"""API serializers: what a client may send, and what it gets back."""

import base64
import binascii
import copy
from typing import Any, ClassVar

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import Field
from rest_framework.request import Request

from executions import limits, runtimes
from executions.models import Execution, SavedScript, input_file_errors, submission_errors
from integr8s.api import NoUnknownFieldsMixin, StrictCharField


class RequestLimitsSerializer(NoUnknownFieldsMixin, serializers.Serializer):
    """Limits a request asks for, each within the operator's maximum (GET /api/v1/k8s-limits,
    `maxima`); those not given are the defaults in force."""

    memory_mb = serializers.IntegerField(required=False, min_value=16, help_text="Memory, MiB.")
    wall_time_s = serializers.FloatField(
        required=False, min_value=0.1, help_text="Wall time from the script's start, seconds."
    )
    cpu_time_s = serializers.FloatField(required=False, min_value=0.1, help_text="CPU seconds.")
    output_kb = serializers.IntegerField(
        required=False, min_value=1, help_text="stdout and stderr together, KiB."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors = limits.request_errors(attrs)
        if errors:
            raise serializers.ValidationError({k: [v] for k, v in errors.items()})
        return attrs


class InputFileUploadSerializer(NoUnknownFieldsMixin, serializers.Serializer):
    name = StrictCharField(
        trim_whitespace=False,
        help_text=(
            'The file\'s name in /tmp/inputs: no path separators, no "..", no control '
            "characters, at most 100 characters."
        ),
    )
    content_base64 = StrictCharField(
        trim_whitespace=False, allow_blank=True, help_text="The file's contents, base64."
    )

    def validate_content_base64(self, value: str) -> bytes:
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise serializers.ValidationError("Not valid base64.") from None


class ExecuteSerializer(NoUnknownFieldsMixin, serializers.Serializer):
    script = StrictCharField(
        trim_whitespace=False, allow_blank=True, help_text="The Python source to run."
    )
    python_version = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=10,
        help_text='A version from GET /api/v1/runtimes, e.g. "3.12"; default: the newest.',
    )
    stdin = StrictCharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="Text the script reads from standard input.",
    )
    interactive = serializers.BooleanField(
        required=False,
        default=False,
        help_text=(
            "Keep standard input open after `stdin` for input sent while the script runs "
            "(POST /api/v1/executions/{id}/input), until its end is sent. Local backend only."
        ),
    )
    limits = RequestLimitsSerializer(
        required=False, help_text="Limits for this run, within the server's maxima."
    )
    files = InputFileUploadSerializer(
        many=True,
        required=False,
        help_text=(
            "Input files, read-only in /tmp/inputs (`open('/tmp/inputs/data.csv')`), within "
            "the input files limits (GET /api/v1/k8s-limits: input_files, input_bytes)."
        ),
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors = submission_errors(
            attrs.get("script", ""), attrs.get("python_version", ""), attrs.get("stdin", "")
        )
        attrs["files"] = [(f["name"], f["content_base64"]) for f in attrs.get("files") or []]
        errors |= input_file_errors(attrs["files"])
        if errors:
            raise serializers.ValidationError({k: [v] for k, v in errors.items()})
        if attrs.get("interactive") and settings.EXECUTION_BACKEND != "local":
            raise serializers.ValidationError(
                {"interactive": ["Input while it runs needs the local backend; send stdin."]}
            )
        return attrs


class LimitsSerializer(serializers.Serializer):
    wall_time_s = serializers.FloatField()
    cpu_time_s = serializers.FloatField()
    memory_bytes = serializers.IntegerField()
    processes = serializers.IntegerField()
    tmp_bytes = serializers.IntegerField()
    output_bytes = serializers.IntegerField()
    script_bytes = serializers.IntegerField()
    stdin_bytes = serializers.IntegerField()
    cpu_request = serializers.CharField()
    cpu_limit = serializers.CharField()


class ExecutionLinksSerializer(serializers.Serializer):
    """For the schema only: links an execution carries."""

    self = serializers.URLField()
    events = serializers.URLField()
    input = serializers.URLField()
    cancel = serializers.URLField()
    retry = serializers.URLField()


def execution_links(execution: Execution, request: Request | None) -> dict[str, str]:
    def url(name: str) -> str:
        path = reverse(name, args=[execution.execution_id])
        return request.build_absolute_uri(path) if request else path

    return {
        "self": url("api-result"),
        "events": url("api-execution-events"),
        "input": url("api-execution-input"),
        "cancel": url("api-execution-cancel"),
        "retry": url("api-execution-retry"),
    }


class BuiltOnceMixin(serializers.ModelSerializer):
    """ModelSerializer works its fields out from the model for every instance it serializes,
    about a millisecond for an execution; work them out once per class, copy them after."""

    _built_fields: ClassVar[dict[str, Field]]  # set on each subclass by its first get_fields()

    def get_fields(self) -> dict[str, Field]:
        cls = type(self)
        if "_built_fields" not in cls.__dict__:
            cls._built_fields = super().get_fields()
        return copy.deepcopy(cls._built_fields)


class ExecutionListSerializer(BuiltOnceMixin, serializers.ModelSerializer):
    """An execution without its input and output (history pages stay small)."""

    limits = LimitsSerializer(read_only=True)
    retry_of: serializers.SlugRelatedField[Execution] = serializers.SlugRelatedField(
        slug_field="execution_id", read_only=True, help_text="The execution this one re-runs."
    )
    links = serializers.SerializerMethodField()

    class Meta:
        model = Execution
        fields = [
            "execution_id",
            "status",
            "script",
            "python_version",
            "exit_code",
            "error_type",
            "reason",
            "output_truncated",
            "errors_truncated",
            "wall_time_ms",
            "cpu_time_ms",
            "peak_memory_kb",
            "limits",
            "cancel_requested",
            "retry_of",
            "created_at",
            "started_at",
            "finished_at",
            "updated_at",
            "links",
        ]
        read_only_fields = fields

    @extend_schema_field(ExecutionLinksSerializer)
    def get_links(self, execution: Execution) -> dict[str, str]:
        return execution_links(execution, self.context.get("request"))


class OutputFileSerializer(serializers.Serializer):
    name = serializers.CharField()
    size = serializers.IntegerField(help_text="Bytes.")
    content_type = serializers.CharField()
    url = serializers.URLField(help_text="GET it: an attachment, or inline for raster images.")


class ExecuteUploadSerializer(serializers.Serializer):
    """For the schema only: POST /api/v1/execute as a multipart form (ExecuteSerializer's
    fields, `limits` as JSON text, each input file a `files` part)."""

    script = serializers.CharField()
    python_version = serializers.CharField(required=False)
    stdin = serializers.CharField(required=False)
    interactive = serializers.BooleanField(required=False)
    limits = serializers.CharField(required=False, help_text='JSON text, e.g. {"memory_mb": 256}.')
    files = serializers.ListField(
        child=serializers.FileField(),
        required=False,
        help_text="Input files, each a part named `files`; read-only in /tmp/inputs.",
    )


class InputFileSerializer(serializers.Serializer):
    name = serializers.CharField()
    size = serializers.IntegerField(help_text="Bytes.")


class ExecutionSerializer(ExecutionListSerializer):
    """An execution in full: what ran, what it printed and how it ended."""

    input_files = serializers.SerializerMethodField(
        help_text="The files it was given, read-only in /tmp/inputs."
    )
    files = serializers.SerializerMethodField(
        help_text="What the script left in /tmp/outputs (within the output files limits)."
    )

    class Meta(ExecutionListSerializer.Meta):
        fields = (
            ExecutionListSerializer.Meta.fields[:4]
            + [
                "stdin",
                "input_files",
                "output",
                "errors",
                "files",
                "awaiting_input",
            ]
            + ExecutionListSerializer.Meta.fields[4:]
        )
        read_only_fields = fields

    # has_files, has_input_files: from Execution.objects.with_file_flags(), when it was read
    # that way; without them the tables are read.
    @extend_schema_field(InputFileSerializer(many=True))
    def get_input_files(self, execution: Execution) -> list[dict[str, Any]]:
        if not getattr(execution, "has_input_files", True):
            return []
        return list(InputFileSerializer(execution.input_files.all(), many=True).data)

    @extend_schema_field(OutputFileSerializer(many=True))
    def get_files(self, execution: Execution) -> list[dict[str, Any]]:
        if not getattr(execution, "has_files", True):
            return []
        request = self.context.get("request")
        found = []
        for f in execution.files.all():
            path = reverse("api-execution-file", args=[execution.execution_id, f.name])
            url = request.build_absolute_uri(path) if request else path
            found.append(
                {"name": f.name, "size": f.size, "content_type": f.content_type, "url": url}
            )
        return found

    def to_representation(self, instance: Execution) -> dict[str, Any]:
        data = super().to_representation(instance)
        if instance.status == Execution.Status.RUNNING:  # what it printed so far
            data["output"], data["errors"] = instance.live_output()
        data["errors"] = runtimes.neutral_paths(data["errors"])
        return data


class InputSerializer(NoUnknownFieldsMixin, serializers.Serializer):
    text = StrictCharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="Text for the script's standard input (add the newline input() waits for).",
    )
    eof = serializers.BooleanField(
        required=False, default=False, help_text="End the input: the script reads end-of-file."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "text" not in attrs and not attrs.get("eof"):
            raise serializers.ValidationError({"text": ["Send text, or eof: true."]})
        return attrs


class AcceptedSerializer(BuiltOnceMixin, serializers.ModelSerializer):
    """The answer to a submission that was queued."""

    links = serializers.SerializerMethodField()

    class Meta:
        model = Execution
        fields = ["execution_id", "status", "links"]
        read_only_fields = fields

    @extend_schema_field(ExecutionLinksSerializer)
    def get_links(self, execution: Execution) -> dict[str, str]:
        return execution_links(execution, self.context.get("request"))


class ExecutionFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=Execution.Status.choices,
        required=False,
        error_messages={
            "invalid_choice": (
                f'"{{input}}" is not a status. Use one of: {", ".join(Execution.Status.values)}.'
            )
        },
    )
    python_version = serializers.RegexField(
        r"^\d+\.\d+$",
        required=False,
        error_messages={"invalid": 'A Python version looks like "3.12".'},
    )


class SavedScriptSerializer(NoUnknownFieldsMixin, serializers.ModelSerializer):
    name = StrictCharField(max_length=100, help_text="Unique among your saved scripts.")
    description = StrictCharField(
        max_length=1000, required=False, allow_blank=True, trim_whitespace=False
    )
    script = StrictCharField(trim_whitespace=False, allow_blank=True)
    python_version = StrictCharField(
        max_length=10,
        required=False,
        allow_blank=True,
        help_text="Blank: run it with the version chosen at run time.",
    )
    stdin = StrictCharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="Input it runs with (standard input), capped as a run's is.",
    )

    class Meta:
        model = SavedScript
        fields = [
            "script_id",
            "name",
            "description",
            "script",
            "python_version",
            "stdin",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["script_id", "created_at", "updated_at"]

    def validate_name(self, value: str) -> str:
        owner = self.context["request"].user
        other_than = self.instance.pk if self.instance is not None else None
        if SavedScript.name_taken(owner, value, other_than):
            raise serializers.ValidationError(
                f'You already have a saved script named "{value}". Pick another name.'
            )
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        script = attrs.get("script", self.instance.script if self.instance else "")
        version = attrs.get("python_version", self.instance.python_version if self.instance else "")
        stdin = attrs.get("stdin", self.instance.stdin if self.instance else "")
        problems = submission_errors(script, version, stdin)
        errors = {k: [v] for k, v in problems.items()}
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class PackageSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.CharField()


class RuntimeSerializer(serializers.Serializer):
    version = serializers.CharField()
    default = serializers.BooleanField()
    packages = PackageSerializer(
        many=True, help_text="Importable besides the standard library (local backend)."
    )


class RuntimesSerializer(serializers.Serializer):
    default = serializers.CharField(help_text="The version used when none is given.")
    versions = RuntimeSerializer(many=True)


class K8sLimitsSerializer(serializers.Serializer):
    """The limits in force. The first fields keep the original platform's clients working."""

    cpu_limit = serializers.CharField(help_text='Kubernetes CPU limit, e.g. "1000m".')
    cpu_request = serializers.CharField(help_text='Kubernetes CPU request, e.g. "100m".')
    memory_limit = serializers.CharField(help_text='Kubernetes memory limit, e.g. "128Mi".')
    memory_request = serializers.CharField(help_text='Kubernetes memory request, e.g. "128Mi".')
    execution_timeout = serializers.IntegerField(help_text="Wall-time limit in whole seconds.")
    supported_runtimes = serializers.ListField(child=serializers.CharField())
    python_versions = serializers.ListField(child=serializers.CharField())
    default_python_version = serializers.CharField()
    backend = serializers.CharField(help_text='"local" or "kubernetes".')
    wall_time_s = serializers.FloatField()
    cpu_time_s = serializers.FloatField()
    memory_bytes = serializers.IntegerField()
    processes = serializers.IntegerField(help_text="Processes and threads.")
    tmp_bytes = serializers.IntegerField(help_text="Size of the private /tmp.")
    output_bytes = serializers.IntegerField(help_text="stdout and stderr together.")
    script_bytes = serializers.IntegerField()
    stdin_bytes = serializers.IntegerField()
    output_files = serializers.IntegerField(help_text="Files kept from /tmp/outputs.")
    files_bytes = serializers.IntegerField(help_text="Those output files' size together.")
    input_files = serializers.IntegerField(
        help_text="Files a request may bring (`files`), read-only in /tmp/inputs."
    )
    input_bytes = serializers.IntegerField(help_text="Those input files' size together.")
    network = serializers.BooleanField(help_text="Always false: runs have no network.")
    maxima = RequestLimitsSerializer(
        help_text="The most a request's `limits` may ask for (POST /api/v1/execute)."
    )


class ExampleSerializer(serializers.Serializer):
    slug = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField()
    python_version = serializers.CharField(required=False)
    script = serializers.CharField()
