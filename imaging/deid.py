"""De-identify one DICOM series: PS3.15 Annex E basic application level confidentiality profile.

(Over 400 lines on purpose: about 210 of them are the PS3.15 Table E.1-1 action table, kept beside the code that
applies it so that a reviewer checks both in one place.)

Implemented profile and options (recorded in DeidentificationMethodCodeSequence):

* **Basic profile (DCM 113100)**: the actions of Table E.1-1 for the attributes in :data:`ACTIONS`
  (``X`` remove, ``Z`` empty, ``D`` dummy value, ``U`` remap UID). Safety nets beyond the table, applied at
  every depth including sequence items: every private element is removed; every person name (VR PN) other
  than PatientName is emptied; every UID that is not a DICOM well-known UID (``1.2.840.10008.*``, e.g. SOP
  classes, transfer syntaxes) is remapped; overlay (60xx) and curve (50xx) groups are removed.
* **Retain longitudinal temporal information, modified dates (DCM 113107)**: every date (VR DA) and the date
  part of every date-time (VR DT) is shifted back by a per-pseudonym offset of 30..3679 days derived from
  the salt (:func:`date_offset_days`), so intervals within a patient (follow-up truth) survive but calendar
  dates do not. Times of day (VR TM) are kept. PatientBirthDate is emptied, not shifted.
* PatientName and PatientID become the pseudonym; PatientIdentityRemoved = YES.

UIDs are remapped deterministically: ``new = 2.25.<hash(salt, old)>`` (:func:`remap_uid`), the same function
everywhere (SOPInstanceUID, ReferencedSOPInstanceUID in sequences, file meta), so references between objects
de-identified with the same salt still resolve. Blank UIDs are first repaired with the policy of
:func:`imaging.series.repair_uids` (each repair is a note in the report), then remapped.

Pixel data are written back untouched in the original transfer syntax (JPEG 2000 stays JPEG 2000): nothing is
decompressed, so pydicom cannot assign new UIDs behind our back. A series whose BurnedInAnnotation is YES is
rejected: burned-in text cannot be removed here. Output files are named ``0001.dcm``... in slice order
(original file names often carry UIDs or names).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag

from imaging.headers import SeriesInfo
from imaging.series import DicomSeriesError, SliceHeader, derived_uid, scan_series

__all__ = ["ACTIONS", "DeidError", "DeidReport", "date_offset_days", "deidentify_series", "remap_uid"]

# DeidentificationMethod is LO (64 characters at most); the coded sequence carries the profile and option.
METHOD = "PS3.15 E.1 basic profile, shifted dates, hashed UIDs (v1)"
_WELL_KNOWN_UID_ROOT = "1.2.840.10008."

# PS3.15 Table E.1-1, basic profile column, for the attributes met in CT practice (pydicom keywords).
# Where the table allows several actions (e.g. X/Z/D) the strictest one that keeps the object valid is used:
# Z for type 2 attributes of the CT IOD, X otherwise. Dates are handled by the modified-dates option.
ACTIONS: dict[str, str] = {
    # patient
    "PatientName": "D",
    "PatientID": "D",
    "PatientBirthDate": "Z",
    "PatientSex": "Z",
    "PatientBirthTime": "X",
    "PatientAge": "X",
    "PatientSize": "X",
    "PatientWeight": "X",
    "PatientAddress": "X",
    "PatientTelephoneNumbers": "X",
    "PatientMotherBirthName": "X",
    "PatientBirthName": "X",
    "OtherPatientIDs": "X",
    "OtherPatientIDsSequence": "X",
    "OtherPatientNames": "X",
    "IssuerOfPatientID": "X",
    "IssuerOfPatientIDQualifiersSequence": "X",
    "PatientComments": "X",
    "PatientReligiousPreference": "X",
    "PatientSexNeutered": "X",
    "PatientState": "X",
    "PatientTransportArrangements": "X",
    "PatientInsurancePlanCodeSequence": "X",
    "PatientPrimaryLanguageCodeSequence": "X",
    "PatientPrimaryLanguageModifierCodeSequence": "X",
    "PatientInstitutionResidence": "X",
    "EthnicGroup": "X",
    "Occupation": "X",
    "MilitaryRank": "X",
    "BranchOfService": "X",
    "CountryOfResidence": "X",
    "RegionOfResidence": "X",
    "MedicalRecordLocator": "X",
    "MedicalAlerts": "X",
    "Allergies": "X",
    "SmokingStatus": "X",
    "PregnancyStatus": "X",
    "LastMenstrualDate": "X",
    "AdditionalPatientHistory": "X",
    "SpecialNeeds": "X",
    "InsurancePlanIdentification": "X",
    "ReferencedPatientSequence": "X",
    "ReferencedPatientAliasSequence": "X",
    "ResponsiblePerson": "X",
    "ResponsibleOrganization": "X",
    "ConfidentialityConstraintOnPatientDataDescription": "X",
    # visit / admission
    "AdmissionID": "X",
    "IssuerOfAdmissionIDSequence": "X",
    "AdmittingDate": "X",
    "AdmittingTime": "X",
    "AdmittingDiagnosesDescription": "X",
    "AdmittingDiagnosesCodeSequence": "X",
    "DischargeDiagnosisDescription": "X",
    "CurrentPatientLocation": "X",
    "ServiceEpisodeID": "X",
    "ServiceEpisodeDescription": "X",
    "IssuerOfServiceEpisodeIDSequence": "X",
    "VisitComments": "X",
    "ScheduledPatientInstitutionResidence": "X",
    # study / request / procedure
    "AccessionNumber": "Z",
    "IssuerOfAccessionNumberSequence": "X",
    "StudyID": "Z",
    "StudyDescription": "X",
    "StudyComments": "X",
    "StudyIDIssuer": "X",
    "ReferringPhysicianName": "Z",
    "ReferringPhysicianAddress": "X",
    "ReferringPhysicianTelephoneNumbers": "X",
    "ReferringPhysicianIdentificationSequence": "X",
    "ConsultingPhysicianName": "X",
    "ConsultingPhysicianIdentificationSequence": "X",
    "PhysiciansOfRecord": "X",
    "PhysiciansOfRecordIdentificationSequence": "X",
    "NameOfPhysiciansReadingStudy": "X",
    "PhysiciansReadingStudyIdentificationSequence": "X",
    "RequestingPhysician": "X",
    "RequestingService": "X",
    "RequestedProcedureDescription": "X",
    "RequestedProcedureID": "X",
    "RequestedProcedureComments": "X",
    "RequestedProcedureLocation": "X",
    "RequestedContrastAgent": "X",
    "RequestAttributesSequence": "X",
    "ReasonForStudy": "X",
    "ReasonForTheRequestedProcedure": "X",
    "ReasonForTheImagingServiceRequest": "X",
    "ImagingServiceRequestComments": "X",
    "PlacerOrderNumberImagingServiceRequest": "Z",
    "FillerOrderNumberImagingServiceRequest": "Z",
    "OrderEnteredBy": "X",
    "OrderEntererLocation": "X",
    "OrderCallbackPhoneNumber": "X",
    "ReferencedStudySequence": "X",
    "ReferencedPerformedProcedureStepSequence": "X",
    "PerformedProcedureStepID": "X",
    "PerformedProcedureStepDescription": "X",
    "PerformedProcedureStepStartDate": "X",
    "PerformedProcedureStepStartTime": "X",
    "PerformedProcedureStepEndDate": "X",
    "PerformedProcedureStepEndTime": "X",
    "PerformedLocation": "X",
    "PerformedStationName": "X",
    "PerformedStationAETitle": "X",
    "ScheduledProcedureStepDescription": "X",
    "ScheduledProcedureStepID": "X",
    "ScheduledProcedureStepLocation": "X",
    "ScheduledPerformingPhysicianName": "X",
    "ScheduledPerformingPhysicianIdentificationSequence": "X",
    "ScheduledHumanPerformersSequence": "X",
    "ActualHumanPerformersSequence": "X",
    "HumanPerformerName": "X",
    "HumanPerformerOrganization": "X",
    "PerformingPhysicianName": "X",
    "PerformingPhysicianIdentificationSequence": "X",
    "OperatorsName": "X",
    "OperatorIdentificationSequence": "X",
    "ProtocolName": "X",
    "AcquisitionComments": "X",
    "AcquisitionContextSequence": "X",
    "AcquisitionProtocolDescription": "X",
    "AcquisitionDeviceProcessingDescription": "X",
    "ContributionDescription": "X",
    "ContentCreatorName": "Z",
    "ContentCreatorIdentificationCodeSequence": "X",
    "ContrastBolusAgent": "Z",
    "ParticipantSequence": "X",
    "AuthorObserverSequence": "X",
    "VerifyingObserverName": "X",
    "VerifyingObserverSequence": "X",
    "VerifyingObserverIdentificationCodeSequence": "X",
    "VerifyingOrganization": "X",
    "PersonName": "X",
    "PersonAddress": "X",
    "PersonTelephoneNumbers": "X",
    "PersonIdentificationCodeSequence": "X",
    "ReviewerName": "X",
    # results / interpretation
    "InterpretationAuthor": "X",
    "InterpretationApproverSequence": "X",
    "InterpretationDiagnosisDescription": "X",
    "InterpretationIDIssuer": "X",
    "InterpretationRecorder": "X",
    "InterpretationText": "X",
    "InterpretationTranscriber": "X",
    "PhysicianApprovingInterpretation": "X",
    "ResultsComments": "X",
    "ResultsIDIssuer": "X",
    "ResultsDistributionListSequence": "X",
    "DistributionName": "X",
    "DistributionAddress": "X",
    "NamesOfIntendedRecipientsOfResults": "X",
    "IntendedRecipientsOfResultsIdentificationSequence": "X",
    "Impressions": "X",
    # institution / equipment
    "InstitutionName": "X",
    "InstitutionAddress": "X",
    "InstitutionCodeSequence": "X",
    "InstitutionalDepartmentName": "X",
    "InstitutionalDepartmentTypeCodeSequence": "X",
    "StationName": "X",
    "DeviceSerialNumber": "X",
    "DetectorID": "X",
    "GantryID": "X",
    "GeneratorID": "X",
    "CassetteID": "X",
    "PlateID": "X",
    "ModifyingDeviceID": "X",
    "ModifyingDeviceManufacturer": "X",
    "SourceApplicationEntityTitle": "X",
    # free text and descriptions
    "SeriesDescription": "X",
    "ImageComments": "X",
    "FrameComments": "X",
    "ImagePresentationComments": "X",
    "IdentifyingComments": "X",
    "DerivationDescription": "X",
    "TextComments": "X",
    "TextString": "X",
    "ModifiedImageDescription": "X",
    "ModifiedAttributesSequence": "X",
    "OriginalAttributesSequence": "X",
    "DigitalSignaturesSequence": "X",
    "MACParametersSequence": "X",
    "DataSetTrailingPadding": "X",
    "IconImageSequence": "X",
    "GraphicAnnotationSequence": "X",
    "TimezoneOffsetFromUTC": "X",
    "Arbitrary": "X",
    "CustodialOrganizationSequence": "X",
    "ReferencedPatientPhotoSequence": "X",
    # UIDs (also caught by the VR UI safety net; listed so the table reads like the standard)
    "StudyInstanceUID": "U",
    "SeriesInstanceUID": "U",
    "SOPInstanceUID": "U",
    "FrameOfReferenceUID": "U",
    "SynchronizationFrameOfReferenceUID": "U",
    "ReferencedSOPInstanceUID": "U",
    "ReferencedFrameOfReferenceUID": "U",
    "IrradiationEventUID": "U",
    "DeviceUID": "U",
    "InstanceCreatorUID": "U",
    "StorageMediaFileSetUID": "U",
    "DimensionOrganizationUID": "U",
    "ConcatenationUID": "U",
    "TargetUID": "U",
    "FiducialUID": "U",
}

_REMOVE_TAGS = {pydicom.datadict.tag_for_keyword(k) for k, a in ACTIONS.items() if a == "X"}
_EMPTY_TAGS = {pydicom.datadict.tag_for_keyword(k) for k, a in ACTIONS.items() if a == "Z"}
_PATIENT_NAME = pydicom.datadict.tag_for_keyword("PatientName")
_PATIENT_ID = pydicom.datadict.tag_for_keyword("PatientID")
_BIRTH_DATE = pydicom.datadict.tag_for_keyword("PatientBirthDate")


class DeidError(DicomSeriesError):
    """The series cannot be de-identified safely (the message says why and names the file)."""


@dataclass
class DeidReport:
    """What :func:`deidentify_series` did.

    ``uid_map`` maps every original (or repaired) UID to its replacement: keep it out of anything shared with
    readers (the original UIDs are identifying).
    """

    pseudonym: str
    files: list[Path]
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uids: list[str]
    date_offset_days: int
    method: str = METHOD
    notes: list[str] = field(default_factory=list)
    uid_map: dict[str, str] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)  # keyword or "private" -> count over the series
    # The geometry of what was written (files 0001.dcm... and the new SeriesInstanceUID), from the one header
    # scan of the source: the import stores it without reading the copies' headers again.
    series: SeriesInfo | None = None


def remap_uid(uid: str, salt: str) -> str:
    """The replacement of ``uid``: same ``uid`` and ``salt``, same result; well-known DICOM UIDs are kept."""
    uid = str(uid).strip()
    if not uid or uid.startswith(_WELL_KNOWN_UID_ROOT):
        return uid
    return derived_uid("crlm-deid", salt, uid)


def date_offset_days(pseudonym: str, salt: str) -> int:
    """Days every date of this pseudonym is moved back: 30..3679, fixed by (salt, pseudonym)."""
    digest = hashlib.sha256(f"crlm-date-shift|{salt}|{pseudonym}".encode()).digest()
    return 30 + int.from_bytes(digest[:8], "big") % 3650


def _shift_date(value: str, days: int) -> str:
    text = str(value).strip()
    if not text:
        return ""
    try:
        d = dt.date(int(text[0:4]), int(text[4:6]), int(text[6:8]))
    except (ValueError, IndexError):
        return ""  # unparseable dates are dropped rather than kept
    return (d - dt.timedelta(days=days)).strftime("%Y%m%d")


def _shift_datetime(value: str, days: int) -> str:
    text = str(value).strip()
    if len(text) < 8:
        return ""
    shifted = _shift_date(text[:8], days)
    return shifted + text[8:] if shifted else ""


def _clean(ds: Dataset, salt: str, days: int, removed: dict[str, int], top: bool) -> None:
    def count(key: str) -> None:
        removed[key] = removed.get(key, 0) + 1

    for elem in list(ds):
        tag = BaseTag(elem.tag)
        keyword = elem.keyword or str(tag)
        if tag.is_private:
            del ds[tag]
            count("private")
            continue
        if tag.group & 0xFF00 in (0x5000, 0x6000) and tag.group % 2 == 0:
            del ds[tag]  # curves and overlays (may hold burned-in graphics/text)
            count(f"group {tag.group:04X}")
            continue
        if tag in _REMOVE_TAGS:
            del ds[tag]
            count(keyword)
            continue
        if tag in (_PATIENT_NAME, _PATIENT_ID):
            if not top:  # nested copies (rare) are emptied; the top-level ones get the pseudonym from the caller
                elem.value = None
            continue
        if tag in _EMPTY_TAGS or tag == _BIRTH_DATE:
            if elem.VR == "SQ":
                elem.value = DicomSequence([])
            else:
                elem.value = None
            continue
        _clean_element(elem, salt, days, removed, count)


def _clean_element(  # noqa: C901
    elem: DataElement, salt: str, days: int, removed: dict[str, int], count: Callable[[str], None]
) -> None:
    vr = elem.VR
    if vr == "SQ":
        for item in elem.value or []:
            _clean(item, salt, days, removed, top=False)
    elif vr == "PN":
        if elem.value not in (None, ""):
            count(f"{elem.keyword or elem.tag} (PN)")
        elem.value = None
    elif vr == "UI":
        if elem.VM > 1:
            elem.value = [remap_uid(v, salt) for v in elem.value]
        elif elem.value:
            elem.value = remap_uid(str(elem.value), salt)
    elif vr == "DA":
        if elem.VM > 1:
            elem.value = [_shift_date(v, days) for v in elem.value]
        elif elem.value:
            elem.value = _shift_date(str(elem.value), days)
    elif vr == "DT":
        if elem.VM > 1:
            elem.value = [_shift_datetime(v, days) for v in elem.value]
        elif elem.value:
            elem.value = _shift_datetime(str(elem.value), days)


def _collect_uids(ds: Dataset, out: set[str]) -> None:
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value or []:
                _collect_uids(item, out)
        elif elem.VR == "UI" and elem.value:
            values = elem.value if elem.VM > 1 else [elem.value]
            out.update(str(v) for v in values if str(v) and not str(v).startswith(_WELL_KNOWN_UID_ROOT))


def _method_codes() -> DicomSequence:
    items = []
    for value, meaning in (
        ("113100", "Basic Application Confidentiality Profile"),
        ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ):
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        items.append(item)
    return DicomSequence(items)


def deidentify_series(  # noqa: C901
    src_folder: Path, dst_folder: Path, pseudonym: str, salt: str, *, modalities: tuple[str, ...] = ("CT",)
) -> DeidReport:
    """De-identify the series in ``src_folder`` into ``dst_folder``: a new or empty folder, never a link.

    Only files ``dst_folder/0001.dcm``... are written, each created exclusively (an existing file or a symbolic
    link in its place is an error, never replaced or followed). If anything fails, the files written and the
    folder (if this call created it) are removed again.

    Args:
        src_folder: one series (validated like :func:`imaging.series.scan_series`), every file of one of
            ``modalities``.
        dst_folder: output folder (created if missing; must be empty if it exists); files ``0001.dcm``... in
            slice order.
        pseudonym: the new PatientName and PatientID (e.g. ``"P001"``).
        salt: a project secret: UIDs and the date offset derive from it. Keep it constant across a study so
            that re-imports and derived objects (SEG) map to the same UIDs; keep it secret so that UIDs cannot
            be reversed by hashing candidates.

    Raises:
        DeidError: burned-in annotation, an empty or invalid pseudonym, an empty salt, an invalid series, or a
            ``dst_folder`` that is a link, not a folder, or not empty.
    """
    if not pseudonym.strip() or not salt:
        raise DeidError("pseudonym and salt must be non-empty")
    if len(pseudonym) > 64:
        raise DeidError(f"pseudonym {pseudonym!r} is longer than 64 characters (PatientID is LO)")
    if "\\" in pseudonym or not pseudonym.isprintable():
        # LO: a backslash would split PatientID into several values; control characters are not allowed.
        raise DeidError(f"pseudonym {pseudonym!r} contains a backslash or control character (PatientID is LO)")
    headers, _affine, _spacing, notes = scan_series(Path(src_folder), modalities=modalities)
    for h in headers:
        if str(h.ds.get("BurnedInAnnotation", "")).upper() == "YES":
            raise DeidError(f"{h.path}: BurnedInAnnotation is YES; burned-in text cannot be removed here")
    days = date_offset_days(pseudonym, salt)
    dst = Path(dst_folder)
    if dst.is_symlink():
        raise DeidError(f"{dst} is a symbolic link; refusing to write through it")
    created = not dst.exists()
    if created:
        dst.mkdir(parents=True)
    elif not dst.is_dir() or any(dst.iterdir()):
        raise DeidError(f"{dst} exists and is not an empty folder; refusing to write into it")
    written: list[Path] = []
    try:
        return _write(headers, dst, written, pseudonym, salt, days, notes)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        if created:
            try:
                dst.rmdir()
            except OSError:
                pass
        raise


def _written_info(headers: list[SliceHeader], files: list[Path], series_instance_uid: str) -> SeriesInfo:
    # The same geometry as imaging.headers.probe_series of the copy: de-identification moves no pixel or position.
    ds = headers[0].ds
    iop = [float(v) for v in ds.ImageOrientationPatient]
    normal = np.cross(iop[:3], iop[3:])
    return SeriesInfo(
        series_instance_uid=series_instance_uid,
        n_slices=len(headers),
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        normal=(float(normal[0]), float(normal[1]), float(normal[2])),
        positions_mm=[float(h.position) for h in headers],
        files=[p.name for p in files],
        modality=str(ds.get("Modality", "")).upper(),
    )


def _write(
    headers: list[SliceHeader], dst: Path, written: list[Path], pseudonym: str, salt: str, days: int, notes: list[str]
) -> DeidReport:
    removed: dict[str, int] = {}
    uid_map: dict[str, str] = {}
    for n, h in enumerate(headers, start=1):
        ds = pydicom.dcmread(h.path)  # full dataset, pixel data kept encoded
        # carry the repaired UIDs (scan_series repaired the header copies)
        for keyword in (
            "SOPClassUID",
            "SOPInstanceUID",
            "SeriesInstanceUID",
            "StudyInstanceUID",
            "FrameOfReferenceUID",
        ):
            if keyword in h.ds:
                setattr(ds, keyword, h.ds[keyword].value)
        originals: set[str] = set()
        _collect_uids(ds, originals)
        uid_map.update({u: remap_uid(u, salt) for u in originals})
        _clean(ds, salt, days, removed, top=True)
        ds.PatientName = pseudonym
        ds.PatientID = pseudonym
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = METHOD
        ds.DeidentificationMethodCodeSequence = _method_codes()
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
        meta = ds.file_meta
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        for private_meta in (
            "SourceApplicationEntityTitle",
            "SendingApplicationEntityTitle",
            "ReceivingApplicationEntityTitle",
        ):
            if private_meta in meta:
                del meta[private_meta]
        path = dst / f"{n:04d}.dcm"
        with path.open("xb") as out:  # O_EXCL: neither replaces a file nor follows a link put in its place
            written.append(path)
            ds.save_as(out, enforce_file_format=True)
    # The series-level UIDs are the remapped (repaired) ones of the source: no need to read a copy back.
    series_uid = remap_uid(str(headers[0].ds.SeriesInstanceUID), salt)
    return DeidReport(
        pseudonym=pseudonym,
        files=written,
        study_instance_uid=remap_uid(str(headers[0].ds.StudyInstanceUID), salt),
        series_instance_uid=series_uid,
        sop_instance_uids=[uid_map[str(h.ds.SOPInstanceUID)] for h in headers],
        date_offset_days=days,
        notes=notes,
        uid_map=uid_map,
        removed=removed,
        series=_written_info(headers, written, series_uid),
    )
