"""Study set-up: studies, modalities, members, patients, image series, cases (target lesions) and truth.

Invariants that matter for the science are database constraints, not only Python checks, so that no code path
(admin, shell, a future API) can store a study the analysis would misread.
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from readerstudy.analysis.strata import DEFAULT_SIZE_BINS_MM, size_stratum
from readerstudy.core.models import Job
from readerstudy.studies.roles import MAX_SERIES_PER_CASE, SERIES_ROLE_MAX, role_label


def default_size_bins() -> list[float]:
    return list(DEFAULT_SIZE_BINS_MM)


def default_window_presets() -> list[dict]:
    """Keys 1-5 in the viewer: width/level in HU."""
    return [
        {"key": "1", "name": "Soft tissue", "width": 400, "level": 40},
        {"key": "2", "name": "Liver", "width": 150, "level": 90},
        {"key": "3", "name": "Narrow liver", "width": 100, "level": 100},
        {"key": "4", "name": "Bone", "width": 1800, "level": 400},
        {"key": "5", "name": "Lung", "width": 1500, "level": -600},
    ]


DEFAULT_QUESTION = "How likely is the marked lesion a metastasis?"
DEFAULT_INSTRUCTIONS = (
    "Each item shows one target lesion in a portal-venous CT, marked in yellow. Rate how likely the marked lesion "
    "is a colorectal liver metastasis (CRLM) rather than a hemangioma, from 0 (certainly hemangioma) to 100 "
    "(certainly metastasis). Use the whole scale.\n\n"
    "In aided items the deep-learning segmentation and the model's probability are shown; in unaided items they "
    "are not. Rate every lesion on the images you are shown; scroll, window and measure as you would in clinical "
    "reading.\n\n"
    "If the marked lesion cannot be assessed (not visible, insufficient image quality), mark the item as not "
    "assessable and give the reason instead of a rating. A submitted rating is final."
)
INSTRUCTIONS_MAX_CHARS = 20_000
LABEL_LEGEND_MAX_ITEMS = 16
LABEL_LEGEND_TEXT_MAX_CHARS = 200
NOT_ASSESSABLE_REASONS_MAX = 10
NOT_ASSESSABLE_REASON_MAX_CHARS = 100
READER_SPECIALTY_MAX_CHARS = 100
READER_YEARS_MAX = 60
READER_TRAINING_MAX_CHARS = 500


def default_label_legend() -> dict[str, str]:
    return {}


def default_overlay_hidden_labels() -> list[str]:
    return ["liver"]


def default_not_assessable_reasons() -> list[str]:
    return ["Lesion not visible", "Image quality insufficient", "Other"]


class Study(models.Model):
    class Design(models.TextChoices):
        CROSSOVER = "crossover", "Crossover with washout"
        SEQUENTIAL = "sequential", "Sequential (unaided, then aided)"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        LAUNCHED = "launched", "Launched"
        CLOSED = "closed", "Closed"

    class PatientGrouping(models.TextChoices):
        NONE = "none", "Ignore patients"
        ADJACENT = "adjacent", "Same block, read one after another"
        SPREAD = "spread", "Same block, spread apart in the session"

    class HangingLayout(models.TextChoices):
        ONE = "1x1", "One viewport"
        ONE_BY_TWO = "1x2", "Two viewports side by side"
        TWO_BY_TWO = "2x2", "Four viewports"

    class Hypothesis(models.TextChoices):
        SUPERIORITY = "superiority", "Superiority"
        NON_INFERIORITY = "non_inferiority", "Non-inferiority (with the margin)"

    class FrrcConvention(models.TextChoices):
        TRUNCATED = "truncated", "max(Cov2 - Cov3, 0) (Iowa program, RJafroc)"
        UNTRUNCATED = "untruncated", "Cov2 - Cov3 untruncated (MRMCaov)"

    class OverlayMode(models.TextChoices):
        FILL_OUTLINE = "fill_outline", "Filled with outline"
        OUTLINE = "outline", "Outline only"
        OFF = "off", "Off"

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    design = models.CharField(max_length=20, choices=Design.choices, default=Design.CROSSOVER)
    washout_days = models.PositiveIntegerField(default=28)
    patient_grouping = models.CharField(max_length=20, choices=PatientGrouping.choices, default=PatientGrouping.NONE)
    seed = models.BigIntegerField(help_text="Seed of the stored randomisation; fixed at creation.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    rating_min = models.PositiveSmallIntegerField(default=0)
    rating_max = models.PositiveSmallIntegerField(default=100)
    size_bins_mm = models.JSONField(
        default=default_size_bins,
        help_text="Increasing upper edges in mm; [10, 30] means <=10, 10-30, >30 (an edge belongs to the lower bin).",
    )
    window_presets = models.JSONField(default=default_window_presets, help_text="Viewer presets on keys 1-5.")
    # What the reading page shows (frozen at launch like the rest of the set-up; validated in actions).
    question = models.CharField(max_length=300, default=DEFAULT_QUESTION, help_text="Shown above the rating.")
    scale_low_label = models.CharField(max_length=100, default="certainly hemangioma")
    scale_high_label = models.CharField(max_length=100, default="certainly metastasis")
    instructions = models.TextField(
        default=DEFAULT_INSTRUCTIONS,
        help_text=f"Plain text shown before a reader's first session (at most {INSTRUCTIONS_MAX_CHARS} characters).",
    )
    label_legend = models.JSONField(
        default=default_label_legend,
        blank=True,
        help_text='Optional explanation per overlay label, e.g. {"target lesion": "the lesion to rate"}.',
    )
    default_preset = models.CharField(max_length=10, default="2", help_text="Key of the window preset shown first.")
    hanging_layout = models.CharField(max_length=10, choices=HangingLayout.choices, default=HangingLayout.ONE)
    overlay_mode = models.CharField(max_length=20, choices=OverlayMode.choices, default=OverlayMode.OUTLINE)
    overlay_hidden_labels = models.JSONField(
        default=default_overlay_hidden_labels, blank=True, help_text="Overlay labels hidden by default."
    )
    not_assessable_reasons = models.JSONField(
        default=default_not_assessable_reasons,
        help_text="Reasons a reader may give instead of a rating (at most 10, each at most 100 characters).",
    )
    interim_analysis_allowed = models.BooleanField(
        default=False,
        help_text="While the study runs, statisticians may see modality comparisons (an interim look); "
        "counts and completeness are always visible.",
    )
    show_clinical = models.BooleanField(
        default=False,
        help_text="Readers see each case's clinical covariates and case text (from the manifest) in every modality.",
    )
    # Split-plot: readers in this many groups, each group reading its own block of cases in every modality
    # (allocated at launch, balanced by truth and size stratum, a patient's lesions in one block); 1: fully crossed.
    reader_groups = models.PositiveSmallIntegerField(default=1)
    # The statistical plan, fixed before launch (frozen with the rest of the set-up): the rating threshold of the
    # binary endpoints (a case is called positive when rating >= it; None: no binary endpoints), the hypothesis
    # and its margin on the figure-of-merit scale, the FRRC convention, and the effect size the study is sized for.
    plan_threshold = models.PositiveSmallIntegerField(null=True, blank=True)
    plan_hypothesis = models.CharField(max_length=20, choices=Hypothesis.choices, default=Hypothesis.SUPERIORITY)
    plan_margin = models.FloatField(default=0.0)
    plan_frrc_convention = models.CharField(
        max_length=12, choices=FrrcConvention.choices, default=FrrcConvention.TRUNCATED
    )
    plan_effect_size = models.FloatField(null=True, blank=True)
    # The pilot's OR variance components (readerstudy.analysis.power.PilotVariance) and where they came from: what
    # the planned power of the configured study is computed from (the planning page sets it).
    plan_pilot = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    launched_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "studies"
        constraints = [
            models.CheckConstraint(condition=Q(design__in=["crossover", "sequential"]), name="study_design_valid"),
            models.CheckConstraint(condition=Q(status__in=["draft", "launched", "closed"]), name="study_status_valid"),
            models.CheckConstraint(
                condition=Q(patient_grouping__in=["none", "adjacent", "spread"]), name="study_grouping_valid"
            ),
            models.CheckConstraint(condition=Q(rating_min__lt=F("rating_max")), name="study_rating_scale_ordered"),
            models.CheckConstraint(condition=Q(rating_max__lte=100), name="study_rating_scale_max_100"),
            models.CheckConstraint(
                condition=Q(status="draft") | Q(launched_at__isnull=False), name="study_launched_has_date"
            ),
            models.CheckConstraint(
                condition=~Q(status="closed") | Q(closed_at__isnull=False), name="study_closed_has_date"
            ),
            models.CheckConstraint(
                condition=Q(hanging_layout__in=["1x1", "1x2", "2x2"]), name="study_hanging_layout_valid"
            ),
            models.CheckConstraint(
                condition=Q(overlay_mode__in=["fill_outline", "outline", "off"]), name="study_overlay_mode_valid"
            ),
            models.CheckConstraint(condition=Q(reader_groups__gte=1), name="study_reader_groups_positive"),
            models.CheckConstraint(
                condition=Q(plan_hypothesis__in=["superiority", "non_inferiority"]), name="study_plan_hypothesis_valid"
            ),
            models.CheckConstraint(
                condition=Q(plan_margin__gte=0) & Q(plan_margin__lt=1), name="study_plan_margin_0_1"
            ),
            models.CheckConstraint(
                condition=Q(plan_frrc_convention__in=["truncated", "untruncated"]), name="study_plan_frrc_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Modality(models.Model):
    """A reading condition ("arm", "treatment"): e.g. unaided, aided."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="modalities")
    key = models.SlugField(max_length=40)
    label = models.CharField(max_length=100)
    shows_dl = models.BooleanField(default=False, help_text="Readers see the DL overlay and probability.")
    order = models.PositiveSmallIntegerField(help_text="Order within a case in sequential designs (0 first).")

    class Meta:
        verbose_name_plural = "modalities"
        ordering = ["study", "order"]
        constraints = [
            models.UniqueConstraint(fields=["study", "key"], name="modality_key_unique_in_study"),
            models.UniqueConstraint(fields=["study", "order"], name="modality_order_unique_in_study"),
        ]

    def __str__(self) -> str:
        return self.key


