"""Statisticians' pages: exports, analysis runs, the report (views parse input and call one action)."""

import base64
import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.safestring import mark_safe

from readerstudy.core.errors import ActionError
from readerstudy.results import actions, checklist, flow, jobs, methods, report
from readerstudy.results.figures import ci_percent as figures_ci
from readerstudy.results.models import AnalysisRun, Export
from readerstudy.results.runs import ANALYSES, COV_METHODS, default_parameters
from readerstudy.results.table import reads_table
from readerstudy.studies.models import Study

# One answer for a missing id and for another study's id alike.
NOT_FOUND = "no such study, export or analysis run"


def _check_results(request: HttpRequest, study: Study | None) -> None:
    # Non-members get "not found" for existing and missing ids alike: a 403 would confirm that an id exists.
    if study is None or not actions.may_see_results(request.user, study):
        raise Http404(NOT_FOUND)


def _study_for(request: HttpRequest, study_id: int) -> Study:
    study = Study.objects.filter(pk=study_id).first()
    _check_results(request, study)
    return study


@login_required
def index(request: HttpRequest) -> HttpResponse:
    studies = [s for s in Study.objects.exclude(status=Study.Status.DRAFT) if actions.may_see_results(request.user, s)]
    return render(request, "results/index.html", {"studies": studies})


@login_required
def study_results(request: HttpRequest, study_id: int) -> HttpResponse:
    study = _study_for(request, study_id)
    if request.method == "POST":
        try:
            if "export" in request.POST:
                export = jobs.request_export(request.user, study, request.POST["export"])
                messages.info(request, f"{export.get_kind_display()}: export {export.pk} requested")
            else:
                parameters = {
                    "cov": request.POST.get("cov", "jackknife"),
                    "analyses": request.POST.getlist("analyses"),
                    "size_bins_mm": [
                        float(b) for b in request.POST.get("size_bins_mm", "").replace(" ", "").split(",") if b
                    ],
                    "cluster_by_patient": request.POST.get("cluster_by_patient") == "on",
                    "frrc_convention": request.POST.get("frrc_convention", study.plan_frrc_convention),
                }
                run = jobs.start_analysis(request.user, study, parameters)
                return redirect("results:run", run.pk)
        except (ActionError, ValueError) as exc:
            messages.error(request, str(exc))
        return redirect("results:study", study.pk)
    table = reads_table(study)
    defaults = default_parameters(table, study.size_bins_mm, study.plan_frrc_convention)
    context = {
        "study": study,
        "comparisons_hidden": actions.comparisons_hidden(request.user, study),
        "interim_hidden": actions.INTERIM_HIDDEN,
        "n_reads": len(table),
        "exports": Export.objects.filter(study=study)[:20],
        "export_kinds": Export.Kind.choices,
        "runs": AnalysisRun.objects.filter(study=study)[:20],
        "defaults": defaults,
        "bins_text": ", ".join(f"{b:g}" for b in defaults["size_bins_mm"]),
        "cov_methods": COV_METHODS,
        "analyses": [(a, report.ANALYSIS_NAMES[a]) for a in ANALYSES],
        "frrc_conventions": Study.FrrcConvention.choices,
    }
    return render(request, "results/study.html", context)


@login_required
def download_export(request: HttpRequest, export_id: int) -> FileResponse:
    export = Export.objects.select_related("study").filter(pk=export_id).first()
    _check_results(request, export.study if export else None)
    if actions.comparisons_hidden(request.user, export.study):
        raise Http404(actions.INTERIM_HIDDEN)
    if export.status != Export.Status.DONE or not export.file:
        raise Http404("this export has no file (yet)")
    name = export.file.name.rsplit("/", 1)[-1].split("-", 1)[-1]
    return FileResponse(export.file.open("rb"), as_attachment=True, filename=name)


def _run_for(request: HttpRequest, run_id: int, *, comparisons: bool = True) -> AnalysisRun:
    """The run if the user may see its study's results; with ``comparisons`` also its modality comparisons
    (hidden from statisticians while the study runs without interim looks: 404, as for a missing run)."""
    run = AnalysisRun.objects.select_related("study", "created_by").filter(pk=run_id).first()
    _check_results(request, run.study if run else None)
    if comparisons and actions.comparisons_hidden(request.user, run.study):
        raise Http404(actions.INTERIM_HIDDEN)
    return run


