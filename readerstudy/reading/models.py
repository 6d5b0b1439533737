"""Reading sessions, their stored case orders, and reads (the audit trail is core.models.AuditEvent)."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from inference.models import Prediction
from readerstudy.studies.models import Case, Modality, Study


class ReadingSession(models.Model):
    """One sitting of one reader; sessions of a reader open one after another, separated by the washout.

    A practice session (``practice``, index 0) holds the study's practice cases only; it opens at launch, is
    optional, and never gates or times any other session.
    """

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="sessions")
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reading_sessions")
    index = models.PositiveSmallIntegerField(
        help_text="1-based order of the session for this reader; 0 for the practice session."
    )
    available_from = models.DateTimeField(null=True, blank=True, help_text="Unset until the previous one finishes.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    practice = models.BooleanField(default=False, help_text="The optional practice session (index 0): not analysed.")

    class Meta:
        ordering = ["study", "reader", "index"]
        constraints = [
            models.UniqueConstraint(fields=["study", "reader", "index"], name="session_index_unique"),
            # Index 0 is the practice session's, and only its.
            models.CheckConstraint(
                condition=Q(practice=False, index__gte=1) | Q(practice=True, index=0),
                name="session_index_from_1_practice_0",
            ),
            models.CheckConstraint(
                condition=Q(finished_at__isnull=True) | Q(started_at__isnull=False), name="session_finish_after_start"
            ),
            models.CheckConstraint(
                condition=Q(finished_at__isnull=True) | Q(finished_at__gte=F("started_at")),
                name="session_finish_not_before_start",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reader} session {self.index} of {self.study}"


class SessionItem(models.Model):
    """One position of a stored reading order: written at launch, never recomputed."""

    session = models.ForeignKey(ReadingSession, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField(help_text="0-based position in the session.")
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="session_items")
    modality = models.ForeignKey(Modality, on_delete=models.PROTECT, related_name="session_items")
    # Denormalised from the session so the database itself guarantees each cell of the design appears once.
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="+")
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    # Set once, when the API first serves this item as the current one: the start of Read.served_seconds.
    first_served_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["session", "position"]
        constraints = [
            models.UniqueConstraint(fields=["session", "position"], name="item_position_unique"),
            models.UniqueConstraint(fields=["study", "reader", "case", "modality"], name="item_cell_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.session} #{self.position}: {self.case} / {self.modality}"


class ReadQuerySet(models.QuerySet["Read"]):
    def analysed(self) -> "ReadQuerySet":
        """The reads that count: every read but those of practice items (practice cases, practice sessions).

        The one home of the exclusion: the analysis-ready table (and through it every export, analysis run,
        figure, reading-time model and report) and the study admins' progress take their reads from here.
        """
        return self.filter(case__practice=False, item__session__practice=False)


class Read(models.Model):
    """One rating by one reader of one case in one modality."""

    item = models.OneToOneField(SessionItem, on_delete=models.PROTECT, related_name="read")
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="reads")
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reads")
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="reads")
    modality = models.ForeignKey(Modality, on_delete=models.PROTECT, related_name="reads")
    rating = models.PositiveSmallIntegerField(null=True, blank=True, help_text="None only when not assessable.")
    submitted_at = models.DateTimeField()
    active_seconds = models.FloatField(help_text="Reading time measured by the client, paused while hidden.")
    served_seconds = models.FloatField(
        null=True, blank=True, help_text="Server seconds from the item's first serve to the submission."
    )
    not_assessable = models.BooleanField(default=False, help_text="The reader could not rate the lesion.")
    not_assessable_reason = models.CharField(max_length=100, blank=True)
    comment = models.TextField(blank=True, help_text="Free text of the reader (at most 2000 characters).")
    viewer_state = models.JSONField(default=dict, blank=True)
    idempotency_key = models.CharField(max_length=64)
    # The DL output this reader was shown (None: unaided, or no prediction): exports and analyses use this one.
    prediction = models.ForeignKey(
        Prediction, null=True, blank=True, on_delete=models.PROTECT, related_name="reads", editable=False
    )

    objects = ReadQuerySet.as_manager()

    class Meta:
        ordering = ["study", "reader", "submitted_at"]
        constraints = [
            models.UniqueConstraint(fields=["study", "reader", "case", "modality"], name="read_cell_unique"),
            models.UniqueConstraint(fields=["reader", "idempotency_key"], name="read_idempotency_key_unique"),
            models.CheckConstraint(condition=Q(rating__lte=100), name="read_rating_at_most_100"),
            models.CheckConstraint(condition=Q(active_seconds__gte=0), name="read_active_seconds_non_negative"),
            models.CheckConstraint(condition=~Q(idempotency_key=""), name="read_idempotency_key_not_empty"),
            models.CheckConstraint(
                condition=Q(not_assessable=True, rating__isnull=True) & ~Q(not_assessable_reason="")
                | Q(not_assessable=False, rating__isnull=False),
                name="read_rating_xor_not_assessable",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reader} {self.case}/{self.modality}: {self.rating}"
