"""The one door for statisticians' mutations: queue an export or an analysis run, report its progress, finish it.

Enqueueing is not here: ``results.jobs`` queues a job through this module and enqueues its task, which calls
this module back (jobs -> tasks -> actions, no circle).
"""

from typing import Any

from django.core.files.base import ContentFile
from django.db import transaction

from readerstudy.core import audit
from readerstudy.core.errors import InvalidInput, NotAllowed
from readerstudy.core.jobs import finish_job
from readerstudy.core.models import Verb
from readerstudy.core.types import Actor
from readerstudy.results.models import AnalysisRun, Export, ResultsJob
from readerstudy.studies.models import Membership, Study

RESULTS_ROLES = (Membership.Role.STATISTICIAN, Membership.Role.ADMIN)


def may_see_results(user: Any, study: Study) -> bool:
    """Truth-bearing exports and results: the study's statisticians and admins only (never its readers)."""
    if not getattr(user, "is_authenticated", False):
        return False
    if user.is_superuser:
        return True
    return Membership.objects.filter(study=study, user=user, role__in=RESULTS_ROLES).exists()


def check_results_access(user: Any, study: Study) -> None:
    if not may_see_results(user, study):
        raise NotAllowed(f"{user} is not a statistician or admin of study {study.name!r}")


INTERIM_HIDDEN = (
    "the study is still running and its admins have not allowed interim looks: modality comparisons (analysis "
    "runs, reports, exports of the ratings) are available once the study is closed"
)


def comparisons_hidden(user: Any, study: Study) -> bool:
    """Interim looks: while a study runs (launched, not closed) its statisticians see counts and completeness, but
    no modality comparison (analysis runs and their reports, exports carrying ratings by modality) unless a study
    admin allowed interim analysis (``Study.interim_analysis_allowed``, set through an audited action). The study's
    admins and superusers are not gated: they decide on the interim look."""
    if study.status != Study.Status.LAUNCHED or study.interim_analysis_allowed:
        return False
    if getattr(user, "is_superuser", False):
        return False
    return not Membership.objects.filter(study=study, user=user, role=Membership.Role.ADMIN).exists()


def check_comparisons_visible(user: Any, study: Study) -> None:
    if comparisons_hidden(user, study):
        raise NotAllowed(INTERIM_HIDDEN)


def _check_has_reads(study: Study) -> None:
    if study.status == Study.Status.DRAFT:
        raise InvalidInput(f"study {study.name!r} has not been launched: there are no reads yet")


def queue_export(actor: Actor, study: Study, kind: str) -> Export:
    """Write a queued export (``jobs.request_export`` enqueues its task)."""
    check_results_access(actor, study)
    _check_has_reads(study)
    check_comparisons_visible(actor, study)
    if kind not in Export.Kind.values:
        raise InvalidInput(f"export kind {kind!r}: expected one of {', '.join(Export.Kind.values)}")
    with transaction.atomic():
        export = Export.objects.create(study=study, created_by=actor, kind=kind)
        audit.record(actor, Verb.REQUEST_EXPORT, export, study=study, after={"kind": kind})
    return export


def queue_analysis(actor: Actor, study: Study, parameters: dict) -> AnalysisRun:
    """Write a queued analysis run with checked parameters (``jobs.start_analysis`` enqueues its task); without
    an ``frrc_convention`` the run takes the plan's."""
    from readerstudy.results.runs import check_parameters

    check_results_access(actor, study)
    _check_has_reads(study)
    check_comparisons_visible(actor, study)
    try:
        # The FRRC convention defaults to the study's plan (the form offers the other).
        parameters = check_parameters({"frrc_convention": study.plan_frrc_convention, **parameters})
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    with transaction.atomic():
        run = AnalysisRun.objects.create(study=study, created_by=actor, parameters=parameters)
        audit.record(actor, Verb.START_ANALYSIS, run, study=study, after=parameters)
    return run


# --- called by the tasks ------------------------------------------------------------------------------------------


def report_progress(job: ResultsJob, fraction: float, message: str) -> None:
    """A running job's status line for the polling page (not audited: the outcome is)."""
    job.set_progress(fraction, 1.0, message=message)


def finish_export(
    export: Export,
    *,
    file_name: str,
    content: bytes,
    n_reads: int,
    data_sha256: str,
    software_version: str,
    note: str = "",
) -> Export:
    """Store the export's file and mark it done; one FINISH_JOB event. ``note``: what the file leaves out."""
    # Storage is not transactional: the file is written first, so a stored "done" always has its file.
    export.file.save(f"{export.study_id}/{export.pk}-{file_name}", ContentFile(content), save=False)
    export.n_reads, export.data_sha256, export.software_version = n_reads, data_sha256, software_version
    finish_job(
        export,
        Export.Status.DONE,
        actor=export.created_by,
        study=export.study,
        message=f"{n_reads} reads exported" + (f"; {note}" if note else ""),
        also=("file", "n_reads", "data_sha256", "software_version"),
        after={"kind": export.kind, "reads": n_reads, "data_sha256": data_sha256, **({"note": note} if note else {})},
    )
    return export


def finish_analysis(
    run: AnalysisRun, *, result: dict, figures: dict, data_sha256: str, software_version: str
) -> AnalysisRun:
    """Store the analysis result and its figures' storage names and mark the run done; one FINISH_JOB event."""
    run.result, run.figures = result, figures
    run.data_sha256, run.software_version = data_sha256, software_version
    finish_job(
        run,
        AnalysisRun.Status.DONE,
        actor=run.created_by,
        study=run.study,
        message="done",
        also=("result", "figures", "data_sha256", "software_version"),
        after={"data_sha256": data_sha256, "software_version": software_version},
    )
    return run


def fail_job(job: ResultsJob, message: str) -> ResultsJob:
    """Mark an export or analysis run failed (it keeps how far it got); one FINISH_JOB event."""
    return finish_job(job, job.Status.FAILED, actor=job.created_by, study=job.study, message=message)
