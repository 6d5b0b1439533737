"""python manage.py precompute [--study S ...] [--device cpu|cuda] [--backend phantom-unet|totalsegmentator]
[--classifier densenet-crops|radiomics|slice-topk|multi-series]"""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from inference import actions
from inference.precompute import BACKENDS, CLASSIFIERS, PrecomputeSummary, load_classifier, load_models, precompute
from readerstudy.studies.models import Case, Study


class Command(BaseCommand):
    help = "Precompute DL predictions (segmentation overlay, lesion measurements, CRLM probability) per case."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--study",
            action="append",
            dest="studies",
            metavar="STUDY",
            help="study name, repeatable (default: every study)",
        )
        parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
        parser.add_argument("--backend", choices=BACKENDS, default="phantom-unet")
        parser.add_argument(
            "--classifier", choices=CLASSIFIERS, default="densenet-crops", help="the lesion classifier (README)"
        )
        parser.add_argument(
            "--also-classifier", action="append", dest="also", choices=CLASSIFIERS, default=[],
            help="a further classifier backend to store predictions of (repeatable), on the same segmentation; "
            "--classifier's stays the one aided readers are shown",
        )  # fmt: skip
        parser.add_argument("--force", action="store_true", help="recompute even when inputs are unchanged")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, studies: list[str] | None, device: str, backend: str, force: bool,
               no_progress: bool, classifier: str = "densenet-crops", also: list[str] | None = None,
               **options: Any) -> None:  # fmt: skip
        cases = Case.objects.select_related("series", "study").order_by("study_id", "series_id", "case_id")
        if studies:
            targets = list(Study.objects.filter(name__in=studies))
            missing = sorted(set(studies) - {t.name for t in targets})
            if missing:
                raise CommandError(f"no study named {', '.join(repr(m) for m in missing)}")
            cases = cases.filter(study__in=targets)
        cases = list(cases)
        extra_names = [name for name in dict.fromkeys(also or []) if name != classifier]
        try:
            segmenter, model = load_models(backend, device, classifier=classifier)
            extras = [load_classifier(name, settings.INFERENCE_MODELS_DIR, device) for name in extra_names]
        except (FileNotFoundError, RuntimeError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        by_study: dict[int, list[Case]] = {}
        for case in cases:
            by_study.setdefault(case.study_id, []).append(case)
        summary = PrecomputeSummary()
        with tqdm(total=len(cases), desc=f"precompute ({backend}, {classifier}, {device})", unit="case",
                  disable=no_progress) as bar:  # fmt: skip
            for study_cases in by_study.values():
                part = self._study(study_cases, segmenter, model, (backend, classifier), device, force, bar, extras)
                for name in ("done", "skipped", "frozen", "failed", "seconds"):
                    setattr(summary, name, getattr(summary, name) + getattr(part, name))
                summary.errors += part.errors
        for error in summary.errors:
            self.stderr.write(f"failed: {error}")
        self.stdout.write(
            f"precompute: {summary.done} predicted, {summary.skipped} unchanged (skipped), {summary.failed} failed "
            f"in {summary.seconds:.1f} s"
            + (f" ({summary.seconds / summary.done:.2f} s per predicted case)" if summary.done else "")
        )
        if summary.frozen:
            self.stdout.write(f"{summary.frozen} frozen: launched studies keep the predictions they launched with")
        if summary.failed:
            raise CommandError(f"{summary.failed} case(s) failed; the others are stored (re-run to retry)")

    def _study(self, cases: list[Case], segmenter: Any, classifier: Any, choice: tuple[str, str], device: str,
               force: bool, bar: Any, extras: list[Any] | None = None) -> PrecomputeSummary:  # fmt: skip
        """One study's cases; a draft study's batch is recorded as a PrecomputeRun (its pages show it)."""
        study = cases[0].study
        run = None
        if study.status == Study.Status.DRAFT:
            backend, name = choice
            run = actions.start_command_precompute(study, backend=backend, device=device, classifier=name)
            actions.precompute_progress(run, n_cases=len(cases))

        def on_case(case: Case, outcome: str) -> None:
            bar.set_postfix_str(f"{case.case_id}: {outcome}")
            bar.update(1)
            if run is not None and outcome in actions.PRECOMPUTE_COUNTERS:
                actions.precompute_progress(run, outcome=outcome)

        try:
            summary = precompute(
                cases, backend=segmenter, classifier=classifier, actor=None, force=force, on_case=on_case,
                **({"extra_classifiers": extras} if extras else {}),
            )  # fmt: skip
        except Exception as exc:
            if run is not None:
                actions.finish_precompute(run, errors=[*run.errors, f"{type(exc).__name__}: {exc}"], failed=True)
            raise
        if run is not None:
            actions.finish_precompute(run, errors=summary.errors, failed=bool(summary.failed))
        return summary
