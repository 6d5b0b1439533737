"""The one door for study set-up mutations: validate, check permission, write, audit, all in one transaction.

Views, admin actions and management commands call these functions and never write the models themselves.
"""

import hashlib
import secrets
import tempfile
from collections.abc import Callable
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
from readerstudy.core.jobs import finish_job
from readerstudy.core.models import Verb
from readerstudy.core.types import Actor
from readerstudy.studies import plan, storage
from readerstudy.studies.dicomweb import SeriesFetcher
from readerstudy.studies.ingest import Ingest, ingest_series
from readerstudy.studies.manifest import Manifest, read_manifest
from readerstudy.studies.models import (
    INSTRUCTIONS_MAX_CHARS,
    LABEL_LEGEND_MAX_ITEMS,
    LABEL_LEGEND_TEXT_MAX_CHARS,
    NOT_ASSESSABLE_REASON_MAX_CHARS,
    NOT_ASSESSABLE_REASONS_MAX,
    READER_SPECIALTY_MAX_CHARS,
    READER_TRAINING_MAX_CHARS,
    READER_YEARS_MAX,
    Case,
    CaseSeries,
    ImageSeries,
    ImportRun,
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
    "show_clinical",
)
EDITABLE_FIELDS = (
    "name",
    "description",
    "design",
    "washout_days",
    "patient_grouping",
    "size_bins_mm",
    "window_presets",
    *READING_CONFIG_FIELDS,
    *plan.PLAN_FIELDS,
)
LABEL_NAME_MAX_CHARS = 64
TEXT_FIELD_MAX_CHARS = {"question": 300, "scale_low_label": 100, "scale_high_label": 100}  # the columns' max_length
NAME_MAX_CHARS = 200  # Study.name's max_length
DESCRIPTION_MAX_CHARS = 5000
WASHOUT_DAYS_MAX = 3650
USERNAME_MAX_CHARS = 150  # auth.User.username's max_length
EMAIL_MAX_CHARS = 254
WINDOW_PRESET_KEYS = ("1", "2", "3", "4", "5")  # the viewer's keys
WINDOW_WIDTH_HU = (1.0, 10_000.0)
WINDOW_LEVEL_HU = (-2_000.0, 10_000.0)


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
    if "show_clinical" in changes:
        if not isinstance(changes["show_clinical"], bool):
            raise InvalidInput(f"show_clinical {changes['show_clinical']!r}: expected true or false")
        out["show_clinical"] = changes["show_clinical"]
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
        "window_presets": study.window_presets,
        # The instructions by digest: up to 20 000 characters need not be copied into every study event.
        **{field: getattr(study, field) for field in READING_CONFIG_FIELDS if field != "instructions"},
        "instructions_sha256": hashlib.sha256(study.instructions.encode()).hexdigest(),
        **plan.plan_state(study),
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
    changes.update(_check_setup_fields(changes))
    with transaction.atomic():
        study = lock_study(study)
        check_study_admin(actor, study)
        _check_draft(study, "change the study")
        if "name" in changes and Study.objects.filter(name=changes["name"]).exclude(pk=study.pk).exists():
            raise InvalidInput(f"a study named {changes['name']!r} exists already")
        reference = study
        if "window_presets" in changes:
            changes["window_presets"] = _check_window_presets(changes["window_presets"])
            changes.setdefault("default_preset", study.default_preset)  # must name one of the new presets
            reference = Study(window_presets=changes["window_presets"])
        changes.update(check_reading_config(changes, reference))
        changes.update(plan.check_plan(changes, study))
        before = study_state(study)
        for key, value in changes.items():
            setattr(study, key, value)
        study.save()  # no case changes with the bins: strata are derived from the diameter where shown
        audit.record(actor, Verb.UPDATE_STUDY, study, study=study, before=before, after=study_state(study))
    return study


def _check_setup_fields(changes: dict[str, Any]) -> dict[str, Any]:
    """Name, description, washout and patient grouping among ``changes``, validated (hostile values)."""
    out: dict[str, Any] = {}
    if "name" in changes:
        out["name"] = _check_text("name", changes["name"], NAME_MAX_CHARS)
    if "description" in changes:
        out["description"] = _check_text(
            "description", changes["description"], DESCRIPTION_MAX_CHARS, multiline=True, required=False
        )
    if "washout_days" in changes:
        days = changes["washout_days"]
        if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= WASHOUT_DAYS_MAX:
            raise InvalidInput(f"washout_days {days!r}: expected a whole number of days, 0 to {WASHOUT_DAYS_MAX}")
    if "patient_grouping" in changes and changes["patient_grouping"] not in Study.PatientGrouping.values:
        raise InvalidInput(
            f"patient grouping {changes['patient_grouping']!r}: expected {', '.join(Study.PatientGrouping.values)}"
        )
    return out


