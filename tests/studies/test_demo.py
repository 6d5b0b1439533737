"""The one-command demo: a launched study, nothing duplicated on a second run, its own precompute."""

from collections import Counter

import pytest
from django.core.management import call_command

from readerstudy.core.models import AuditEvent
from readerstudy.reading.models import ReadingSession, SessionItem
from readerstudy.results.management.commands.demo import DEMO_STUDY
from readerstudy.studies.models import Case, CaseSeries, ImageSeries, Membership, Patient, Study
from tests.factories import build_study

pytestmark = pytest.mark.django_db


def test_demo_command_builds_a_launched_study_and_duplicates_nothing(tmp_path, monkeypatch, settings):
    settings.BASE_DIR = tmp_path  # the generated password file goes here, not into the checkout
    monkeypatch.setenv("DEMO_PASSWORD", "demo-pass-123")
    data = tmp_path / "demo"
    call_command("demo", data_dir=str(data), no_progress=True, no_precompute=True)
    study = Study.objects.get(name=DEMO_STUDY)
    assert study.status == "launched" and study.design == "crossover"
    from readerstudy.results.management.commands.demo import SIMULATED_STUDY

    simulated = Study.objects.get(name=SIMULATED_STUDY)
    assert simulated.status == "closed"  # all reads in: the statistician sees every comparison
    n_cases, n_patients = Case.objects.filter(study=study).count(), Patient.objects.filter(study=study).count()
    assert n_cases >= 40 and n_patients >= 15
    labels = set(Case.objects.filter(study=study).values_list("truth__label", flat=True))
    assert labels == {"crlm", "hemangioma"}
    strata = {c.size_stratum for c in Case.objects.filter(study=study).select_related("study")}
    assert strata == {"<=10", "10-30", ">30"}
    readers = Membership.objects.filter(study=study, role="reader").count()
    assert readers == 3
    assert ReadingSession.objects.filter(study=study).count() == 6
    assert SessionItem.objects.filter(study=study).count() == 3 * 2 * n_cases
    # Every case shows its portal-venous CT and, as further series, the arterial (5 mm slices) and delayed phases
    # (the multi-series classifier's inputs).
    roles = Counter(CaseSeries.objects.filter(case__study=study).values_list("position", "role"))
    assert roles == {(0, "portal-venous"): n_cases, (1, "arterial"): n_cases, (2, "delayed"): n_cases}
    assert ImageSeries.objects.filter(patient__study=study).count() == 3 * n_patients
    # The phantoms' true masks are imported as each portal-venous series' reference (the report's segmentation
    # section), and every case carries synthetic covariates and a case text.
    primary = ImageSeries.objects.filter(patient__study=study, cases__isnull=False).distinct()
    assert primary.count() == n_patients
    assert all(s.reference_mask and s.reference_mask_info["format"] == "NIfTI" for s in primary)
    assert not ImageSeries.objects.filter(patient__study=study, cases__isnull=True).exclude(reference_mask="").exists()
    cases = list(Case.objects.filter(study=study))
    assert all(set(c.clinical) == {"age", "sex", "cea_ng_ml", "prior_colorectal_cancer"} and c.case_text for c in cases)
    # Some lesions look atypical, so the demo DL's standalone AUC is not a degenerate 1.0.
    import numpy as np

    looks = np.concatenate([np.load(f)["lesion_appearances"] for f in sorted((data / "masks").glob("*.npz"))])
    assert looks.size == n_cases and 0 < np.count_nonzero(looks) < n_cases / 2
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password("demo-pass-123")

    counts = [m.objects.count() for m in (Study, Case, Patient, SessionItem, AuditEvent, get_user_model())]
    call_command("demo", data_dir=str(data), no_progress=True, no_precompute=True)
    assert [m.objects.count() for m in (Study, Case, Patient, SessionItem, AuditEvent, get_user_model())] == counts


def test_demo_precomputes_its_own_studies_and_never_blocks_on_another_studys_failure(
    tmp_path, monkeypatch, settings, capsys
):
    """Another study's case that cannot be predicted is reported; the demo still finishes (make demo serves)."""
    from inference.management.commands import precompute as command
    from inference.precompute import PrecomputeSummary
    from readerstudy.results.management.commands.demo import SIMULATED_STUDY

    settings.BASE_DIR = tmp_path
    monkeypatch.setenv("DEMO_PASSWORD", "demo-pass-123")
    other = build_study(tmp_path / "other", readers=1, name="Someone else's study", n_patients=1, lesions_per_patient=2)
    seen: list[str] = []

    def fake_precompute(cases, **kwargs) -> PrecomputeSummary:  # the real one, minus minutes of CPU per case
        summary = PrecomputeSummary()
        for case in cases:
            seen.append(case.study.name)
            if case.study_id == other.pk:  # what the real pipeline does with this study's series: fail
                summary.failed += 1
                summary.errors.append(f"{case.case_id}: ValueError: broken series")
            else:
                summary.done += 1
        return summary

    monkeypatch.setattr(command, "load_models", lambda backend, device, **kwargs: (object(), object()))
    monkeypatch.setattr(command, "precompute", fake_precompute)
    call_command("demo", data_dir=str(tmp_path / "demo"), no_progress=True)  # no CommandError
    assert set(seen) == {DEMO_STUDY, SIMULATED_STUDY}
    assert len(seen) == Case.objects.exclude(study=other).count()
    out = capsys.readouterr().out
    assert "0 failed" in out
    assert f"study {other.name!r} (not the demo's) has 2 case(s) without a DL prediction" in out
