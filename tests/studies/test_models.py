"""The database itself refuses rows the science forbids, whatever code path writes them."""

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from readerstudy.core.models import AuditEvent
from readerstudy.reading.models import Read, ReadingSession, SessionItem
from readerstudy.studies.models import Case, Membership, Modality, Study, Truth
from tests.factories import build_study, make_user

pytestmark = pytest.mark.django_db


def refused(make):
    with pytest.raises(IntegrityError), transaction.atomic():
        make()


@pytest.fixture
def study(tmp_path):
    return build_study(tmp_path, readers=1, n_patients=2, lesions_per_patient=1)


def test_study_constraints():
    refused(lambda: Study.objects.create(name="x", seed=1, design="parallel"))
    refused(lambda: Study.objects.create(name="y", seed=1, status="archived"))
    refused(lambda: Study.objects.create(name="z", seed=1, rating_min=50, rating_max=50))
    refused(lambda: Study.objects.create(name="w", seed=1, status="launched"))  # no launch date
    Study.objects.create(name="ok", seed=1)
    refused(lambda: Study.objects.create(name="ok", seed=2))


def test_modality_membership_case_truth_constraints(study):
    refused(lambda: Modality.objects.create(study=study, key="aided", label="again", order=9))
    refused(lambda: Modality.objects.create(study=study, key="third", label="t", order=0))
    reader = make_user("reader1")
    refused(lambda: Membership.objects.create(study=study, user=reader, role="statistician"))
    refused(lambda: Membership.objects.create(study=study, user=make_user("x"), role="owner"))
    case = Case.objects.filter(study=study).first()
    refused(
        lambda: Case.objects.create(
            study=study,
            patient=case.patient,
            series=case.series,
            case_id=case.case_id,
            lesion_x_mm=0,
            lesion_y_mm=0,
            lesion_z_mm=0,
            slice_index=0,
            diameter_mm=5,
        )
    )
    refused(
        lambda: Case.objects.create(
            study=study,
            patient=case.patient,
            series=case.series,
            case_id="new",
            lesion_x_mm=0,
            lesion_y_mm=0,
            lesion_z_mm=0,
            slice_index=0,
            diameter_mm=0,
        )
    )
    refused(lambda: Truth.objects.create(case=case, label="crlm", source="histology"))  # one truth per case
    Truth.objects.filter(case=case).delete()
    refused(lambda: Truth.objects.create(case=case, label="metastasis", source="histology"))
    refused(lambda: Truth.objects.create(case=case, label="crlm", source="guess"))


def test_session_item_and_read_constraints(study):
    reader = make_user("reader1")
    session = ReadingSession.objects.get(study=study, reader=reader, index=1)
    item = session.items.order_by("position").first()
    refused(lambda: ReadingSession.objects.create(study=study, reader=reader, index=1))
    refused(lambda: ReadingSession.objects.create(study=study, reader=reader, index=0))
    refused(lambda: ReadingSession.objects.create(study=study, reader=reader, index=5, finished_at=timezone.now()))
    refused(
        lambda: SessionItem.objects.create(
            session=session, position=item.position, case=item.case, modality=item.modality, study=study, reader=reader
        )
    )
    # The same reader x case x modality cell twice, even at another position or in another session.
    refused(
        lambda: SessionItem.objects.create(
            session=session, position=999, case=item.case, modality=item.modality, study=study, reader=reader
        )
    )

    def read(**overrides):
        values = dict(
            item=item,
            study=study,
            reader=reader,
            case=item.case,
            modality=item.modality,
            rating=50,
            submitted_at=timezone.now(),
            active_seconds=1.0,
            idempotency_key="k",
        )
        values.update(overrides)
        return Read.objects.create(**values)

    refused(lambda: read(rating=101))
    refused(lambda: read(active_seconds=-1))
    refused(lambda: read(idempotency_key=""))
    read()
    refused(lambda: read(idempotency_key="k2"))  # one read per item and per cell
    other = session.items.order_by("position")[1]
    refused(lambda: read(item=other, case=other.case, modality=other.modality))  # key reused by the reader


def test_audit_events_are_append_only_through_the_orm(study):
    event = AuditEvent.objects.first()
    event.verb = "tampered"
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).update(verb="tampered")
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get(pk=event.pk).verb != "tampered"


def test_audit_events_are_append_only_in_postgresql(study, on_postgres):
    event = AuditEvent.objects.first()
    for sql in (
        "UPDATE reading_auditevent SET verb = 'x' WHERE id = %s",
        "DELETE FROM reading_auditevent WHERE id = %s",
    ):
        with pytest.raises(Exception, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [event.pk])
    assert AuditEvent.objects.filter(pk=event.pk, verb=event.verb).exists()