class Membership(models.Model):
    """A user's one role in one study. One role only: whoever sees truth as admin must not also read."""

    class Role(models.TextChoices):
        ADMIN = "admin", "Study admin"
        READER = "reader", "Reader"
        STATISTICIAN = "statistician", "Statistician"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)
    instructions_acknowledged_at = models.DateTimeField(
        null=True, blank=True, help_text="When the reader acknowledged the study's instructions."
    )
    # What a paper must report about its readers (readers only; set by the study admin, editable any time).
    specialty = models.CharField(max_length=READER_SPECIALTY_MAX_CHARS, blank=True, default="")
    years_experience = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text=f"Years of experience (0 to {READER_YEARS_MAX})."
    )
    training = models.TextField(
        blank=True, default="", help_text=f"Training received for the study (at most {READER_TRAINING_MAX_CHARS})."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["study", "user"], name="membership_one_role_per_study"),
            models.CheckConstraint(
                condition=Q(role__in=["admin", "reader", "statistician"]), name="membership_role_valid"
            ),
            models.CheckConstraint(
                condition=Q(years_experience__isnull=True) | Q(years_experience__lte=READER_YEARS_MAX),
                name="membership_years_experience_max",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.role}) in {self.study}"


class Patient(models.Model):
    """The cluster cases belong to; only a pseudonymous id is stored."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="patients")
    pseudonym = models.CharField(max_length=64)

    class Meta:
        ordering = ["study", "pseudonym"]
        constraints = [models.UniqueConstraint(fields=["study", "pseudonym"], name="patient_pseudonym_unique")]

    def __str__(self) -> str:
        return self.pseudonym


class ImageSeries(models.Model):
    """A CT series of one patient, checked readable at import."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="series")
    # A storage name (default_storage), not a machine path: files are <storage_prefix>/<each of slice_files>.
    storage_prefix = models.CharField(
        max_length=500, help_text="Storage name of the series' folder, e.g. studies/1/import-<uuid>/series-1."
    )
    series_instance_uid = models.CharField(max_length=64, blank=True)
    modality_code = models.CharField(
        max_length=16, default="CT", help_text="DICOM Modality of the series' files (CT, MR), read at import."
    )
    n_slices = models.PositiveIntegerField()
    rows = models.PositiveIntegerField()
    columns = models.PositiveIntegerField()
    slice_positions_mm = models.JSONField(help_text="Position of each slice along its normal, ascending.")
    slice_files = models.JSONField(help_text="File names in the folder, in the order of slice_positions_mm.")
    # The manifest's reference_mask, read onto the series' grid and stored as arrays (studies.reference_masks).
    reference_mask = models.CharField(
        max_length=500, blank=True, help_text="Storage name of the reference masks (.npz on this series' grid)."
    )
    reference_mask_info = models.JSONField(
        default=dict, blank=True, help_text="Format of the imported file and sha256 of it and of the stored copy."
    )

    class Meta:
        verbose_name_plural = "image series"
        constraints = [
            models.UniqueConstraint(fields=["patient", "storage_prefix"], name="series_path_unique_per_patient"),
            models.CheckConstraint(condition=Q(n_slices__gte=1), name="series_has_slices"),
        ]

    def __str__(self) -> str:
        return f"{self.patient} {self.storage_prefix}"