def report_context(run: AnalysisRun, *, inline_figures: bool) -> dict:
    result = run.result or {}
    mrmc = result.get("mrmc") or {}
    alpha = (result.get("parameters") or run.parameters).get("alpha", 0.05)
    figures = {}
    for name, formats in (run.figures or {}).items():
        if inline_figures:  # the downloadable report carries its figures inside it
            with default_storage.open(formats["png"], "rb") as f:
                figures[name] = {"src": "data:image/png;base64," + base64.b64encode(f.read()).decode()}
        else:
            links = {fmt: reverse("results:figure", args=[run.pk, name, fmt]) for fmt in formats}
            figures[name] = {"src": links["png"], **links}
    sections = report.analysis_sections(mrmc, run.parameters.get("analyses", []), result.get("summary"), alpha)
    records = result.get("records") or {}
    return {
        "run": run,
        "study": run.study,
        "summary": result.get("summary"),
        "strata_rows": report.strata_rows(result.get("summary") or {}),
        "excluded": result.get("excluded") or {},  # complete-case analysis: what was left out and why
        "mrmc_error": mrmc.get("error"),
        "sections": sections if "error" not in mrmc else [],
        "ci_level": figures_ci(alpha),
        "methods": methods.methods_paragraphs(result, run.software_version),
        "binary": report.binary_sections(result.get("binary") or {}, result.get("summary"), alpha),
        "model": result.get("model") or {},
        "model_rows": report.model_rows(result.get("model") or {}),
        "model_comparison": report.model_comparison_rows(result.get("model") or {}),
        "interaction": result.get("interaction"),
        "completion": report.completion_rows(result.get("mrmc") or {}),
        "interaction_rows": report.interaction_rows(result.get("interaction") or {}),
        "reading_time": result.get("reading_time") or {},
        "reading_time_rows": report.reading_time_rows(result.get("reading_time") or {}),
        "backends": result.get("backends"),  # absent in runs from before the backend comparison
        "segmentation": result.get("segmentation"),  # absent in runs from before the segmentation section
        "segmentation_rows": report.segmentation_rows(result.get("segmentation") or {}),
        "backend_rows": report.backend_rows(result.get("backends") or {}),
        "backend_pairs": report.backend_pair_rows(result.get("backends") or {}),
        "decision_curve": result.get("decision_curve"),
        "decision": dict(
            zip(("thresholds", "rows"), report.decision_rows(result.get("decision_curve") or {}), strict=True)
        ),
        "checklist": checklist.checklist_rows(result),
        "flow_svg": mark_safe(flow.flow_svg(result["flow"])) if result.get("flow") else None,  # flow_svg escapes
        "figures": figures,
        "inline": inline_figures,
        "parameters_json": json.dumps(run.parameters, indent=1, sort_keys=True),
        # As the run found them; older runs (before the records were stored): as they are now.
        "readers": records["readers"] if "readers" in records else report.reader_profiles(run.study),
    }


@login_required
def run_report(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_for(request, run_id, comparisons=False)
    if actions.comparisons_hidden(request.user, run.study):
        context = {"run": run, "study": run.study, "interim_hidden": actions.INTERIM_HIDDEN}
        return render(request, "results/run.html", context)
    return render(request, "results/run.html", report_context(run, inline_figures=False))


@login_required
def run_status(request: HttpRequest, run_id: int) -> JsonResponse:
    run = _run_for(request, run_id, comparisons=False)  # status and progress only
    return JsonResponse({"status": run.status, "progress": run.progress, "message": run.message})


@login_required
def run_report_download(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_for(request, run_id)
    if run.status != AnalysisRun.Status.DONE:
        raise Http404("the run has not finished")
    html = render_to_string("results/report_standalone.html", report_context(run, inline_figures=True))
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="analysis-{run.pk}.html"'
    return response


@login_required
def run_result_download(request: HttpRequest, run_id: int) -> HttpResponse:
    """The run's whole stored result (parameters, plan, counts, every analysis, records) as JSON."""
    run = _run_for(request, run_id)
    if run.status != AnalysisRun.Status.DONE:
        raise Http404("the run has not finished")
    document = {
        "run": run.pk,
        "study": run.study.name,
        "created_at": run.created_at.isoformat(),
        "data_sha256": run.data_sha256,
        "software_version": run.software_version,
        "parameters": run.parameters,
        "result": run.result,
    }
    response = HttpResponse(json.dumps(document, indent=1, allow_nan=False), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="analysis-{run.pk}.json"'
    return response


@login_required
def run_figure(request: HttpRequest, run_id: int, name: str, fmt: str) -> FileResponse:
    run = _run_for(request, run_id)
    path = (run.figures or {}).get(name, {}).get(fmt)
    if path is None:
        raise Http404("no such figure")
    content_type = {"png": "image/png", "svg": "image/svg+xml"}[fmt]
    return FileResponse(
        default_storage.open(path, "rb"), content_type=content_type, filename=f"run{run.pk}-{name}.{fmt}"
    )
