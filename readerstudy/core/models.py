"""The append-only audit trail (one event per action) and the base of every background job."""

from collections.abc import Iterable

from django.conf import settings
from django.db import models
from django.utils import timezone


class Verb(models.TextChoices):
    """Every kind of audit event: ``audit.record()`` takes nothing else, so the trail has a closed vocabulary.

    Labels are the values: the admin and the CSV export show the verb as stored.
    """

    # studies
    CREATE_STUDY = "create_study", "create_study"
    UPDATE_STUDY = "update_study", "update_study"
    ADD_MODALITY = "add_modality", "add_modality"
    REMOVE_MODALITY = "remove_modality", "remove_modality"
    ADD_MEMBER = "add_member", "add_member"
    REMOVE_MEMBER = "remove_member", "remove_member"
    IMPORT_CASES = "import_cases", "import_cases"
    START_IMPORT = "start_import", "start_import"
    LAUNCH_STUDY = "launch_study", "launch_study"
    CLOSE_STUDY = "close_study", "close_study"
    SET_INTERIM_ANALYSIS = "set_interim_analysis", "set_interim_analysis"
    UPDATE_MEMBER = "update_member", "update_member"
    CREATE_USER = "create_user", "create_user"
    BACKUP_STUDY = "backup_study", "backup_study"
    RESTORE_STUDY = "restore_study", "restore_study"
    # reading
    START_SESSION = "start_session", "start_session"
    SUBMIT_READ = "submit_read", "submit_read"
    ACKNOWLEDGE_INSTRUCTIONS = "acknowledge_instructions", "acknowledge_instructions"
    # inference
    RECORD_PREDICTION = "record_prediction", "record_prediction"
    DISCARD_PREDICTION = "discard_prediction", "discard_prediction"
    START_PRECOMPUTE = "start_precompute", "start_precompute"
    # results
    REQUEST_EXPORT = "request_export", "request_export"
    START_ANALYSIS = "start_analysis", "start_analysis"
    PUSH_SEGMENTATIONS = "push_segmentations", "push_segmentations"
    # every background job: its outcome (done or failed), written by the action that finishes it
    FINISH_JOB = "finish_job", "finish_job"


class AuditQuerySet(models.QuerySet):
    def update(self, **kwargs):  # noqa: ANN003, ANN201 - Django's signature
        raise PermissionError("audit events are append-only")

    def delete(self):  # noqa: ANN201
        raise PermissionError("audit events are append-only")


class AuditEvent(models.Model):
    """Append-only record of every action: who did what to which object, with before/after state.

    On PostgreSQL the rows are inserted by the ``audit_append`` function (migration core 0009), which names every
    column: a new field needs a migration that replaces that function too."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_events"
    )
    # By label, not by import: core sits below studies (see the package docstring).
    study = models.ForeignKey(
        "studies.Study", null=True, blank=True, on_delete=models.PROTECT, related_name="audit_events"
    )
    # Not every stored verb need be a Verb member: restored archives keep theirs (choices validate nothing here).
    verb = models.CharField(max_length=50, choices=Verb.choices)
    object_type = models.CharField(max_length=50)
    object_id = models.CharField(max_length=64)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    # Set by audit.append() before hashing (auto_now_add would overwrite it after); a restore keeps the original.
    created_at = models.DateTimeField(default=timezone.now, db_index=True, editable=False)
    # The hash chain (core/chain.py): position, the previous event's hash, this event's hash.
    seq = models.PositiveBigIntegerField(unique=True, editable=False)
    prev_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, editable=False)
    source_hash = models.CharField(
        max_length=64,
        blank=True,
        default="",
        editable=False,
        help_text="Its hash in the database it was restored from.",
    )

    objects = AuditQuerySet.as_manager()

    class Meta:
        # The table (and its append-only triggers, reading/migrations/0002 and 0003) predates this app: the model
        # moved here in state only (core/migrations/0001), the table kept its name.
        db_table = "reading_auditevent"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor} {self.verb} {self.object_type} {self.object_id}"

    def save(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        if self.pk is not None:
            raise PermissionError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        raise PermissionError("audit events are append-only")


class Job(models.Model):
    """A background job's row: the page polls it while the task runs.

    Tasks never save it themselves: they call their app's actions, which call ``set_progress`` (not audited: it is
    a status line) and ``finish`` (through ``core.jobs.finish_job``, which appends the outcome's audit event).
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0.0, help_text="0 to 1")
    message = models.TextField(blank=True, help_text="What it is doing, or why it failed.")
    errors = models.JSONField(default=list, blank=True, help_text="What went wrong, one line each.")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at", "-id"]

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)

    def set_progress(self, done: float, total: float, *, message: str | None = None, also: Iterable[str] = ()) -> None:
        """Running, ``done`` of ``total`` (stored as a fraction); saves these fields and those named in ``also``."""
        self.status = self.Status.RUNNING
        self.progress = min(max(done / total, 0.0), 1.0) if total else 0.0
        if message is not None:
            self.message = message
        self.save(update_fields=["status", "progress", "message", *also])

    def finish(
        self,
        outcome: "Job.Status",
        *,
        message: str | None = None,
        errors: list[str] | None = None,
        also: Iterable[str] = (),
    ) -> None:
        """Done or failed, now; saves the job's fields and those named in ``also``. Call it through an action."""
        if outcome not in (self.Status.DONE, self.Status.FAILED):
            raise ValueError(f"a job finishes done or failed, not {outcome!r}")
        self.status = outcome
        if outcome == self.Status.DONE:
            self.progress = 1.0  # a failed job keeps how far it got
        if message is not None:
            self.message = message
        if errors is not None:
            self.errors = errors
        self.finished_at = timezone.now()
        self.save(update_fields=["status", "progress", "message", "errors", "finished_at", *also])


class TaskWorker(models.Model):
    """A task worker process (``manage.py task_worker``) and its heartbeat.

    The heartbeat is how a killed worker is told from a busy one: a task whose worker has been silent for
    ``WORKER_STALE_SECONDS`` goes back to the queue (``core.workers.requeue_orphans``).
    """

    worker_id = models.CharField(max_length=64, unique=True)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list)
    device = models.CharField(max_length=8, blank=True, help_text="cpu or cuda for inference workers")
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_seen"]

    def __str__(self) -> str:
        return f"{self.hostname}:{self.pid} ({','.join(self.queues)})"
