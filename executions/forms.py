from typing import Any, cast

from django import forms
from django.db import IntegrityError, transaction
from django.templatetags.static import static

from executions import runtimes
from executions.models import Execution, SavedScript, submission_errors


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

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # editor.js links this stylesheet into the editor's shadow root.
        self.fields["script"].widget.attrs["data-editor-css"] = static("css/editor.css")

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data  # what Form.clean() returned
        for field, message in submission_errors(
            data.get("script", ""), data.get("python_version", ""), data.get("stdin", "")
        ).items():
            self.add_error(field, message)
        return data

    @staticmethod
    def versions() -> list[str]:
        return runtimes.versions()


class SaveScriptForm(forms.ModelForm):
    """Save the editor's content under a name (the owner is set by the view)."""

    class Meta:
        model = SavedScript
        fields = ["name", "description", "script", "python_version"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, owner=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner = owner
        if "script" in self.fields:
            # submission_errors() says what is wrong with an empty script, in its own words.
            script = cast(forms.CharField, self.fields["script"])  # a TextField's form field
            script.required = False
            script.strip = False

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
        if "script" in self.fields:
            for field, message in submission_errors(
                data.get("script", ""), data.get("python_version", ""), ""
            ).items():
                if field in self.fields:
                    self.add_error(field, message)
        return data


class RenameScriptForm(SaveScriptForm):
    class Meta(SaveScriptForm.Meta):
        fields = ["name", "description"]


class HistoryFilter(forms.Form):
    status = forms.ChoiceField(
        required=False, choices=[("", "Any status"), *Execution.Status.choices]
    )
    version = forms.CharField(required=False, max_length=10, label="Python version")
