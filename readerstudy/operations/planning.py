"""The planning page: power and sample size from a pilot, for a study's admins and statisticians.

The pilot is an uploaded ratings CSV (the long format ``python -m readerstudy.analysis`` reads) or the study's own
reads so far. The page shows the pilot's OR variance components, the power of J readers x K cases for an effect
size (RRRC, FRRC, RRFC), the K needed for a target power, and a J x K power grid; a study admin may store the pilot
as the study's (``studies.actions.set_plan_pilot``), from which the readiness checklist shows the planned power.
Computing changes nothing; only storing the pilot is an action.
"""

from __future__ import annotations

import io
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from readerstudy.core.errors import ActionError
from readerstudy.operations.access import NOT_FOUND, actor
from readerstudy.studies import actions
from readerstudy.studies.models import Membership, Study

PILOT_MAX_BYTES = 5 * 1024 * 1024
GRID_READERS = (3, 4, 5, 6, 8, 10, 15, 20)
GRID_CASES = (50, 100, 150, 200, 300, 400, 600)


def planning_study(user: Any, study_id: int) -> tuple[Study, bool]:
    """The study and whether ``user`` administers it; its admins and statisticians may plan, others get 404."""
    study = Study.objects.filter(pk=study_id).first()
    role = actions.role_of(user, study) if study is not None else None
    superuser = bool(getattr(user, "is_superuser", False))
    if study is None or not (superuser or role in (Membership.Role.ADMIN, Membership.Role.STATISTICIAN)):
        raise Http404(NOT_FOUND)
    return study, superuser or role == Membership.Role.ADMIN


class PlanForm(forms.Form):
    source = forms.ChoiceField(choices=[("upload", "an uploaded pilot (CSV)"), ("study", "this study's reads")])
    pilot = forms.FileField(required=False, help_text="reader, modality, case, truth, rating[, patient]")
    readers = forms.IntegerField(min_value=2, max_value=200)
    cases = forms.IntegerField(min_value=2, max_value=100_000, required=False)
    target_power = forms.FloatField(min_value=0.05, max_value=0.99, required=False)
    effect = forms.FloatField(min_value=0.001, max_value=0.5)
    cov = forms.ChoiceField(choices=[("jackknife", "jackknife"), ("delong", "DeLong"), ("unbiased", "unbiased")])
    cluster_by_patient = forms.BooleanField(required=False)
    store = forms.BooleanField(required=False, help_text="store this pilot as the study's (admins, draft only)")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("cases") is None and data.get("target_power") is None:
            raise forms.ValidationError("give the number of cases, or a target power to find it")
        pilot = data.get("pilot")
        if data.get("source") == "upload":
            if pilot is None:
                raise forms.ValidationError("upload a pilot CSV, or choose this study's reads")
            if pilot.size > PILOT_MAX_BYTES:
                raise forms.ValidationError(f"the pilot CSV is over {PILOT_MAX_BYTES // (1024 * 1024)} MB")
        return data


def _pilot_table(study: Study, data: dict[str, Any]) -> tuple[Any, str]:
    """The pilot's reads as a DataFrame and a description of where they came from."""
    import pandas as pd

    if data["source"] == "study":
        from readerstudy.results.runs import complete_cases
        from readerstudy.results.table import reads_table

        table, _ = complete_cases(reads_table(study))
        columns = ["reader", "modality", "case", "truth", "rating", "patient"]
        return table[columns], f"reads of study {study.name!r} ({len(table)} reads)"
    upload = data["pilot"]
    try:
        text = upload.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{upload.name}: not UTF-8 text") from None
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False), f"uploaded {upload.name}"[:200]


def _compute(study: Study, data: dict[str, Any]) -> dict[str, Any]:
    from readerstudy.analysis.errors import AnalysisInputError
    from readerstudy.analysis.power import cases_for_power, pilot_variance, power_from_pilot, power_grid

    table, source = _pilot_table(study, data)
    cluster = "patient" if data["cluster_by_patient"] else None
    try:
        variance = pilot_variance(table, cov=data["cov"], cluster=cluster)
    except AnalysisInputError as exc:
        raise ValueError(f"{source}: {exc}") from None
    out: dict[str, Any] = {"source": source, "variance": variance, "pilot": variance.as_dict()}
    if data.get("cases") is not None:
        power = power_from_pilot(variance, data["readers"], data["cases"], data["effect"])
        out["power"] = {"readers": data["readers"], "cases": data["cases"], "effect": data["effect"],
                        "rows": [{"analysis": a, **power[a]} for a in power["analyses"]]}  # fmt: skip
    if data.get("target_power") is not None:
        size = cases_for_power(variance, data["readers"], data["target_power"], data["effect"])
        out["sample_size"] = {"readers": data["readers"], "target": data["target_power"],
                              "rows": [{"analysis": a, **size[a]} for a in size["analyses"]]}  # fmt: skip
    grid = power_grid(variance, GRID_READERS, GRID_CASES, data["effect"], analysis="rrrc")
    out["grid"] = {"cases": GRID_CASES, "rows": list(zip(GRID_READERS, grid["rrrc"]["power"], strict=True))}
    return out


@login_required
def planning(request: HttpRequest, study_id: int) -> HttpResponse:
    study, is_admin = planning_study(request.user, study_id)
    initial = {"readers": max(study.memberships.filter(role="reader").count(), 2), "effect": study.plan_effect_size
               or 0.05, "cov": "jackknife", "source": "upload", "target_power": 0.8}  # fmt: skip
    form = PlanForm(request.POST or None, request.FILES or None, initial=initial)
    result, error = None, None
    if request.method == "POST" and form.is_valid():
        try:
            result = _compute(study, form.cleaned_data)
        except (ValueError, UnicodeDecodeError) as exc:
            error = str(exc)
        if result is not None and form.cleaned_data["store"]:
            try:
                actions.set_plan_pilot(actor(request), study, result["variance"], result["source"])
            except ActionError as exc:
                error = str(exc)
            else:
                messages.success(request, f"Stored as the study's pilot: {result['source']}.")
                return redirect("operations:planning", study.pk)
    context = {
        "study": study,
        "form": form,
        "result": result,
        "error": error,
        "is_admin": is_admin,
        "stored": study.plan_pilot,
        # The checklist's own row, without the rest of readiness (which lists every series in storage).
        "check": actions.planned_power_check(study)[0],
    }
    status = 400 if (request.method == "POST" and (form.errors or error)) else 200
    return render(request, "operations/planning.html", context, status=status)