class CaseQuerySet(models.QuerySet["Case"]):
    def analysed(self) -> "CaseQuerySet":
        """The cases that count: not practice cases (readiness, designs, standalone DL evaluation)."""
        return self.filter(practice=False)


class Case(models.Model):
    """One target lesion: the unit a reader rates and that has a truth.

    A practice case (manifest column ``practice``) is imported, de-identified and precomputed like any other, but
    it is read only in the readers' optional practice session (which shows its truth after each rating) and counts
    for nothing: readiness, designs and every export and analysis leave it out (``Case.objects.analysed()``,
    ``Read.objects.analysed()``).
    """

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="cases")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="cases")
    series = models.ForeignKey(ImageSeries, on_delete=models.PROTECT, related_name="cases")
    case_id = models.CharField(max_length=64, help_text="Pseudonymous lesion id from the manifest.")
    lesion_x_mm = models.FloatField()
    lesion_y_mm = models.FloatField()
    lesion_z_mm = models.FloatField()
    slice_index = models.PositiveIntegerField(help_text="0-based index of the slice nearest the lesion centre.")
    diameter_mm = models.FloatField(help_text="Reference maximum axial diameter.")
    practice = models.BooleanField(
        default=False, help_text="Practice case: read in the optional practice session only, never analysed."
    )
    # The manifest's clinical covariates (studies.covariates: name -> typed value, the recorded ones only) and its
    # free-text clinical history; readers see them only where Study.show_clinical is set.
    clinical = models.JSONField(default=dict, blank=True, help_text='Clinical covariates, e.g. {"age": 61}.')
    case_text = models.TextField(blank=True, default="", help_text="Clinical history from the manifest (plain text).")

    objects = CaseQuerySet.as_manager()

    class Meta:
        ordering = ["study", "case_id"]
        constraints = [
            models.UniqueConstraint(fields=["study", "case_id"], name="case_id_unique_in_study"),
            models.CheckConstraint(condition=Q(diameter_mm__gt=0), name="case_diameter_positive"),
        ]

    def __str__(self) -> str:
        return self.case_id

    @property
    def size_stratum(self) -> str:
        """The lesion-size stratum under the study's current bins (derived, never stored; select_related study)."""
        return size_stratum(self.diameter_mm, self.study.size_bins_mm)


