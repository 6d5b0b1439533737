"""The one door for study set-up mutations: validate, check permission, write, audit, all in one transaction.

Views, admin actions and management commands call these functions and never write the models themselves.
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from readerstudy.analysis.errors import AnalysisInputError
from readerstudy.analysis.strata import check_size_bins
from readerstudy.core import audit
from readerstudy.core.errors import Conflict, InvalidInput, NotAllowed, NotFound
from readerstudy.core.models import Verb
from readerstudy.core.types import Actor
from readerstudy.studies import storage
from readerstudy.studies.ingest import Ingest, ingest_series
from readerstudy.studies.manifest import Manifest, read_manifest
from readerstudy.studies.models import (
    INSTRUCTIONS_MAX_CHARS,
    LABEL_LEGEND_MAX_ITEMS,
    LABEL_LEGEND_TEXT_MAX_CHARS,
    NOT_ASSESSABLE_REASON_MAX_CHARS,
    NOT_ASSESSABLE_REASONS_MAX,
    Case,
    CaseSeries,
    ImageSeries,
    Membership,
    Modality,
    Patient,
    Study,
    Truth,
)

# What the reading page shows: set up in draft, frozen at launch like the rest.
READING_CONFIG_FIELDS = (
    "question",
    "scale_low_label",
    "scale_high_label",
    "instructions",
    "label_legend",
    "default_preset",
    "hanging_layout",
    "overlay_mode",
    "overlay_hidden_labels",
    "not_assessable_reasons",
)
EDITABLE_FIELDS = ("description", "design", "washout_days", "patient_grouping", "size_bins_mm", *READING_CONFIG_FIELDS)
LABEL_NAME_MAX_CHARS = 64
TEXT_FIELD_MAX_CHARS = {"question": 300, "scale_low_label": 100, "scale_high_label": 100}  # the columns' max_length


# --- permissions -----------------------------------------------------------------------------------------------


def role_of(user: Any, study: Study) -> str | None:
    if not getattr(user, "is_authenticated", False):
        return None
    return Membership.objects.filter(study=study, user=user).values_list("role", flat=True).first()


def check_study_admin(user: Any, study: Study) -> None:
    if getattr(user, "is_superuser", False) or role_of(user, study) == Membership.Role.ADMIN:
        return
    raise NotAllowed(f"{user} is not an admin of study {study.name!r}")


def _check_draft(study: Study, what: str) -> None:
    if study.status != Study.Status.DRAFT:
        raise InvalidInput(f"cannot {what}: study {study.name!r} is {study.status}, set-up is only possible in draft")


def lock_study(study: Study) -> Study:
    """The study, re-read and locked for this transaction (reading's launch locks it through here too)."""
    # Serialises set-up actions on one study (e.g. a launch racing a case import).
    return Study.objects.select_for_update().get(pk=study.pk)


def _check_size_bins(bins: Any) -> list[float]:
    # The one validator lives with the stratum (analysis.strata); here its refusal becomes an action's.
    try:
        return check_size_bins(bins)
    except AnalysisInputError as exc:
        raise InvalidInput(str(exc)) from None


def _check_text(field: str, value: Any, max_chars: int, *, multiline: bool = False, required: bool = True) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{field}: expected text")
    value = value.strip()
    if required and not value:
        raise InvalidInput(f"{field}: must not be empty")
    if len(value) > max_chars:
        raise InvalidInput(f"{field}: {len(value)} characters; at most {max_chars}")
    allowed = "\n\t\r" if multiline else ""
    if any((ord(c) < 32 and c not in allowed) or ord(c) == 127 for c in value):
        raise InvalidInput(f"{field}: control characters are not allowed")
    return value


def _check_label_names(field: str, value: Any, max_items: int, max_chars: int) -> list[str]:
    if not isinstance(value, list):
        raise InvalidInput(f"{field}: expected a list of texts")
    if len(value) > max_items:
        raise InvalidInput(f"{field}: {len(value)} entries; at most {max_items}")
    names = [_check_text(f"{field}[{i}]", v, max_chars) for i, v in enumerate(value)]
    if len(set(names)) != len(names):
        raise InvalidInput(f"{field}: entries must be distinct")
    return names


def check_reading_config(changes: dict[str, Any], study: Study) -> dict[str, Any]:  # noqa: C901
    """The reading-page fields among ``changes``, validated (every value is hostile: types, lengths, choices)."""
    out: dict[str, Any] = {}
    for field in ("question", "scale_low_label", "scale_high_label"):
        if field in changes:
            out[field] = _check_text(field, changes[field], TEXT_FIELD_MAX_CHARS[field])
    if "instructions" in changes:
        out["instructions"] = _check_text(
            "instructions", changes["instructions"], INSTRUCTIONS_MAX_CHARS, multiline=True
        )
    if "label_legend" in changes:
        legend = changes["label_legend"]
        if not isinstance(legend, dict):
            raise InvalidInput("label_legend: expected an object of label name -> explanation")
        if len(legend) > LABEL_LEGEND_MAX_ITEMS:
            raise InvalidInput(f"label_legend: {len(legend)} labels; at most {LABEL_LEGEND_MAX_ITEMS}")
        out["label_legend"] = {
            _check_text("label_legend name", k, LABEL_NAME_MAX_CHARS): _check_text(
                f"label_legend[{k!r}]", v, LABEL_LEGEND_TEXT_MAX_CHARS
            )
            for k, v in legend.items()
        }
    if "default_preset" in changes:
        keys = [str(p.get("key")) for p in study.window_presets if isinstance(p, dict)]
        if not isinstance(changes["default_preset"], str) or changes["default_preset"] not in keys:
            raise InvalidInput(f"default_preset {changes['default_preset']!r}: expected one of {', '.join(keys)}")
        out["default_preset"] = changes["default_preset"]
    for field, choices in (("hanging_layout", Study.HangingLayout), ("overlay_mode", Study.OverlayMode)):
        if field in changes:
            if changes[field] not in choices.values:
                raise InvalidInput(f"{field} {changes[field]!r}: expected one of {', '.join(choices.values)}")
            out[field] = str(changes[field])
    if "overlay_hidden_labels" in changes:
        out["overlay_hidden_labels"] = _check_label_names(
            "overlay_hidden_labels", changes["overlay_hidden_labels"], LABEL_LEGEND_MAX_ITEMS, LABEL_NAME_MAX_CHARS
        )
    if "not_assessable_reasons" in changes:
        reasons = _check_label_names(
            "not_assessable_reasons",
            changes["not_assessable_reasons"],
            NOT_ASSESSABLE_REASONS_MAX,
            NOT_ASSESSABLE_REASON_MAX_CHARS,
        )
        if not reasons:
            raise InvalidInput("not_assessable_reasons: at least one reason is needed")
        out["not_assessable_reasons"] = reasons
    return out


def study_state(study: Study) -> dict:
    """What audit events of study-level actions store as before/after."""
    return {
        "name": study.name,
        "design": study.design,
        "washout_days": study.washout_days,
        "patient_grouping": study.patient_grouping,
        "seed": study.seed,
        "status": study.status,
        "size_bins_mm": study.size_bins_mm,
        # The instructions by digest: up to 20 000 characters need not be copied into every study event.
        **{field: getattr(study, field) for field in READING_CONFIG_FIELDS if field != "instructions"},
        "instructions_sha256": hashlib.sha256(study.instructions.encode()).hexdigest(),
    }


# --- study ------------------------------------------------------------------------------------------------------


def create_study(
    actor: Actor,
    name: str,
    *,
    description: str = "",
    design: str = Study.Design.CROSSOVER,
    washout_days: int = 28,
    patient_grouping: str = Study.PatientGrouping.NONE,
    seed: int | None = None,
    size_bins_mm: list[float] | None = None,
    **reading_config: Any,
) -> Study:
    """Create a draft study; ``reading_config`` takes any of READING_CONFIG_FIELDS (defaults otherwise)."""
    unknown = set(reading_config) - set(READING_CONFIG_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown study field(s): {', '.join(sorted(unknown))}")
    if not (getattr(actor, "is_staff", False) or getattr(actor, "is_superuser", False)):
        raise NotAllowed(f"{actor} may not create studies (staff only)")
    name = name.strip()
    if not name:
        raise InvalidInput("a study needs a name")
    if design not in Study.Design.values:
        raise InvalidInput(f"design {design!r}: expected one of {', '.join(Study.Design.values)}")
    if patient_grouping not in Study.PatientGrouping.values:
        raise InvalidInput(f"patient grouping {patient_grouping!r}: expected {', '.join(Study.PatientGrouping.values)}")
    if washout_days < 0:
        raise InvalidInput("washout_days must be >= 0")
    bins = _check_size_bins(size_bins_mm if size_bins_mm is not None else [10.0, 30.0])
    config = check_reading_config(reading_config, Study())  # the default window presets
    with transaction.atomic():
        if Study.objects.filter(name=name).exists():
            raise InvalidInput(f"a study named {name!r} exists already")
        study = Study.objects.create(
            name=name,
            description=description,
            design=design,
            washout_days=washout_days,
            patient_grouping=patient_grouping,
            seed=seed if seed is not None else secrets.randbits(62),
            size_bins_mm=bins,
            **config,
        )
        Membership.objects.create(study=study, user=actor, role=Membership.Role.ADMIN)
        # The creator becomes the study's admin: part of the same action, so one event says both.
        audit.record(
            actor, Verb.CREATE_STUDY, study, study=study, after={**study_state(study), "admin": actor.get_username()}
        )
    return study


def update_study(actor: Actor, study: Study, **changes: Any) -> Study:
    """Change set-up fields of a draft study (the seed never changes once set)."""
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise InvalidInput(f"cannot change {', '.join(sorted(unknown))}; editable: {', '.join(EDITABLE_FIELDS)}")
    if "size_bins_mm" in changes:
        changes["size_bins_mm"] = _check_size_bins(changes["size_bins_mm"])
    if "design" in changes and changes["design"] not in Study.Design.values:
        raise InvalidInput(f"design {changes['design']!r}: expected one of {', '.join(Study.Design.values)}")
    with transaction.atomic():
        study = lock_study(study)
        check_study_admin(actor, study)
        _check_draft(study, "change the study")
        changes.update(check_reading_config(changes, study))
        before = study_state(study)
        for key, value in changes.items():
            setattr(study, key, value)
        study.save()  # no case changes with the bins: strata are derived from the diameter where shown
        audit.record(actor, Verb.UPDATE_STUDY, study, study=study, before=before, after=study_state(study))
    return study


def add_modality(
    actor: Actor, study: Study, key: str, label: str, *, shows_dl: bool, order: int | None = None
) -> Modality:
    with transaction.atomic():
        study = lock_study(study)
        check_study_admin(actor, study)
        _check_draft(study, "add a modality")
        if Modality.objects.filter(study=study, key=key).exists():
            raise InvalidInput(f"modality {key!r} exists already in {study.name!r}")
        if order is None:
            order = Modality.objects.filter(study=study).count()
        try:
            with transaction.atomic():
                modality = Modality.objects.create(study=study, key=key, label=label, shows_dl=shows_dl, order=order)
        except IntegrityError:
            raise InvalidInput(f"modality order {order} is taken in {study.name!r}") from None
        audit.record(
            actor, Verb.ADD_MODALITY, modality, study=study, after={"key": key, "shows_dl": shows_dl, "order": order}
        )
    return modality


def remove_modality(actor: Actor, modality: Modality) -> None:
    with transaction.atomic():
        study = lock_study(modality.study)
        check_study_admin(actor, study)
        _check_draft(study, "remove a modality")
        audit.record(actor, Verb.REMOVE_MODALITY, modality, study=study, before={"key": modality.key})
        modality.delete()


def add_member(actor: Actor, study: Study, user: Any, role: str) -> Membership:
    if role not in Membership.Role.values:
        raise InvalidInput(f"role {role!r}: expected one of {', '.join(Membership.Role.values)}")
    with transaction.atomic():
        study = lock_study(study)
        check_study_admin(actor, study)
        if role == Membership.Role.READER:
            _check_draft(study, "add a reader")  # launched studies have their sessions fixed
        existing = Membership.objects.filter(study=study, user=user).first()
        if existing is not None:
            raise InvalidInput(f"{user} is already {existing.role} of {study.name!r} (one role per study)")
        membership = Membership.objects.create(study=study, user=user, role=role)
        audit.record(actor, Verb.ADD_MEMBER, membership, study=study, after={"user": user.get_username(), "role": role})
    return membership


def remove_member(actor: Actor, membership: Membership) -> None:
    with transaction.atomic():
        study = lock_study(membership.study)
        check_study_admin(actor, study)
        if membership.role == Membership.Role.READER:
            _check_draft(study, "remove a reader")
        audit.record(
            actor,
            Verb.REMOVE_MEMBER,
            membership,
            study=study,
            before={"user": membership.user.get_username(), "role": membership.role},
        )
        membership.delete()


# --- cases -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportSummary:
    n_cases: int
    n_patients: int
    n_series: int
    manifest_sha256: str


def import_cases(actor: Actor, study: Study, manifest_path: Path) -> ImportSummary:
    """Import a manifest whole or not at all; InvalidInput lists every bad row with column and reason."""
    manifest_path = Path(manifest_path)
    check_study_admin(actor, study)
    _check_draft(study, "import cases")
    existing = set(Case.objects.filter(study=study).values_list("case_id", flat=True))
    manifest = read_manifest(manifest_path, existing_case_ids=existing)
    if manifest.errors:
        raise InvalidInput(
            f"manifest {manifest_path.name} not imported: {len(manifest.errors)} problem(s)", details=manifest.errors
        )
    # The digest is of the bytes that were checked, not of whatever the file holds by now.
    digest = manifest.sha256
    ingest = ingest_series(study, manifest)  # removes its own files if it raises
    try:
        if ingest.errors:
            raise InvalidInput(
                f"manifest {manifest_path.name} not imported: {len(ingest.errors)} problem(s)", details=ingest.errors
            )
        try:
            return _write_cases(actor, study, manifest, ingest, manifest_path.name, digest)
        except IntegrityError as exc:
            # e.g. a concurrent import of the same case ids won the race; the transaction rolled back whole.
            raise Conflict(
                f"manifest {manifest_path.name} not imported: the database refused the cases ({exc}); "
                "was the study changed meanwhile? Nothing was imported"
            ) from exc
    except BaseException:
        ingest.remove()  # all or nothing: no orphaned copies either
        raise


def _write_cases(
    actor: Actor, study: Study, manifest: Manifest, ingest: Ingest, name: str, digest: str
) -> ImportSummary:
    with transaction.atomic():
        study = lock_study(study)
        _check_draft(study, "import cases")
        patients: dict[str, Patient] = {}
        series: dict[Path, ImageSeries] = {}
        for row in manifest.rows:
            patient = patients.get(row.patient_id)
            if patient is None:
                patient, _ = Patient.objects.get_or_create(study=study, pseudonym=row.patient_id)
                patients[row.patient_id] = patient
            # Every series of the case, stored once per folder: cases of one patient share their series rows.
            case_series = [(role, _image_series(series, folder, patient, ingest)) for role, folder in row.all_series]
            case = Case.objects.create(
                study=study,
                patient=patient,
                series=case_series[0][1],  # the primary series: the lesion centre and the DL prediction's
                case_id=row.case_id,
                lesion_x_mm=row.lesion_mm[0],
                lesion_y_mm=row.lesion_mm[1],
                lesion_z_mm=row.lesion_mm[2],
                slice_index=manifest.slice_index[row.case_id],
                diameter_mm=row.diameter_mm,
            )
            Truth.objects.create(case=case, label=row.truth, source=row.truth_source)
            CaseSeries.objects.bulk_create(
                CaseSeries(case=case, series=s, role=role, position=position)
                for position, (role, s) in enumerate(case_series)
            )
        summary = ImportSummary(len(manifest.rows), len(patients), len(series), digest)
        audit.record(
            actor,
            Verb.IMPORT_CASES,
            study,
            study=study,
            after={
                "manifest": name,
                "sha256": digest,
                "cases": summary.n_cases,
                "patients": summary.n_patients,
                "series": summary.n_series,
                "stored_in": ingest.prefix,
                "deidentification_notes": sorted({n for s in ingest.series.values() for n in s.notes}),
            },
        )
    return summary


def _image_series(series: dict[Path, ImageSeries], folder: Path, patient: Patient, ingest: Ingest) -> ImageSeries:
    """The ImageSeries row of an imported folder, created on its first mention (``series`` caches them)."""
    image_series = series.get(folder)
    if image_series is None:
        stored = ingest.series[folder]
        info = stored.info
        image_series, _ = ImageSeries.objects.get_or_create(
            patient=patient,
            storage_prefix=stored.prefix,
            defaults={
                "series_instance_uid": info.series_instance_uid,
                "modality_code": info.modality,
                "n_slices": info.n_slices,
                "rows": info.rows,
                "columns": info.columns,
                "slice_positions_mm": info.positions_mm,
                "slice_files": info.files,
            },
        )
        series[folder] = image_series
    return image_series


# --- readiness, launch status, close -------------------------------------------------------------------------------
# Launch itself is reading.actions.launch_study: it writes reading's sessions and items, and calls these.


@dataclass(frozen=True)
class Readiness:
    problems: list[str]
    warnings: list[str]

    @property
    def ready(self) -> bool:
        return not self.problems


def readiness(study: Study) -> Readiness:  # noqa: C901
    """Every unmet launch condition (problems) and what the admin should know (warnings)."""
    problems: list[str] = []
    warnings: list[str] = []
    if study.status != Study.Status.DRAFT:
        problems.append(f"study is {study.status}, not draft")
    n_modalities = study.modalities.count()
    if n_modalities < 2:
        problems.append(f"at least 2 modalities needed, {n_modalities} configured")
    elif not study.modalities.filter(shows_dl=False).exists() or not study.modalities.filter(shows_dl=True).exists():
        warnings.append("no modality compares DL assistance (all or none show DL output)")
    if study.design == Study.Design.SEQUENTIAL and (first := study.modalities.order_by("order").first()) is not None:
        if first.shows_dl:
            problems.append("sequential design: the first modality must not show DL output (unaided first)")
    n_readers = study.memberships.filter(role=Membership.Role.READER).count()
    if n_readers < 1:
        problems.append("at least 1 reader needed, none added")
    elif n_readers < 2:
        warnings.append("only 1 reader: random-reader (RRRC) analysis needs at least 2")
    cases = Case.objects.filter(study=study)
    n_cases = cases.count()
    if n_cases == 0:
        problems.append("no cases imported")
    missing_truth = list(cases.filter(truth__isnull=True).values_list("case_id", flat=True)[:20])
    if missing_truth:
        problems.append(f"cases without truth: {', '.join(missing_truth)}")
    labels = set(Truth.objects.filter(case__study=study).values_list("label", flat=True))
    if n_cases and len(labels) < 2:
        problems.append(f"truth has one class only ({', '.join(sorted(labels)) or 'none'}); AUC needs both")
    # Every series of every case (the primary ones and the extra ones alike) must be readable.
    for image_series in ImageSeries.objects.filter(case_series__case__study=study).distinct().order_by("pk"):
        if not storage.series_readable(image_series):  # through the storage API: no machine path assumed
            problems.append(f"series of patient {image_series.patient} is not readable: {image_series.storage_prefix}")
    if study.modalities.filter(shows_dl=True).exists() and n_cases:
        missing = cases.filter(predictions__isnull=True).count()
        if missing:
            warnings.append(f"{missing} of {n_cases} cases have no DL prediction: aided items will show none")
    return Readiness(problems, warnings)


def mark_launched(study: Study, now: datetime) -> None:
    """Set a locked draft study's status to launched; part of ``reading.actions.launch_study``, which writes the
    sessions and the one audit event in the same transaction (launch writes reading's rows, so it lives there)."""
    if study.status != Study.Status.DRAFT:
        raise InvalidInput(f"only a draft study can be launched; {study.name!r} is {study.status}")
    study.status = Study.Status.LAUNCHED
    study.launched_at = now
    study.save(update_fields=["status", "launched_at"])


def close_study(actor: Actor, study: Study, *, now: datetime | None = None) -> Study:
    """Close a launched study: no more reads are accepted."""
    with transaction.atomic():
        study = lock_study(study)
        check_study_admin(actor, study)
        if study.status != Study.Status.LAUNCHED:
            raise InvalidInput(f"only a launched study can be closed; {study.name!r} is {study.status}")
        before = study_state(study)
        study.status = Study.Status.CLOSED
        study.closed_at = now or timezone.now()
        study.save(update_fields=["status", "closed_at"])
        audit.record(actor, Verb.CLOSE_STUDY, study, study=study, before=before, after=study_state(study))
    return study


# --- readers -------------------------------------------------------------------------------------------------------


def acknowledge_instructions(actor: Actor, study: Study, *, now: datetime | None = None) -> Membership:
    """A reader confirms having read the study's instructions (idempotent: the first acknowledgement stays)."""
    now = now or timezone.now()
    user_pk = getattr(actor, "pk", None)
    if user_pk is None:
        raise NotFound("no such study")
    with transaction.atomic():
        # Locks the membership row: two clicks at once record one acknowledgement and one event.
        membership = (
            Membership.objects.select_for_update()
            .filter(study=study, user_id=user_pk, role=Membership.Role.READER)
            .first()
        )
        if membership is None or study.status == Study.Status.DRAFT:
            raise NotFound("no such study")  # a non-reader learns nothing; a draft's instructions may still change
        if membership.instructions_acknowledged_at is not None:
            return membership
        membership.instructions_acknowledged_at = now
        membership.save(update_fields=["instructions_acknowledged_at"])
        audit.record(
            actor,
            Verb.ACKNOWLEDGE_INSTRUCTIONS,
            membership,
            study=study,
            after={
                "acknowledged_at": now.isoformat(),
                "instructions_sha256": hashlib.sha256(study.instructions.encode()).hexdigest(),
            },
        )
    return membership