def _check_window_presets(value: Any) -> list[dict[str, Any]]:
    """The viewer's window presets: 1 to 5, each a distinct key 1-5, a name, and a width and level in HU."""
    if not isinstance(value, list) or not 1 <= len(value) <= len(WINDOW_PRESET_KEYS):
        raise InvalidInput(f"window_presets: expected a list of 1 to {len(WINDOW_PRESET_KEYS)} presets")
    presets = []
    for i, preset in enumerate(value):
        if not isinstance(preset, dict) or set(preset) != {"key", "name", "width", "level"}:
            raise InvalidInput(f"window_presets[{i}]: expected key, name, width and level")
        if preset["key"] not in WINDOW_PRESET_KEYS:
            raise InvalidInput(
                f"window_presets[{i}]: key {preset['key']!r} is not one of {', '.join(WINDOW_PRESET_KEYS)}"
            )
        numbers = {}
        for field_name, (low, high) in (("width", WINDOW_WIDTH_HU), ("level", WINDOW_LEVEL_HU)):
            number = preset[field_name]
            if isinstance(number, bool) or not isinstance(number, int | float) or not low <= number <= high:
                raise InvalidInput(f"window_presets[{i}]: {field_name} {number!r} is outside {low:g} to {high:g} HU")
            numbers[field_name] = number
        name = _check_text(f"window_presets[{i}] name", preset["name"], 40)
        presets.append({"key": preset["key"], "name": name, **numbers})
    if len({p["key"] for p in presets}) != len(presets):
        raise InvalidInput("window_presets: keys must be distinct")
    return presets


def set_up_study(
    actor: Actor,
    name: str,
    *,
    design: str = Study.Design.CROSSOVER,
    washout_days: int = 28,
    unaided_label: str = "Unaided",
    aided_label: str = "DL-assisted",
) -> Study:
    """A new draft study with the two usual modalities (``unaided`` first, ``aided`` showing DL output), in one
    transaction: create_study (the creator becomes its admin) and add_modality twice, each with its event."""
    _check_setup_fields({"name": name, "washout_days": washout_days})
    labels = [_check_text("modality label", label, 100) for label in (unaided_label, aided_label)]
    with transaction.atomic():
        study = create_study(actor, name, design=design, washout_days=washout_days)
        add_modality(actor, study, "unaided", labels[0], shows_dl=False)
        add_modality(actor, study, "aided", labels[1], shows_dl=True)
    return study


def set_plan_pilot(actor: Actor, study: Study, variance: Any, source: str) -> Study:
    """Store a pilot's variance components as the study's (the planned power uses them); draft only, audited."""
    record = plan.pilot_record(variance, source)
    with transaction.atomic():
        study = lock_study(study)
        check_study_admin(actor, study)
        _check_draft(study, "change the statistical plan")
        before = study_state(study)
        study.plan_pilot = record
        study.save(update_fields=["plan_pilot"])
        audit.record(actor, Verb.UPDATE_STUDY, study, study=study, before=before, after=study_state(study))
    return study


def set_interim_analysis(actor: Actor, study: Study, allowed: bool) -> Study:
    """Allow (or stop) interim looks: modality comparisons shown to statisticians while the study runs."""
    if not isinstance(allowed, bool):
        raise InvalidInput(f"allowed: expected true or false, got {allowed!r}")
    with transaction.atomic():
        study = lock_study(study)
        check_study_admin(actor, study)
        if study.status == Study.Status.CLOSED:
            raise InvalidInput(f"study {study.name!r} is closed: its results are no interim look")
        before = study.interim_analysis_allowed
        if before == allowed:
            return study
        study.interim_analysis_allowed = allowed
        study.save(update_fields=["interim_analysis_allowed"])
        audit.record(
            actor,
            Verb.SET_INTERIM_ANALYSIS,
            study,
            study=study,
            before={"interim_analysis_allowed": before},
            after={"interim_analysis_allowed": allowed},
        )
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


