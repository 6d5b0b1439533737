"""The one door for inference mutations: storing predictions (precompute and tests call it), and the rows of
precompute runs (queued here, progress and outcome reported by the task through here).

Predictions are frozen at launch: once a study is launched nothing records or discards one, so every aided
reader of a case is shown the same DL output, and each read stores the id of the prediction it was shown.

Enqueueing is not here: ``inference.jobs.start_precompute`` queues a run through this module and enqueues the
task, which calls this module back (jobs -> tasks -> precompute -> actions, no circle).
"""

import gzip
from typing import cast

import numpy as np
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from inference.models import BACKENDS, CLASSIFIERS, PrecomputeRun, Prediction, SegmentationEvaluation
from readerstudy.core import audit
from readerstudy.core.errors import Conflict, InvalidInput
from readerstudy.core.frozen import FrozenQuery
from readerstudy.core.jobs import finish_job
from readerstudy.core.models import Verb
from readerstudy.core.types import Actor
from readerstudy.studies.actions import check_study_admin
from readerstudy.studies.models import Case, ImageSeries, Study


def record_prediction(
    actor: Actor,
    case: Case,
    *,
    model_name: str,
    model_version: str,
    weights_sha256: str,
    inputs_sha256: str,
    probability: float,
    labelmap: np.ndarray | None = None,
    labels: list[dict] | None = None,
    lesions: list[dict] | None = None,
    seg_bytes: bytes | None = None,
    runtime_seconds: float = 0.0,
    device: str = "cpu",
    replace: bool = False,
) -> Prediction:
    """Store one prediction; the labelmap must cover the case's series (slices, rows, columns).

    ``replace`` recomputes: an earlier prediction from the same model and inputs is discarded first.
    """
    if not 0.0 <= float(probability) <= 1.0:
        raise InvalidInput(f"probability {probability!r}: expected 0 to 1")
    series = case.series
    expected = (series.n_slices, series.rows, series.columns)
    if labelmap is not None and tuple(labelmap.shape) != expected:
        raise InvalidInput(f"labelmap shape {tuple(labelmap.shape)} does not match the series {expected}")
    with transaction.atomic():
        # Locks the study row that launch locks too: a prediction cannot slip in while the study launches.
        study = Study.objects.select_for_update().get(pk=case.study_id)
        check_predictions_open(study)
        same = Prediction.objects.filter(
            case=case, model_name=model_name, weights_sha256=weights_sha256, inputs_sha256=inputs_sha256
        )
        if replace:
            for old in same:
                audit.record(
                    actor, Verb.DISCARD_PREDICTION, old, study=case.study, before={"probability": old.probability}
                )
                old.delete()
        elif same.exists():
            raise InvalidInput(f"case {case.case_id} already has this model's prediction for these inputs")
        prediction = Prediction(
            case=case,
            model_name=model_name,
            model_version=model_version,
            weights_sha256=weights_sha256,
            inputs_sha256=inputs_sha256,
            probability=float(probability),
            overlay_labels=labels or [],
            lesions=lesions or [],
            runtime_seconds=runtime_seconds,
            device=device,
        )
        if labelmap is not None:
            raw = np.ascontiguousarray(labelmap, dtype=np.uint8).tobytes()
            # Storage names are generated keys (study and case primary keys), never the manifest's case id.
            prediction.overlay.save(
                f"{int(case.study_id)}/case-{int(case.pk)}.u8.gz", ContentFile(gzip.compress(raw, 6)), save=False
            )
            prediction.overlay_shape = list(expected)
        if seg_bytes is not None:
            prediction.seg.save(f"{int(case.study_id)}/case-{int(case.pk)}.dcm", ContentFile(seg_bytes), save=False)
        prediction.save()
        audit.record(
            actor,
            Verb.RECORD_PREDICTION,
            prediction,
            study=case.study,
            after={
                "case": case.case_id,
                "model": model_name,
                "version": model_version,
                "weights_sha256": weights_sha256,
                "probability": float(probability),
            },
        )
    return prediction


def push_segmentations(actor: Actor, study: Study) -> int:
    """Send the DICOM SEG of every case's shown prediction to the configured DICOMweb server (STOW-RS); returns
    how many. Study admins only; one audit event after the server took them (a network send is no transaction).

    The SEGs reference the de-identified series (pseudonymous UIDs): on a research PACS holding the study's
    de-identified images they attach to them; on the clinical source PACS they would not (the UID remapping is
    one-way by design)."""
    from readerstudy.studies.dicomweb import DicomwebConfig, FetchError, store_instances

    check_study_admin(actor, study)
    config = DicomwebConfig.from_settings()
    if config is None:
        raise InvalidInput("no DICOMweb server configured (set DICOMWEB_URL to push segmentations)")
    cases = Case.objects.filter(study=study).order_by("case_id")
    shown = [p for p in (shown_prediction(c) for c in cases) if p is not None and p.seg]
    if not shown:
        raise InvalidInput(f"study {study.name!r} has no stored DICOM SEG to push: precompute first")
    blobs = []
    for prediction in shown:
        with prediction.seg.open("rb") as f:
            blobs.append(f.read())
    try:
        n = store_instances(config, blobs)
    except FetchError as exc:
        raise Conflict(f"segmentations not pushed: {exc}") from None
    with transaction.atomic():
        audit.record(
            actor, Verb.PUSH_SEGMENTATIONS, study, study=study,
            after={"n_segmentations": n, "server": config.url, "predictions": [p.pk for p in shown]},
        )  # fmt: skip
    return n


