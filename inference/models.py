"""Precomputed DL predictions per case: probability, overlay, and the identity of the model that made them."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from readerstudy.core.models import Job
from readerstudy.studies.models import Case


class Prediction(models.Model):
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="predictions")
    model_name = models.CharField(max_length=100)
    model_version = models.CharField(max_length=50)
    weights_sha256 = models.CharField(max_length=64)
    inputs_sha256 = models.CharField(max_length=64, help_text="Hash of the series and parameters it was made from.")
    probability = models.FloatField(help_text="Model probability that the lesion is a CRLM.")
    # Labelmap over the case's series, uint8, slices in the order of ImageSeries.slice_files, gzip-compressed:
    # the format the viewer loads fastest. The DICOM SEG is the interoperable copy.
    overlay = models.FileField(upload_to="overlays/", blank=True)
    overlay_shape = models.JSONField(default=list, blank=True, help_text="[slices, rows, columns]")
    overlay_labels = models.JSONField(default=list, blank=True, help_text='[{"value": 1, "name": "liver"}, ...]')
    seg = models.FileField(upload_to="seg/", blank=True, help_text="DICOM SEG of the same segmentation.")
    lesions = models.JSONField(default=list, blank=True, help_text="Measured lesion instances.")
    runtime_seconds = models.FloatField(default=0)
    device = models.CharField(max_length=50, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["case", "-created_at", "-id"]
        get_latest_by = "created_at"
        constraints = [
            models.CheckConstraint(condition=Q(probability__gte=0) & Q(probability__lte=1), name="prediction_prob_0_1"),
            models.UniqueConstraint(
                fields=["case", "model_name", "weights_sha256", "inputs_sha256"], name="prediction_unique_per_input"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.case} {self.model_name} {self.model_version}: {self.probability:.2f}"


# The segmentation backends a precompute run may use (inference.precompute.load_models builds them).
BACKENDS = ("phantom-unet", "totalsegmentator")
# The lesion classifiers a precompute run may use (README "DL inference"; load_models builds them from the files
# in INFERENCE_MODELS_DIR): crops through the lesion (DenseNet), IBSI radiomics + L1-logistic, every slice + top-k,
# the crops of several series of the case (contrast phases) as channels.
CLASSIFIERS = ("densenet-crops", "radiomics", "slice-topk", "multi-series")


class PrecomputeRun(Job):
    """A background precompute batch started from the admin; its row is the status page.

    Status, progress (handled cases / cases), message, errors and times come from ``core.models.Job``.
    """

    study = models.ForeignKey("studies.Study", on_delete=models.PROTECT, related_name="precompute_runs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    backend = models.CharField(max_length=30)
    classifier = models.CharField(max_length=30, default="densenet-crops", help_text="The lesion classifier.")
    device = models.CharField(max_length=10)
    n_cases = models.PositiveIntegerField(default=0)
    n_done = models.PositiveIntegerField(default=0)
    n_skipped = models.PositiveIntegerField(default=0)
    n_failed = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"precompute {self.pk} of {self.study} ({self.status})"

    @property
    def n_handled(self) -> int:
        return self.n_done + self.n_skipped + self.n_failed


class SegmentationEvaluation(models.Model):
    """A series' segmentation metrics (``seg_evaluation.evaluate_case``) of its shown prediction against its imported
    reference mask, reused by later analysis runs while ``key`` (a hash of everything that determines them, see
    ``inference.evaluation.evaluation_key``) is unchanged. Derived: one row per series, replaced when the key
    changes; not backed up."""

    series = models.OneToOneField(
        "studies.ImageSeries", on_delete=models.CASCADE, related_name="segmentation_evaluation"
    )
    key = models.CharField(max_length=64, help_text="sha256 of prediction, reference mask, settings and version.")
    result = models.JSONField(help_text="evaluate_case's dict; non-finite floats as {'$float': 'inf'}.")
    seconds = models.FloatField(default=0, help_text="What computing it took.")
    created_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"segmentation evaluation of {self.series_id} ({self.key[:12]})"