def check_reader_profile(specialty: Any, years_experience: Any, training: Any) -> dict[str, Any]:
    """What a paper reports about a reader, validated: specialty, years of experience (0-60), training."""
    if years_experience in (None, ""):
        years = None
    else:
        if isinstance(years_experience, bool) or not isinstance(years_experience, int):
            raise InvalidInput(f"years_experience {years_experience!r}: expected a whole number")
        if not 0 <= years_experience <= READER_YEARS_MAX:
            raise InvalidInput(f"years_experience {years_experience}: expected 0 to {READER_YEARS_MAX}")
        years = years_experience
    return {
        "specialty": _check_text("specialty", specialty, READER_SPECIALTY_MAX_CHARS, required=False),
        "years_experience": years,
        "training": _check_text("training", training, READER_TRAINING_MAX_CHARS, multiline=True, required=False),
    }


def _check_username(username: Any) -> str:
    username = _check_text("username", username, USERNAME_MAX_CHARS)
    # Django's own rule for user names (letters, digits and @ . + - _), so the account can log in.
    from django.contrib.auth.validators import UnicodeUsernameValidator
    from django.core.exceptions import ValidationError

    try:
        UnicodeUsernameValidator()(username)
    except ValidationError:
        raise InvalidInput(f"username {username!r}: letters, digits and @ . + - _ only") from None
    return username


def _check_email(email: Any) -> str:
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email

    email = _check_text("email", email, EMAIL_MAX_CHARS)
    try:
        validate_email(email)
    except ValidationError:
        raise InvalidInput(f"email {email!r} is not an e-mail address") from None
    return email


@dataclass(frozen=True)
class ReaderAdded:
    membership: Membership
    created_user: bool  # a new account: the caller sends its set-password link after the commit


def add_reader(
    actor: Actor,
    study: Study,
    username: Any,
    *,
    email: Any = "",
    specialty: Any = "",
    years_experience: Any = None,
    training: Any = "",
) -> ReaderAdded:
    """Add a reader to a draft study: an existing user by user name, or (with ``email``) a new account without a
    password (its owner sets one through the set-password link). Reader metadata is stored with the membership."""
    from django.contrib.auth import get_user_model

    User = get_user_model()
    username = _check_username(username)
    email = _check_email(email) if (isinstance(email, str) and email.strip()) else ""
    profile = check_reader_profile(specialty, years_experience, training)
    with transaction.atomic():
        study = lock_study(study)
        check_study_admin(actor, study)
        _check_draft(study, "add a reader")
        user = User.objects.filter(username=username).first()
        created = user is None
        if user is None:
            if not email:
                raise InvalidInput(f"no user named {username!r}: give an e-mail address to create the account")
            user = User(username=username, email=email)
            user.set_unusable_password()
            user.save()
            audit.record(actor, Verb.CREATE_USER, user, study=study, after={"username": username, "email": email})
        existing = Membership.objects.filter(study=study, user=user).first()
        if existing is not None:
            raise InvalidInput(f"{user} is already {existing.role} of {study.name!r} (one role per study)")
        membership = Membership.objects.create(study=study, user=user, role=Membership.Role.READER, **profile)
        audit.record(
            actor,
            Verb.ADD_MEMBER,
            membership,
            study=study,
            after={"user": user.get_username(), "role": Membership.Role.READER, **profile},
        )
    return ReaderAdded(membership, created)


def update_reader_profile(
    actor: Actor, membership: Membership, *, specialty: Any, years_experience: Any, training: Any
) -> Membership:
    """Change a reader's reported metadata (allowed at any time: it describes the reader, not the design)."""
    profile = check_reader_profile(specialty, years_experience, training)
    with transaction.atomic():
        study = lock_study(membership.study)
        check_study_admin(actor, study)
        membership = Membership.objects.select_for_update().get(pk=membership.pk)
        if membership.role != Membership.Role.READER:
            raise InvalidInput(f"{membership.user} is {membership.role}, not a reader, of {study.name!r}")
        before = {field: getattr(membership, field) for field in profile}
        if before == profile:
            return membership
        for field, value in profile.items():
            setattr(membership, field, value)
        membership.save(update_fields=list(profile))
        audit.record(
            actor,
            Verb.UPDATE_MEMBER,
            membership,
            study=study,
            before={"user": membership.user.get_username(), **before},
            after={"user": membership.user.get_username(), **profile},
        )
    return membership


# --- cases -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportSummary:
    n_cases: int
    n_patients: int
    n_series: int
    manifest_sha256: str


