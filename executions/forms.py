from typing import Any, cast

from django import forms
from django.db import IntegrityError, transaction
from django.templatetags.static import static

from executions import limits, runtimes
from executions.models import Execution, SavedScript, input_file_errors, submission_errors


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Any number of files from one <input type=file multiple> (Django's documented recipe)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        kwargs.setdefault("allow_empty_file", True)  # an empty input file is a file too
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[Any]:
        pieces = data if isinstance(data, (list, tuple)) else [data]
        return [f for f in (super(MultipleFileField, self).clean(d, initial) for d in pieces) if f]


class RunForm(forms.Form):
    """The editor: what to run. Validation is submission_errors(), shared with the API."""

    script = forms.CharField(
        required=False,
        strip=False,
        widget=forms.Textarea(
            attrs={
                "rows": 18,
                "spellcheck": "false",
                "autocapitalize": "off",
                "data-editor": "",
            }
        ),
    )
    python_version = forms.CharField(required=False, label="Python version")
    stdin = forms.CharField(
        required=False,
        strip=False,
        label="Input (stdin)",
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
    )
    interactive = forms.BooleanField(required=False, label="Interactive: type input while it runs")
    uploads = MultipleFileField(required=False, label="Input files")
    # Limits for this run (limits.REQUESTABLE); blank means the default in force.
    memory_mb = forms.IntegerField(required=False, min_value=16, label="Memory (MiB)")
    wall_time_s = forms.FloatField(required=False, min_value=0.1, label="Wall time (s)")
    cpu_time_s = forms.FloatField(required=False, min_value=0.1, label="CPU time (s)")
    output_kb = forms.IntegerField(required=False, min_value=1, label="Output (KiB)")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # editor.js links this stylesheet into the editor's shadow root.
        self.fields["script"].widget.attrs["data-editor-css"] = static("css/editor.css")
        defaults, top = limits.current(), limits.maxima()
        for name, (field, unit, _, _) in limits.REQUESTABLE.items():
            widget = self.fields[name].widget
            widget.attrs.update(
                max=f"{top[name]:g}", placeholder=f"{getattr(defaults, field) / unit:g}"
            )
            if name.endswith("_s"):
                widget.attrs["step"] = "0.1"

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data  # what Form.clean() returned
        for field, message in submission_errors(
            data.get("script", ""), data.get("python_version", ""), data.get("stdin", "")
        ).items():
            self.add_error(field, message)
        for message in input_file_errors(self.input_files()).values():
            self.add_error("uploads", message)
        for field, message in limits.request_errors(self.asked_limits()).items():
            self.add_error(field, message)
        return data

    def input_files(self) -> list[tuple[str, bytes]]:
        """The uploaded input files, (name, contents), read once."""
        if not hasattr(self, "_input_files"):
            uploads = self.cleaned_data.get("uploads") or []
            self._input_files = [(u.name, u.read()) for u in uploads]
        return self._input_files

    def limit_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in limits.REQUESTABLE]

    def asked_limits(self) -> dict[str, float]:
        """The limits this run asks for, by limits.REQUESTABLE's names (those filled in)."""
        data = self.cleaned_data
        return {n: data[n] for n in limits.REQUESTABLE if data.get(n) is not None}

    @staticmethod
    def versions() -> list[str]:
        return runtimes.versions()


class SaveScriptForm(forms.ModelForm):
    """Save the editor's content under a name (the owner is set by the view)."""

    class Meta:
        model = SavedScript
        fields = ["name", "description", "script", "python_version", "stdin"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}
        labels = {"stdin": "Input (stdin)"}

    def __init__(self, *args, owner=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner = owner
        if "script" in self.fields:
            # submission_errors() says what is wrong with an empty script, in its own words.
            script = cast(forms.CharField, self.fields["script"])  # a TextField's form field
            script.required = False
            script.strip = False
        if "stdin" in self.fields:
            cast(forms.CharField, self.fields["stdin"]).strip = False  # input is as typed

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if SavedScript.name_taken(self.owner, name, self.instance.pk):
            raise forms.ValidationError(self.taken_message(name))
        return name

    @staticmethod
    def taken_message(name: str) -> str:
        return f"You already have a script called “{name}”."

    def save_or_taken(self, **fields: Any) -> SavedScript | None:
        """Save (with fields set on the instance), or None with the name's error when another
        request took the name a moment ago: the database's constraint has the last word."""
        saved = self.save(commit=False)
        for name, value in fields.items():
            setattr(saved, name, value)
        try:
            with transaction.atomic():
                saved.save()
        except IntegrityError:
            self.add_error("name", self.taken_message(saved.name))
            return None
        return saved

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data  # what ModelForm.clean() returned
        if self.instance.pk is None and (problem := SavedScript.room_problem(self.owner)):
            self.add_error(None, problem)
        if "script" in self.fields:
            for field, message in submission_errors(
                data.get("script", ""), data.get("python_version", ""), data.get("stdin", "")
            ).items():
                if field in self.fields:
                    self.add_error(field, message)
        return data


class RenameScriptForm(SaveScriptForm):
    class Meta(SaveScriptForm.Meta):
        fields = ["name", "description"]


class InputForm(forms.Form):
    """A line typed into a running interactive run, or its end (eof)."""

    text = forms.CharField(required=False, strip=False, label="Input")
    eof = forms.BooleanField(required=False, label="End of input")

    def __init__(self, *args: Any, sent: int, cap: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent = sent  # bytes of input this run was given already, its stdin included
        self.cap = cap  # the run's own stdin cap

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data  # what Form.clean() returned
        if "eof" not in self.data and "text" not in self.data:
            self.add_error("text", "Send a line of text, or the end of input.")
            return data
        if data.get("eof"):
            return data
        # Input while it runs is capped as stdin is: all of it together.
        size = self.sent + len((data.get("text", "") + "\n").encode("utf-8", "surrogatepass"))
        if size > self.cap:
            self.add_error(
                "text",
                f"This run's input would be {limits.human_bytes(size)}; "
                f"the limit is {limits.human_bytes(self.cap)}.",
            )
        return data


class ShareForm(forms.Form):
    share = forms.ChoiceField(
        choices=[("on", "Share"), ("off", "Stop sharing")], label="Share link"
    )


class HistoryFilter(forms.Form):
    status = forms.ChoiceField(
        required=False, choices=[("", "Any status"), *Execution.Status.choices]
    )
    version = forms.CharField(required=False, max_length=10, label="Python version")