class CaseSeries(models.Model):
    """One series shown with a case, under a role, at a position (0 = the primary series, ``Case.series``).

    The primary series is the one the lesion coordinates, ``slice_index`` and the DL prediction refer to; every
    case has it as its position-0 row (written by the import in the same transaction as the case).
    """

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="case_series")
    series = models.ForeignKey(ImageSeries, on_delete=models.PROTECT, related_name="case_series")
    role = models.CharField(
        max_length=SERIES_ROLE_MAX, help_text="e.g. portal-venous, arterial, delayed, t2 (roles.ROLE_RULE)"
    )
    position = models.PositiveSmallIntegerField(help_text="Order in the viewer; 0 is the primary series.")

    class Meta:
        ordering = ["case", "position"]
        verbose_name_plural = "case series"
        constraints = [
            models.UniqueConstraint(fields=["case", "role"], name="case_series_role_unique"),
            models.UniqueConstraint(fields=["case", "position"], name="case_series_position_unique"),
            models.UniqueConstraint(fields=["case", "series"], name="case_series_series_unique"),
            # The role's characters are checked by the manifest (a regex CHECK would need REGEXP in SQLite).
            models.CheckConstraint(condition=Q(position__lt=MAX_SERIES_PER_CASE), name="case_series_position_max"),
        ]

    def __str__(self) -> str:
        return f"{self.case} {self.role}"

    @property
    def label(self) -> str:
        """The role for people: dashes as spaces, capitalised ("portal-venous" -> "Portal venous")."""
        return role_label(self.role)

    @property
    def primary(self) -> bool:
        return self.position == 0


