"""Exports and analysis runs: each stored with its parameters, a hash of the data it used and the software version,
so a result can be reproduced and two runs compared."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from readerstudy.core.models import Job
from readerstudy.studies.models import Study


class ResultsJob(Job):
    """A statistician's background job (status, progress, message, errors, times: ``core.models.Job``), with the
    hash of the data it read and the software that made it."""

    study = models.ForeignKey(Study, on_delete=models.PROTECT)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    data_sha256 = models.CharField(max_length=64, blank=True, help_text="Hash of the exported long table.")
    software_version = models.CharField(max_length=100, blank=True)

    class Meta(Job.Meta):
        abstract = True


class Export(ResultsJob):
    class Kind(models.TextChoices):
        CSV = "csv", "Analysis-ready CSV + data dictionary (zip)"
        IMRMC = "imrmc", "iMRMC (.imrmc)"
        JAFROC = "jafroc", "RJafroc JAFROC workbook (.xlsx)"
        MRMCAOV = "mrmcaov", "MRMCaov CSV"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    file = models.FileField(upload_to="exports/", blank=True)
    n_reads = models.PositiveIntegerField(default=0)

    class Meta(ResultsJob.Meta):
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["csv", "imrmc", "jafroc", "mrmcaov"]), name="export_kind_valid"
            ),
            models.CheckConstraint(condition=Q(progress__gte=0) & Q(progress__lte=1), name="export_progress_0_1"),
        ]

    def __str__(self) -> str:
        return f"{self.study} {self.kind} export {self.pk} ({self.status})"


class AnalysisRun(ResultsJob):
    parameters = models.JSONField(help_text="cov, analyses, size bins, cluster by patient, modalities")
    result = models.JSONField(null=True, blank=True, help_text="Analysis JSON per stratum, model AUC, reading time.")
    figures = models.JSONField(default=dict, blank=True, help_text='{"roc": {"png": storage name, "svg": ...}}')

    class Meta(ResultsJob.Meta):
        constraints = [
            models.CheckConstraint(condition=Q(progress__gte=0) & Q(progress__lte=1), name="run_progress_0_1"),
        ]

    def __str__(self) -> str:
        return f"{self.study} analysis {self.pk} ({self.status})"