# progress(stage, done, total): stage "rows" once the manifest's rows are checked, then "series" as each series is
# de-identified and stored (a status line for the ImportRun page or the command's bar; never a reason to stop).
ImportProgress = Callable[[str, int, int], None]


def import_cases(
    actor: Actor, study: Study, manifest_path: Path, *, progress: ImportProgress | None = None
) -> ImportSummary:
    """Import a manifest whole or not at all; InvalidInput lists every bad row with column and reason."""
    manifest_path = Path(manifest_path)
    check_study_admin(actor, study)
    _check_draft(study, "import cases")
    # Series named by UID are retrieved from the DICOMweb server into a staging folder that is removed whatever
    # happens; from there they take the folder rows' one path (check, de-identify, store).
    with tempfile.TemporaryDirectory(prefix="readerstudy-pacs-") as staging:
        return _import_manifest(actor, study, manifest_path, SeriesFetcher.from_settings(Path(staging)), progress)


def _import_manifest(
    actor: Actor, study: Study, manifest_path: Path, pacs: SeriesFetcher, progress: ImportProgress | None = None
) -> ImportSummary:
    existing = set(Case.objects.filter(study=study).values_list("case_id", flat=True))
    manifest = read_manifest(manifest_path, existing_case_ids=existing, pacs=pacs)
    if manifest.errors:
        raise InvalidInput(
            f"manifest {manifest_path.name} not imported: {len(manifest.errors)} problem(s)", details=manifest.errors
        )
    # The digest is of the bytes that were checked, not of whatever the file holds by now.
    digest = manifest.sha256
    if progress is not None:
        progress("rows", len(manifest.rows), len(manifest.rows))
    on_series = None if progress is None else (lambda done, total: progress("series", done, total))
    ingest = ingest_series(study, manifest, on_series)  # removes its own files if it raises
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
                practice=row.practice,
                clinical=row.clinical,
                case_text=row.case_text,
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
                "practice_cases": sum(row.practice for row in manifest.rows),
                "cases_with_clinical": sum(bool(row.clinical or row.case_text) for row in manifest.rows),
                "series_with_reference_mask": sum(bool(s.reference_mask) for s in ingest.series.values()),
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
                "reference_mask": stored.reference_mask,
                "reference_mask_info": stored.reference_mask_info,
            },
        )
        series[folder] = image_series
    return image_series


# --- readiness, launch status, close -------------------------------------------------------------------------------
# Launch itself is reading.actions.launch_study: it writes reading's sessions and items, and calls these.


@dataclass(frozen=True)
class Check:
    """One launch condition: ``key`` names it (pages link each unmet one to what fixes it), ``ok`` whether it is
    met, ``message`` what is met or wrong, ``warning`` something the admin should know that does not block."""

    key: str
    ok: bool
    message: str
    warning: str = ""


@dataclass(frozen=True)
class Readiness:
    problems: list[str]
    warnings: list[str]
    checks: tuple[Check, ...] = ()
    missing_predictions: int = 0  # cases without a DL prediction in a study with an aided modality

    @property
    def ready(self) -> bool:
        return not self.problems


def readiness(study: Study, *, accept_missing_predictions: bool = False) -> Readiness:
    """Every launch condition as a check, every unmet one as a problem, and what the admin should know (warnings).

    Cases without a DL prediction in a study with an aided modality block the launch (aided readers would be
    shown nothing) unless the admin accepts them explicitly (``accept_missing_predictions``; launch records it).
    """
    checks = [
        Check("status", study.status == Study.Status.DRAFT, f"study is {study.status}, not draft")
        if study.status != Study.Status.DRAFT
        else Check("status", True, "study is a draft"),
        *_modality_checks(study),
        _reader_check(study),
        *_case_checks(study),
        *_split_plot_checks(study),
        *planned_power_check(study),
    ]
    missing = 0
    cases = Case.objects.filter(study=study)
    n_cases = cases.count()
    if study.modalities.filter(shows_dl=True).exists() and n_cases:
        missing = cases.filter(predictions__isnull=True).count()
        text = f"{missing} of {n_cases} cases have no DL prediction: aided items will show none"
        if not missing:
            checks.append(Check("predictions", True, f"every case has a DL prediction ({n_cases})"))
        elif accept_missing_predictions:
            checks.append(Check("predictions", True, f"accepted: {text}", warning=text))
        else:
            checks.append(Check("predictions", False, f"{text} (precompute, or accept this explicitly at launch)"))
    problems = [c.message for c in checks if not c.ok]
    warnings = [c.warning for c in checks if c.warning]
    return Readiness(problems, warnings, tuple(checks), missing)