class Truth(models.Model):
    """Reference standard, in its own table so that nothing that serves readers joins it by accident."""

    class Label(models.TextChoices):
        CRLM = "crlm", "Colorectal liver metastasis"
        HEMANGIOMA = "hemangioma", "Hemangioma"

    class Source(models.TextChoices):
        HISTOLOGY = "histology", "Histology"
        FOLLOW_UP = "follow-up", "Follow-up"
        IMAGING = "imaging", "Imaging"

    POSITIVE_LABEL = Label.CRLM

    case = models.OneToOneField(Case, on_delete=models.CASCADE, related_name="truth")
    label = models.CharField(max_length=20, choices=Label.choices)
    source = models.CharField(max_length=20, choices=Source.choices)

    class Meta:
        verbose_name_plural = "truth"
        constraints = [
            models.CheckConstraint(condition=Q(label__in=["crlm", "hemangioma"]), name="truth_label_valid"),
            models.CheckConstraint(
                condition=Q(source__in=["histology", "follow-up", "imaging"]), name="truth_source_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.case}: {self.label}"

    @property
    def positive(self) -> bool:
        return self.label == self.POSITIVE_LABEL


class ImportRun(Job):
    """One case import (a manifest and its series), from the browser or the command line; its row is the status page.

    Status, progress, message, errors (one line each) and times come from ``core.models.Job``; ``problems`` holds
    the same problems as objects ``{"file", "row", "column", "reason"}`` (row and column null when the problem is
    not a manifest cell's, e.g. a zip member), which the page lists. An import is all or nothing: a failed run
    applied nothing.
    """

    class Source(models.TextChoices):
        UPLOAD = "upload", "Upload (manifest + zip)"
        FOLDER = "folder", "Server import folder"
        COMMAND = "command", "Command line"

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="import_runs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    source = models.CharField(max_length=10, choices=Source.choices)
    # What the user named, for display only (never used as a path): the uploaded file names, the import folder's
    # name, or the manifest path given on the command line.
    origin = models.CharField(max_length=1024, blank=True)
    manifest_name = models.CharField(max_length=255, blank=True)
    # Storage names (default_storage) of an upload's files, staged for the task; generated keys, removed when the
    # task ends. Empty for folder and command-line runs.
    staged_manifest = models.CharField(max_length=255, blank=True)
    staged_zip = models.CharField(max_length=255, blank=True)
    n_rows = models.PositiveIntegerField(default=0)
    n_series_total = models.PositiveIntegerField(default=0)
    n_series_done = models.PositiveIntegerField(default=0)
    # What was imported (a finished, done run only).
    n_cases = models.PositiveIntegerField(default=0)
    n_patients = models.PositiveIntegerField(default=0)
    n_series = models.PositiveIntegerField(default=0)
    problems = models.JSONField(default=list, blank=True, help_text="Every problem: file, row, column, reason.")

    def __str__(self) -> str:
        return f"import {self.pk} of {self.study} ({self.status})"
