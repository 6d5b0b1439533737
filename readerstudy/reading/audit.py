"""The one way to append an audit event; called by actions inside their transaction."""

from typing import Any

from django.db import models, transaction

from readerstudy.reading.models import AuditEvent
from readerstudy.studies.models import Study


def record(
    actor: Any,
    verb: str,
    obj: models.Model,
    *,
    study: Study | None = None,
    before: dict | None = None,
    after: dict | None = None,
) -> AuditEvent:
    # An event written outside the action's transaction could survive a rolled-back change (or vice versa).
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit events must be written inside the action's transaction")
    return AuditEvent.objects.create(
        actor=actor if getattr(actor, "pk", None) else None,
        study=study,
        verb=verb,
        object_type=obj._meta.model_name,
        object_id=str(obj.pk),
        before=before,
        after=after,
    )
