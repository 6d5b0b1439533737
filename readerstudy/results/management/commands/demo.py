"""Set up the demo: synthetic phantom study, demo users, a launched crossover study. Safe to run twice.

It lives in results, the top floor, because it drives every app below it: studies' set-up, inference's
precompute, reading's launch, results' simulated reads.
"""

import os
import secrets
import shlex
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from readerstudy.reading.actions import launch_study
from readerstudy.studies import actions
from readerstudy.studies.models import Case, Study

DEMO_STUDY = "Demo: CRLM vs hemangioma, DL-assisted vs unaided"
DEMO_USERS = [
    ("admin", "superuser"),
    ("reader1", "reader"),
    ("reader2", "reader"),
    ("reader3", "reader"),
    ("statistician", "statistician"),
]
DEMO_SEED = 20261123
SIMULATED_STUDY = "Demo: simulated readers (for the statistician pages)"
SIMULATED_READERS = [f"sim-reader{i}" for i in range(1, 6)]
# Every demo case has the portal-venous CT (primary: the lesion and the DL refer to it), an arterial phase of 5 mm
# slices and a delayed phase as further series, so the viewer's series switching and synchronised scrolling have
# data and the multi-series classifier (portal-venous, arterial, delayed as channels) has its inputs.
DEMO_EXTRA_SERIES = ("arterial", "delayed")
# Classifier backends whose predictions are stored besides the shown one (densenet-crops), on the same
# segmentation, so the statistician's report compares backends and draws decision curves
# (inference.models.CLASSIFIERS; multi-series reads the three phases).
DEMO_EXTRA_CLASSIFIERS = ("radiomics", "slice-topk", "multi-series")
# Some lesions look atypical (mimic the other class, or look indeterminate; more often when small), so that the
# classes overlap as real lesions do: with typical lesions only, the demo DL's standalone AUC is a degenerate 1.0.
# Only those lesions' voxels differ from the study without atypia (fixtures.phantom.make_phantom).
DEMO_ATYPICAL_FRACTION = 0.2


