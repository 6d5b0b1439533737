"""The one door for statisticians' mutations: request an export, start an analysis run."""

from typing import Any

from django.db import transaction

from readerstudy.errors import InvalidInput, NotAllowed
from readerstudy.reading import audit
from readerstudy.results.models import AnalysisRun, Export
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


def _check_has_reads(study: Study) -> None:
    if study.status == Study.Status.DRAFT:
        raise InvalidInput(f"study {study.name!r} has not been launched: there are no reads yet")


def request_export(actor: Any, study: Study, kind: str) -> Export:
    """Queue an export; the task writes the file (in the demo it runs at once)."""
    from readerstudy.results.tasks import run_export

    check_results_access(actor, study)
    _check_has_reads(study)
    if kind not in Export.Kind.values:
        raise InvalidInput(f"export kind {kind!r}: expected one of {', '.join(Export.Kind.values)}")
    with transaction.atomic():
        export = Export.objects.create(study=study, created_by=actor, kind=kind)
        audit.record(actor, "request_export", export, study=study, after={"kind": kind})
        transaction.on_commit(lambda: run_export.enqueue(export.pk))
    return export


def start_analysis(actor: Any, study: Study, parameters: dict) -> AnalysisRun:
    from readerstudy.results.runs import check_parameters
    from readerstudy.results.tasks import run_analysis_task

    check_results_access(actor, study)
    _check_has_reads(study)
    try:
        parameters = check_parameters(parameters)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    with transaction.atomic():
        run = AnalysisRun.objects.create(study=study, created_by=actor, parameters=parameters)
        audit.record(actor, "start_analysis", run, study=study, after=parameters)
        transaction.on_commit(lambda: run_analysis_task.enqueue(run.pk))
    return run
