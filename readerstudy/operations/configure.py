"""The configuration page: a draft study's set-up and reading configuration, edited through
``studies.actions.update_study``; after launch the same values, read-only (no control the server would refuse)."""

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from readerstudy.core.errors import ActionError
from readerstudy.operations.access import actor, admin_study
from readerstudy.studies import actions, plan
from readerstudy.studies.models import INSTRUCTIONS_MAX_CHARS, Study

LIST_TEXT_MAX_CHARS = 10_000  # a textarea of one entry per line (legend, labels, reasons, presets)


class ConfigForm(forms.Form):
    """Parses the page's text into the values update_study takes; the action validates them (bounds, choices)."""

    name = forms.CharField(max_length=actions.NAME_MAX_CHARS)
    description = forms.CharField(widget=forms.Textarea, required=False, max_length=actions.DESCRIPTION_MAX_CHARS)
    design = forms.ChoiceField(choices=Study.Design.choices)
    washout_days = forms.IntegerField(min_value=0, max_value=actions.WASHOUT_DAYS_MAX)
    patient_grouping = forms.ChoiceField(choices=Study.PatientGrouping.choices)
    size_bins_mm = forms.CharField(max_length=200, help_text="Increasing upper edges in mm, e.g. 10, 30")
    question = forms.CharField(widget=forms.Textarea, max_length=actions.TEXT_FIELD_MAX_CHARS["question"])
    scale_low_label = forms.CharField(max_length=actions.TEXT_FIELD_MAX_CHARS["scale_low_label"])
    scale_high_label = forms.CharField(max_length=actions.TEXT_FIELD_MAX_CHARS["scale_high_label"])
    instructions = forms.CharField(widget=forms.Textarea, max_length=INSTRUCTIONS_MAX_CHARS)
    label_legend = forms.CharField(
        widget=forms.Textarea,
        required=False,
        max_length=LIST_TEXT_MAX_CHARS,
        help_text="label: explanation, one a line",
    )
    window_presets = forms.CharField(
        widget=forms.Textarea, max_length=LIST_TEXT_MAX_CHARS, help_text="key, name, width, level (HU), one a line"
    )
    default_preset = forms.CharField(max_length=10)
    hanging_layout = forms.ChoiceField(choices=Study.HangingLayout.choices)
    overlay_mode = forms.ChoiceField(choices=Study.OverlayMode.choices)
    overlay_hidden_labels = forms.CharField(
        widget=forms.Textarea, required=False, max_length=LIST_TEXT_MAX_CHARS, help_text="one label a line"
    )
    not_assessable_reasons = forms.CharField(
        widget=forms.Textarea, max_length=LIST_TEXT_MAX_CHARS, help_text="one reason a line"
    )
    show_clinical = forms.BooleanField(
        required=False, help_text="the manifest's clinical covariates and case text, in every modality"
    )
    # The statistical plan (studies.plan checks the values against the scale and each other).
    reader_groups = forms.IntegerField(
        min_value=1, max_value=plan.READER_GROUPS_MAX, help_text="1: fully crossed; 2 or more: split-plot groups"
    )
    plan_threshold = forms.IntegerField(
        required=False, min_value=0, max_value=100, help_text="a read at or above it calls the case positive"
    )
    plan_hypothesis = forms.ChoiceField(choices=Study.Hypothesis.choices)
    plan_margin = forms.FloatField(min_value=0, max_value=plan.MARGIN_MAX, help_text="non-inferiority margin")
    plan_frrc_convention = forms.ChoiceField(choices=Study.FrrcConvention.choices)
    plan_effect_size = forms.FloatField(required=False, min_value=0, max_value=0.5, help_text="e.g. 0.05 in AUC")

    def clean_size_bins_mm(self) -> list[float]:
        try:
            return [float(b) for b in self.cleaned_data["size_bins_mm"].replace(" ", "").split(",") if b]
        except ValueError:
            raise forms.ValidationError("numbers separated by commas, e.g. 10, 30") from None

    def clean_label_legend(self) -> dict[str, str]:
        legend: dict[str, str] = {}
        for line in _lines(self.cleaned_data["label_legend"]):
            label, sep, text = line.partition(":")
            if not sep:
                raise forms.ValidationError(f"{line!r}: expected 'label: explanation'")
            legend[label.strip()] = text.strip()
        return legend

    def clean_window_presets(self) -> list[dict[str, Any]]:
        presets = []
        for line in _lines(self.cleaned_data["window_presets"]):
            parts = [p.strip() for p in line.split(",")]
            try:
                key, name, width, level = parts
                presets.append({"key": key, "name": name, "width": float(width), "level": float(level)})
            except ValueError:
                raise forms.ValidationError(f"{line!r}: expected 'key, name, width, level'") from None
        return presets

    def clean_overlay_hidden_labels(self) -> list[str]:
        return _lines(self.cleaned_data["overlay_hidden_labels"])

    def clean_not_assessable_reasons(self) -> list[str]:
        return _lines(self.cleaned_data["not_assessable_reasons"])


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def initial(study: Study) -> dict[str, Any]:
    """The study's values as the form's text."""
    return {
        **{field: getattr(study, field) for field in ConfigForm.base_fields},
        "size_bins_mm": ", ".join(_number(b) for b in study.size_bins_mm),
        "label_legend": "\n".join(f"{k}: {v}" for k, v in (study.label_legend or {}).items()),
        "window_presets": "\n".join(
            f"{p.get('key')}, {p.get('name')}, {_number(p.get('width'))}, {_number(p.get('level'))}"
            for p in study.window_presets
            if isinstance(p, dict)
        ),
        "overlay_hidden_labels": "\n".join(study.overlay_hidden_labels or []),
        "not_assessable_reasons": "\n".join(study.not_assessable_reasons or []),
    }


@login_required
def configure(request: HttpRequest, study_id: int) -> HttpResponse:
    study = admin_study(request.user, study_id)
    editable = study.status == Study.Status.DRAFT
    if request.method == "POST" and not editable:
        messages.error(request, f"The study is {study.get_status_display().lower()}: its set-up is frozen.")
        return redirect("operations:configure", study.pk)
    form = ConfigForm(request.POST if request.method == "POST" else None, initial=initial(study))
    if request.method == "POST" and form.is_valid():
        changes = {k: v for k, v in form.cleaned_data.items() if k in form.changed_data}
        try:
            if changes:
                actions.update_study(actor(request), study, **changes)
        except ActionError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Saved." if changes else "Nothing changed.")
            return redirect("operations:configure", study.pk)
    context = {
        "study": study,
        "form": form,
        "editable": editable,
        "values": initial(study),
        "modalities": list(study.modalities.order_by("order")),
    }
    return render(request, "operations/configure.html", context, status=400 if form.errors else 200)