class Command(BaseCommand):
    help = "Create (once) the synthetic demo study, its users and launch it."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--data-dir", default=str(settings.BASE_DIR / "fixtures" / "demo"))
        parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
        parser.add_argument("--no-precompute", action="store_true", help="skip the DL predictions (tests)")

    def handle(self, *args: Any, data_dir: str, no_progress: bool, no_precompute: bool, **options: Any) -> None:
        from fixtures.phantom import generate_demo_study  # numpy/pydicom-heavy: only the demo needs it

        data = Path(data_dir)
        manifest = data / "manifest.csv"
        if manifest.exists() and Study.objects.filter(name=DEMO_STUDY).exists():
            self.stdout.write(f"synthetic series: {data} (kept)")
        else:
            self.stdout.write(f"writing synthetic phantom series to {data}")
            manifest = generate_demo_study(
                data,
                seed=DEMO_SEED,
                progress=not no_progress,
                extra_series_roles=DEMO_EXTRA_SERIES,
                atypical_fraction=DEMO_ATYPICAL_FRACTION,
                # The phantoms' true liver and lesions as reference masks (the report's segmentation section) and
                # synthetic clinical covariates and case text: neither changes a voxel of the series.
                reference_masks=True,
                clinical=True,
            )

        password, source = self._password()
        users = {name: self._user(name, kind, password) for name, kind in DEMO_USERS}

        # Both studies are set up as drafts, precomputed, then launched: launch freezes the DL predictions.
        study = Study.objects.filter(name=DEMO_STUDY).first()
        if study is None:
            with transaction.atomic():
                study = self._build(users, manifest)
            self.stdout.write(self.style.SUCCESS(f"created {study.name!r}"))
        else:
            self.stdout.write(f"study {study.name!r} exists ({study.status}); nothing duplicated")
        simulated = Study.objects.filter(name=SIMULATED_STUDY).first()
        if simulated is None:
            simulated = self._build_simulated(users, manifest)
        else:
            self.stdout.write(f"study {SIMULATED_STUDY!r} exists ({simulated.status}); nothing duplicated")

        # DL predictions with the small phantom-trained demo models (idempotent: unchanged cases are skipped).
        # Only the demo's own studies: another study's broken case is its owner's to fix, not a reason to not serve.
        if not no_precompute:
            studies = [arg for name in (DEMO_STUDY, SIMULATED_STUDY) for arg in ("--study", name)]
            extras = [arg for name in DEMO_EXTRA_CLASSIFIERS for arg in ("--also-classifier", name)]
            call_command(
                "precompute", *studies, *extras, *(["--no-progress"] if no_progress else []),
                stdout=self.stdout, stderr=self.stderr,
            )  # fmt: skip
            self._report_other_studies()

        if study.status == Study.Status.DRAFT:
            # The demo launches with whatever precompute stored (none with --no-precompute): a case without a DL
            # prediction is printed as a warning and accepted explicitly (the launch event records it).
            for warning in actions.readiness(study, accept_missing_predictions=True).warnings:
                self.stdout.write(self.style.WARNING(f"warning: {warning}"))
            n_items = launch_study(users["admin"], study, accept_missing_predictions=True)
            self.stdout.write(self.style.SUCCESS(f"launched {study.name!r}: {n_items} reading items stored"))
        if simulated.status == Study.Status.DRAFT:
            # Launched in the past so that both sessions, 28 days apart, lie before today.
            launch_study(
                users["admin"],
                simulated,
                now=timezone.now() - timedelta(days=60),
                accept_missing_predictions=True,
            )
            call_command(
                "simulate_reads", simulated.name, *(["--no-progress"] if no_progress else []), stdout=self.stdout
            )
            # Every read is in: closed, so the statistician sees the comparisons (a running study hides them
            # unless its admin allows interim looks).
            actions.close_study(users["admin"], simulated)

        self.stdout.write(
            f"\nusers: {', '.join(name for name, _ in DEMO_USERS)}; password {source}: {password}\n"
            "readers: http://127.0.0.1:8000/reading/  statistician: http://127.0.0.1:8000/results/  "
            "study admin: http://127.0.0.1:8000/studies/ (progress, readers, import)  admin: http://127.0.0.1:8000/admin/"
        )

    def _report_other_studies(self) -> None:
        """Say which non-demo studies have cases without a DL prediction (reported, never precomputed or fatal)."""
        pending = (
            Case.objects.exclude(study__name__in=(DEMO_STUDY, SIMULATED_STUDY))
            .filter(predictions__isnull=True)
            .values_list("study__name", flat=True)
        )
        for name, n in sorted(Counter(pending).items()):
            self.stdout.write(
                self.style.WARNING(
                    f"note: study {name!r} (not the demo's) has {n} case(s) without a DL prediction; "
                    f"the demo leaves it alone (python manage.py precompute --study {shlex.quote(name)})"
                )
            )

    def _password(self) -> tuple[str, str]:
        if os.environ.get("DEMO_PASSWORD"):
            return os.environ["DEMO_PASSWORD"], "from DEMO_PASSWORD"
        # Generated once and kept in a git-ignored file, so a second run neither resets nor loses it.
        path = settings.BASE_DIR / ".demo-password"
        if path.exists():
            return path.read_text().strip(), f"generated earlier (in {path.name})"
        password = secrets.token_urlsafe(12)
        path.write_text(password + "\n")
        path.chmod(0o600)
        return password, f"generated (kept in {path.name})"

    def _user(self, username: str, kind: str, password: str) -> Any:
        User = get_user_model()
        user, created = User.objects.get_or_create(
            username=username, defaults={"is_staff": kind == "superuser", "is_superuser": kind == "superuser"}
        )
        if created or not user.check_password(password):
            user.set_password(password)
            user.save(update_fields=["password"])
        return user

    def _build_simulated(self, users: dict, manifest: Path) -> Study:
        """A second study whose reads are simulated, so the statistician pages have a full analysis to show."""
        admin = users["admin"]
        User = get_user_model()
        with transaction.atomic():
            study = actions.create_study(
                admin, SIMULATED_STUDY, description="Simulated Roe-Metz readers on the synthetic phantoms: demo only.",
                design=Study.Design.CROSSOVER, washout_days=28, patient_grouping=Study.PatientGrouping.SPREAD,
                seed=DEMO_SEED + 1,
            )  # fmt: skip
            actions.add_modality(admin, study, "unaided", "Unaided", shows_dl=False, order=0)
            actions.add_modality(admin, study, "aided", "DL-assisted", shows_dl=True, order=1)
            for name in SIMULATED_READERS:
                reader, created = User.objects.get_or_create(username=name)
                if created:
                    reader.set_unusable_password()  # simulated: nobody logs in as them
                    reader.save(update_fields=["password"])
                actions.add_member(admin, study, reader, "reader")
            actions.add_member(admin, study, users["statistician"], "statistician")
            actions.import_cases(admin, study, manifest)
        return study

    def _build(self, users: dict, manifest: Path) -> Study:
        admin = users["admin"]
        study = actions.create_study(
            admin,
            DEMO_STUDY,
            description="Synthetic portal-venous CT phantoms; demo only, no clinical data, no accuracy claims.",
            design=Study.Design.CROSSOVER,
            washout_days=28,
            patient_grouping=Study.PatientGrouping.SPREAD,
            seed=DEMO_SEED,
        )
        actions.add_modality(admin, study, "unaided", "Unaided", shows_dl=False, order=0)
        actions.add_modality(admin, study, "aided", "DL-assisted", shows_dl=True, order=1)
        for name, kind in DEMO_USERS:
            if kind in ("reader", "statistician"):
                actions.add_member(admin, study, users[name], kind)
        summary = actions.import_cases(admin, study, manifest)
        self.stdout.write(f"imported {summary.n_cases} lesions of {summary.n_patients} patients")
        return study