def check_predictions_open(study: Study) -> None:
    if study.status != Study.Status.DRAFT:
        raise Conflict(
            f"study {study.name!r} is {study.status}: DL predictions were frozen at launch and cannot change"
        )


def shown_prediction(case: Case) -> Prediction | None:
    """The prediction aided readers of ``case`` are shown: the newest one, which cannot change after launch."""
    found = _NEWEST_PREDICTION.objects(case.pk)
    return cast(Prediction, found[0]) if found else None


# On every aided item the reading API serves and every aided read it stores: compiled once (core/frozen.py).
_NEWEST_PREDICTION = FrozenQuery(
    lambda case_id: Prediction.objects.filter(case_id=case_id).order_by("-created_at", "-id")[:1]
)


def store_segmentation_evaluation(series: ImageSeries, key: str, result: dict, seconds: float) -> None:
    """Keep the series' segmentation metrics for later analysis runs (replacing those of an older key).

    Derived data the analysis task writes: no audit event, as it changes nothing a study's results rest on (a run
    with a different key recomputes). Two runs storing at once both computed the same thing: the second is dropped.
    """
    try:
        with transaction.atomic():
            SegmentationEvaluation.objects.update_or_create(
                series=series, defaults={"key": key, "result": result, "seconds": seconds}
            )
    except IntegrityError:
        pass


def queue_precompute(
    actor: Actor,
    study: Study,
    *,
    backend: str = "phantom-unet",
    device: str = "cpu",
    classifier: str = "densenet-crops",
) -> PrecomputeRun:
    """Write a queued precompute run of a draft study (admins only); ``jobs.start_precompute`` enqueues it."""
    check_study_admin(actor, study)
    check_predictions_open(study)
    if backend not in BACKENDS:
        raise InvalidInput(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    check_classifier(classifier)
    if device not in ("cpu", "cuda"):
        raise InvalidInput(f"device {device!r}: expected cpu or cuda")
    if not Case.objects.filter(study=study).exists():
        raise InvalidInput(f"study {study.name!r} has no cases to precompute: import cases first")
    with transaction.atomic():
        run = PrecomputeRun.objects.create(
            study=study, created_by=actor, backend=backend, device=device, classifier=classifier
        )
        audit.record(
            actor, Verb.START_PRECOMPUTE, run, study=study,
            after={"backend": backend, "device": device, "classifier": classifier},
        )  # fmt: skip
    return run


def check_classifier(classifier: str) -> None:
    if classifier not in CLASSIFIERS:
        raise InvalidInput(f"classifier {classifier!r}: expected one of {', '.join(CLASSIFIERS)}")


def start_command_precompute(
    study: Study, *, backend: str, device: str, classifier: str = "densenet-crops"
) -> PrecomputeRun:
    """The row of a precompute started from the command line (``manage.py precompute``), running at once: recorded
    like a web-started run (no web user started it: the operator at the shell), so the study's pages list it."""
    check_predictions_open(study)
    check_classifier(classifier)
    with transaction.atomic():
        run = PrecomputeRun.objects.create(
            study=study, created_by=None, backend=backend, device=device, classifier=classifier
        )
        audit.record(
            None,
            Verb.START_PRECOMPUTE,
            run,
            study=study,
            after={"backend": backend, "device": device, "classifier": classifier, "from": "command"},
        )
    return run


PRECOMPUTE_COUNTERS = {"done": "n_done", "skipped": "n_skipped", "failed": "n_failed"}


def precompute_progress(
    run: PrecomputeRun, *, n_cases: int | None = None, outcome: str | None = None, device: str | None = None
) -> None:
    """The task's progress: the batch's size (and the worker's device) when it starts, then one case's outcome at
    a time (not audited). A start counts from zero: a task run again after its worker was lost counts the
    predictions its first attempt stored as skipped, so the counters always add up to the cases handled."""
    also = []
    if n_cases is not None:
        run.n_cases, run.n_done, run.n_skipped, run.n_failed = n_cases, 0, 0, 0
        also += ["n_cases", "n_done", "n_skipped", "n_failed"]
    if device is not None and device != run.device:
        run.device = device
        also.append("device")
    if outcome is not None:
        field = PRECOMPUTE_COUNTERS[outcome]
        setattr(run, field, getattr(run, field) + 1)
        also.append(field)
    run.set_progress(run.n_handled, run.n_cases, message=f"{run.n_handled} of {run.n_cases} cases", also=also)


def finish_precompute(run: PrecomputeRun, *, errors: list[str], failed: bool) -> PrecomputeRun:
    """The run's outcome: done, or failed when a case (or the batch) failed, or when there was no case at all (an
    empty batch predicts nothing and must not read as a success); one FINISH_JOB event."""
    message = None
    if run.n_cases == 0 and not failed:
        failed, message = True, "no cases to precompute: the study has none (import cases first)"
    outcome = PrecomputeRun.Status.FAILED if failed else PrecomputeRun.Status.DONE
    return finish_job(
        run,
        outcome,
        actor=run.created_by,
        study=run.study,
        message=message,
        errors=errors,
        after={"cases": run.n_cases, "done": run.n_done, "skipped": run.n_skipped, "failed": run.n_failed},
    )
