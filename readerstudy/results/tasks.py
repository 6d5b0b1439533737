"""Background jobs (django-tasks): immediate in the demo, a worker backend in production.

A job records its own progress and outcome on its row; the pages poll it.
"""

import io
import zipfile

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from django_tasks import task

from readerstudy.results.models import AnalysisRun, Export, Job
from readerstudy.results.runs import run_analysis, software_version
from readerstudy.results.table import reads_table, table_sha256, to_csv


def _progress(job: Job, progress: float, message: str, status: str = Job.Status.RUNNING) -> None:
    job.progress, job.message, job.status = progress, message, status
    if status in (Job.Status.DONE, Job.Status.FAILED):
        job.finished_at = timezone.now()
    job.save(update_fields=["progress", "message", "status", "finished_at"])


def export_bytes(kind: str, study_name: str, table: "object") -> tuple[str, bytes]:
    """File name and content of one export format."""
    from readerstudy.results import dictionary, formats

    slug = "".join(c if c.isalnum() else "-" for c in study_name.lower()).strip("-")[:60]
    if kind == Export.Kind.CSV:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("reads.csv", to_csv(table))
            z.writestr("data_dictionary.csv", dictionary.dictionary_csv())
        return f"{slug}-reads.zip", buffer.getvalue()
    if kind == Export.Kind.IMRMC:
        return f"{slug}.imrmc", formats.write_imrmc(table, study_name).encode()
    if kind == Export.Kind.JAFROC:
        return f"{slug}-jafroc.xlsx", formats.write_jafroc(table)
    if kind == Export.Kind.MRMCAOV:
        return f"{slug}-mrmcaov.csv", formats.write_mrmcaov_csv(table).encode()
    raise ValueError(f"unknown export kind {kind!r}")


@task()
def run_export(export_id: int) -> None:
    export = Export.objects.select_related("study").get(pk=export_id)
    _progress(export, 0.1, "reading the study's reads")
    try:
        table = reads_table(export.study)
        _progress(export, 0.5, f"writing {export.get_kind_display()}")
        name, content = export_bytes(export.kind, export.study.name, table)
        export.file.save(f"{export.study_id}/{export.pk}-{name}", ContentFile(content), save=False)
        export.n_reads = len(table)
        export.data_sha256 = table_sha256(table)
        export.software_version = software_version()
        export.save(update_fields=["file", "n_reads", "data_sha256", "software_version"])
        _progress(export, 1.0, f"{len(table)} reads exported", Job.Status.DONE)
    except Exception as exc:
        _progress(export, export.progress, f"export failed: {exc}", Job.Status.FAILED)
        raise


def _figures(run: AnalysisRun, table: "object") -> dict:
    """ROC curves and the forest plot as PNG and SVG files in storage; none when the analysis failed."""
    from readerstudy.results import figures

    mrmc = run.result.get("mrmc") or {}
    if "error" in mrmc:
        return {}
    modalities = list(run.study.modalities.order_by("order"))
    aided = next((m.key for m in modalities if m.shows_dl), modalities[-1].key)
    unaided = next((m.key for m in modalities if not m.shows_dl), modalities[0].key)
    drawn = {
        "roc": figures.roc_curves(table, [m.key for m in modalities], result=mrmc),
        "forest": figures.forest_plot(figures.forest_rows(mrmc, aided, unaided)),
    }
    stored = {}
    for name, fig in drawn.items():
        stored[name] = {}
        for fmt in ("png", "svg"):
            path = default_storage.save(
                f"runs/{run.study_id}/{run.pk}/{name}.{fmt}", ContentFile(figures.render(fig, fmt))
            )
            stored[name][fmt] = path
    return stored


@task()
def run_analysis_task(run_id: int) -> None:
    run = AnalysisRun.objects.select_related("study").get(pk=run_id)
    _progress(run, 0.1, "reading the study's reads")
    try:
        from readerstudy.results.reading_time import reading_time_model

        table = reads_table(run.study)
        run.data_sha256 = table_sha256(table)
        run.software_version = software_version()
        _progress(run, 0.3, f"analysing {len(table)} reads")
        run.result = run_analysis(table, run.parameters, reading_time=reading_time_model)
        _progress(run, 0.8, "drawing figures")
        run.figures = _figures(run, table)
        run.save(update_fields=["result", "figures", "data_sha256", "software_version"])
        _progress(run, 1.0, "done", Job.Status.DONE)
    except Exception as exc:
        _progress(run, run.progress, f"analysis failed: {exc}", Job.Status.FAILED)
        raise