def _modality_checks(study: Study) -> list[Check]:
    n_modalities = study.modalities.count()
    if n_modalities < 2:
        return [Check("modalities", False, f"at least 2 modalities needed, {n_modalities} configured")]
    warning = ""
    if not study.modalities.filter(shows_dl=False).exists() or not study.modalities.filter(shows_dl=True).exists():
        warning = "no modality compares DL assistance (all or none show DL output)"
    checks = [Check("modalities", True, f"{n_modalities} modalities", warning=warning)]
    if study.design == Study.Design.SEQUENTIAL and (first := study.modalities.order_by("order").first()) is not None:
        if first.shows_dl:
            msg = "sequential design: the first modality must not show DL output (unaided first)"
            checks.append(Check("sequential", False, msg))
        else:
            checks.append(Check("sequential", True, "sequential design: unaided first"))
    return checks


def _reader_check(study: Study) -> Check:
    n_readers = study.memberships.filter(role=Membership.Role.READER).count()
    if n_readers < 1:
        return Check("readers", False, "at least 1 reader needed, none added")
    warning = "only 1 reader: random-reader (RRRC) analysis needs at least 2" if n_readers < 2 else ""
    return Check("readers", True, f"{n_readers} reader{'s' if n_readers != 1 else ''}", warning=warning)


PLANNED_POWER_TARGET = 0.8


def planned_power_check(study: Study) -> list[Check]:
    """The planned RRRC power of the study as configured (informational: a low power warns, never blocks)."""
    n_readers = study.memberships.filter(role=Membership.Role.READER).count()
    n_cases = Case.objects.filter(study=study, practice=False).count()
    planned = plan.planned_power(study, readers=n_readers, cases=n_cases)
    if planned is None:
        return [
            Check("planned_power", True, "no planned power: set the plan's effect size and a pilot (planning page)")
        ]
    text = (
        f"planned power {planned['power']:.2f} (RRRC, {n_readers} readers, {n_cases} cases"
        f"{f', {study.reader_groups} groups' if study.reader_groups > 1 else ''}, effect {planned['effect']:g}, "
        f"pilot: {planned['source']})"
    )
    low = planned["power"] < PLANNED_POWER_TARGET
    return [Check("planned_power", True, text, warning=f"{text}: below {PLANNED_POWER_TARGET:g}" if low else "")]


def _split_plot_checks(study: Study) -> list[Check]:
    """A split-plot study needs a reader and a patient per group (two readers per group for RRRC)."""
    groups = study.reader_groups
    if groups <= 1:
        return []
    n_readers = study.memberships.filter(role=Membership.Role.READER).count()
    n_patients = Patient.objects.filter(study=study, cases__practice=False).distinct().count()
    if n_readers < groups or n_patients < groups:
        return [
            Check(
                "reader_groups",
                False,
                f"split-plot in {groups} groups needs at least {groups} readers and {groups} patients "
                f"(has {n_readers} readers, {n_patients} patients)",
            )
        ]
    warning = f"{n_readers} readers in {groups} groups: fewer than 2 per group" if n_readers < 2 * groups else ""
    return [Check("reader_groups", True, f"split-plot: {n_readers} readers in {groups} groups", warning=warning)]


def _case_checks(study: Study) -> list[Check]:
    cases = Case.objects.filter(study=study)
    n_cases = cases.count()
    if n_cases == 0:
        return [Check("cases", False, "no cases imported")]
    # Practice cases are read in the practice session only and count for nothing: the study needs its own.
    n_practice = cases.filter(practice=True).count()
    if n_practice == n_cases:
        return [Check("cases", False, f"only practice cases imported ({n_practice}); the study needs its own")]
    practice = f" (and {n_practice} practice case{'s' if n_practice != 1 else ''})" if n_practice else ""
    checks = [Check("cases", True, f"{n_cases - n_practice} cases imported{practice}")]
    missing_truth = list(cases.filter(truth__isnull=True).values_list("case_id", flat=True)[:20])
    labels = set(Truth.objects.filter(case__in=cases.analysed()).values_list("label", flat=True))
    if missing_truth:
        checks.append(Check("truth", False, f"cases without truth: {', '.join(missing_truth)}"))
    elif len(labels) < 2:
        classes = ", ".join(sorted(labels)) or "none"
        checks.append(
            Check("truth", False, f"truth of the non-practice cases has one class only ({classes}); AUC needs both")
        )
    else:
        checks.append(Check("truth", True, "every case has truth, both classes present"))
    # Every series of every case (the primary ones and the extra ones alike) must be readable.
    unreadable = [
        f"series of patient {image_series.patient} is not readable: {image_series.storage_prefix}"
        for image_series in ImageSeries.objects.filter(case_series__case__study=study).distinct().order_by("pk")
        if not storage.series_readable(image_series)  # through the storage API: no machine path assumed
    ]
    checks += [Check("series", False, text) for text in unreadable] or [Check("series", True, "every series readable")]
    return checks


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


