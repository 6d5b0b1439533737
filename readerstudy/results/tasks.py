"""Background jobs (django-tasks): immediate in the demo, a worker backend in production.

A task computes and calls ``results.actions`` only (progress, then the outcome, each on the job's row, which the
pages poll); it never saves a row itself. Started by ``results.jobs``.
"""

import io
import zipfile
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django_tasks import task

from readerstudy.results import actions
from readerstudy.results.models import AnalysisRun, Export
from readerstudy.results.runs import complete_cases, run_analysis, software_version
from readerstudy.results.table import reads_table, table_sha256, to_csv


def export_note(kind: str, table: Any) -> str:
    """What an export leaves out. reads.csv holds every read (not-assessable ones with an empty rating); the peer
    formats (iMRMC, JAFROC, MRMCaov) need a rating in every cell, so they hold the complete cases only, as the
    analysis does (runs.complete_cases), and this note names the cases left out."""
    if kind == Export.Kind.CSV:
        return ""
    excluded = complete_cases(table)[1]
    if not excluded["n_cases"]:
        return ""
    shown = ", ".join(excluded["cases"][:20]) + (", ..." if excluded["n_cases"] > 20 else "")
    return (
        f"{excluded['n_cases']} case(s) with a not-assessable read left out for every reader and modality "
        f"(complete-case, as in the analysis): {shown}"
    )


def export_bytes(kind: str, study_name: str, table: Any) -> tuple[str, bytes]:
    """File name and content of one export format (peer formats: complete cases only, see export_note)."""
    from readerstudy.results import dictionary, formats

    slug = "".join(c if c.isalnum() else "-" for c in study_name.lower()).strip("-")[:60]
    if kind == Export.Kind.CSV:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("reads.csv", to_csv(table))
            z.writestr("data_dictionary.csv", dictionary.dictionary_csv())
        return f"{slug}-reads.zip", buffer.getvalue()
    complete = complete_cases(table)[0]
    if kind == Export.Kind.IMRMC:
        description = f"{study_name}\n{export_note(kind, table)}".strip()
        return f"{slug}.imrmc", formats.write_imrmc(complete, description).encode()
    if kind == Export.Kind.JAFROC:
        return f"{slug}-jafroc.xlsx", formats.write_jafroc(complete)
    if kind == Export.Kind.MRMCAOV:
        return f"{slug}-mrmcaov.csv", formats.write_mrmcaov_csv(complete).encode()
    raise ValueError(f"unknown export kind {kind!r}")


@task()
def run_export(*, export_id: int) -> None:
    export = Export.objects.select_related("study", "created_by").get(pk=export_id)
    actions.report_progress(export, 0.1, "reading the study's reads")
    try:
        table = reads_table(export.study)
        actions.report_progress(export, 0.5, f"writing {export.get_kind_display()}")
        name, content = export_bytes(export.kind, export.study.name, table)
        actions.finish_export(
            export,
            file_name=name,
            content=content,
            note=export_note(export.kind, table),
            n_reads=len(table),
            data_sha256=table_sha256(table),
            software_version=software_version(),
        )
    except Exception as exc:
        actions.fail_job(export, f"export failed: {exc}")
        raise


def _figures(run: AnalysisRun, result: dict, table: "object") -> dict:
    """ROC curves and the forest plot as PNG and SVG files in storage; none when the analysis failed.

    Files, not rows: finish_analysis stores their names on the run.
    """
    from readerstudy.results import figures

    mrmc = result.get("mrmc") or {}
    if "error" in mrmc:
        return {}
    modalities = list(run.study.modalities.order_by("order"))
    aided, unaided = compared_modalities(run.study)
    drawn = {
        "roc": figures.roc_curves(table, [m.key for m in modalities], result=mrmc),
        "forest": figures.forest_plot(
            figures.forest_rows(mrmc, aided, unaided),
            title=figures.forest_title("rrrc", result["parameters"]["alpha"]),
            alpha=result["parameters"]["alpha"],
        ),
    }
    interaction = result.get("interaction") or {}
    if interaction and "error" not in interaction:
        drawn["interaction"] = figures.interaction_plot(interaction)
    curve = result.get("decision_curve") or {}
    if curve and "error" not in curve:
        drawn["decision_curve"] = figures.decision_curve_plot(curve)
    stored = {}
    for name, fig in drawn.items():
        stored[name] = {}
        for fmt in ("png", "svg"):
            path = default_storage.save(
                f"runs/{run.study_id}/{run.pk}/{name}.{fmt}", ContentFile(figures.render(fig, fmt))
            )
            stored[name][fmt] = path
    return stored


def compared_modalities(study: Any) -> tuple[str, str]:
    """(assisted, unassisted): the first modality that shows the DL output, and the first that does not."""
    modalities = list(study.modalities.order_by("order"))
    aided = next((m.key for m in modalities if m.shows_dl), modalities[-1].key)
    unaided = next((m.key for m in modalities if not m.shows_dl), modalities[0].key)
    return aided, unaided


@task()
def run_analysis_task(*, run_id: int) -> None:
    run = AnalysisRun.objects.select_related("study", "created_by").get(pk=run_id)
    actions.report_progress(run, 0.1, "reading the study's reads")
    try:
        from readerstudy.results import records
        from readerstudy.results.reading_time import reading_time_model
        from readerstudy.studies.plan import plan_state

        table = reads_table(run.study)
        actions.report_progress(run, 0.3, f"analysing {len(table)} reads")
        result = run_analysis(
            table,
            run.parameters,
            reading_time=reading_time_model,
            plan=plan_state(run.study),
            imported=records.imported_cases(run.study),
            compared=compared_modalities(run.study),
            backends=records.backend_predictions(run.study, table["case"].unique()),
            rating_scale=(run.study.rating_min, run.study.rating_max),
        )
        analysed = complete_cases(table)[0]  # the cases the analysis used
        result["records"] = records.study_records(run.study, analysed["case"].unique())
        actions.report_progress(run, 0.6, "evaluating the segmentation against the imported reference masks")
        result["segmentation"] = records.segmentation(run.study)
        actions.report_progress(run, 0.8, "drawing figures")
        actions.finish_analysis(
            run,
            result=result,
            figures=_figures(run, result, analysed),
            data_sha256=table_sha256(table),
            software_version=software_version(),
        )
    except Exception as exc:
        actions.fail_job(run, f"analysis failed: {exc}")
        raise