# --- import runs ---------------------------------------------------------------------------------------------------
# An ImportRun records one import (upload, server folder, command line); the import itself is import_cases above.
# studies.jobs starts browser runs (queue, then the task on commit); the task and the command run them through
# studies.importing, which calls these.

IMPORT_ORIGIN_MAX = 1024
IMPORT_NAME_MAX = 255


def _display_text(value: str, limit: int) -> str:
    """A user's file or folder name for display only: control characters dropped, cut to the column's size."""
    return "".join(c for c in str(value) if c.isprintable())[:limit]


def check_import(actor: Actor, study: Study) -> None:
    """May ``actor`` import cases into ``study`` now (its admin, a draft)? Checked before an upload is staged."""
    check_study_admin(actor, study)
    _check_draft(study, "import cases")


def queue_import(
    actor: Actor,
    study: Study,
    *,
    source: str,
    origin: str,
    manifest_name: str,
    staged_manifest: str = "",
    staged_zip: str = "",
) -> ImportRun:
    """Write a queued import run of a draft study (admins only) and its start event."""
    if source not in ImportRun.Source.values:
        raise InvalidInput(f"source {source!r}: expected one of {', '.join(ImportRun.Source.values)}")
    with transaction.atomic():
        study = lock_study(study)
        check_import(actor, study)
        run = ImportRun.objects.create(
            study=study,
            created_by=actor,
            source=source,
            origin=_display_text(origin, IMPORT_ORIGIN_MAX),
            manifest_name=_display_text(manifest_name, IMPORT_NAME_MAX),
            staged_manifest=staged_manifest,
            staged_zip=staged_zip,
        )
        audit.record(
            actor,
            Verb.START_IMPORT,
            run,
            study=study,
            after={"source": run.source, "origin": run.origin, "manifest": run.manifest_name},
        )
    return run


def import_progress(run: ImportRun, stage: str, done: int, total: int) -> None:
    """The run's progress (not audited): the manifest's rows once checked, then series stored of all series."""
    if stage == "rows":
        run.n_rows = total
        run.set_progress(0, 1, message=f"manifest checked: {total} rows", also=["n_rows"])
    elif stage == "series":
        run.n_series_done, run.n_series_total = done, total
        run.set_progress(
            done,
            total,
            message=f"{done} of {total} series de-identified and stored",
            also=["n_series_done", "n_series_total"],
        )
    else:
        run.set_progress(0, 1, message=stage)


def finish_import(
    run: ImportRun, *, summary: ImportSummary | None = None, problems: list[dict] | None = None
) -> ImportRun:
    """The run's outcome: done with what was imported, or failed with every problem; one FINISH_JOB event."""
    if summary is not None:
        run.n_cases, run.n_patients, run.n_series = summary.n_cases, summary.n_patients, summary.n_series
        return finish_job(
            run,
            ImportRun.Status.DONE,
            actor=run.created_by,
            study=run.study,
            message=f"imported {summary.n_cases} cases of {summary.n_patients} patients ({summary.n_series} series)",
            errors=[],
            also=("n_cases", "n_patients", "n_series", "problems"),
            after={"cases": summary.n_cases, "patients": summary.n_patients, "series": summary.n_series},
        )
    run.problems = list(problems or [])
    lines = [
        " ".join(
            part
            for part in (
                p.get("file") or "",
                f"row {p['row']}" if p.get("row") is not None else "",
                f"column {p['column']}" if p.get("column") else "",
            )
            if part
        )
        + f": {p.get('reason', '')}"
        for p in run.problems
    ]
    return finish_job(
        run,
        ImportRun.Status.FAILED,
        actor=run.created_by,
        study=run.study,
        message=f"not imported: {len(lines)} problem(s); nothing was applied",
        errors=lines,
        also=("problems",),
    )
