"""Standalone evaluation of a study's stored predictions: DL AUC (DeLong CI, clustered by patient) overall and by
size stratum, and, where reference masks are given, segmentation agreement of the liver, vessels and lesions
(Dice, HD95, NSD, clDice, Betti-number errors; lesions matched one by one and summarised by size stratum): see
inference.evaluation and inference.pipeline.seg_evaluation."""

import json
from pathlib import Path
from typing import Any

import numpy as np
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from inference.actions import shown_prediction
from inference.evaluation import NoReferenceMasks, segmentation_evaluation
from inference.pipeline.reference_masks import ReferenceMaskError
from inference.pipeline.seg_evaluation import format_table
from inference.pipeline.seg_metrics import NSD_TOLERANCE_MM
from readerstudy.analysis import AnalysisInputError
from readerstudy.analysis.strata import stratum_labels
from readerstudy.studies.models import Study


class Command(BaseCommand):
    help = (
        "Evaluate a study's DL predictions against truth (AUC) and reference masks (Dice, HD95, NSD, clDice, "
        "Betti-number errors of liver, vessels and lesions, lesions by size stratum)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--study", required=True)
        parser.add_argument(
            "--masks",
            type=Path,
            help="folder of reference masks per patient: <patient>.npz (liver_mask, lesion_labels[, vessel_mask]; "
            "slices in series order), <patient>.nii.gz (labels 1 liver, 2 lesion, 3 vessel), <patient>.dcm "
            "(DICOM SEG) or <patient>/{liver,lesions,vessels}.nii.gz (see inference/pipeline/reference_masks.py)",
        )
        parser.add_argument(
            "--pred-masks",
            type=Path,
            help="predicted masks in the same layouts; structures found there replace the stored prediction's "
            "(e.g. vessels from TotalSegmentator liver_vessels, which precompute does not store)",
        )
        parser.add_argument("--nsd-tolerance-mm", type=float, default=None, help="NSD tolerance in mm (default 2 mm)")
        parser.add_argument("--no-topology", action="store_true", help="skip clDice and Betti numbers (faster)")
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument("--json", dest="json_out", type=Path, help="write the figures here")

    def handle(
        self,
        *args: Any,
        study: str,
        masks: Path | None,
        pred_masks: Path | None = None,
        nsd_tolerance_mm: float | None = None,
        no_topology: bool = False,
        no_progress: bool = False,
        json_out: Path | None,
        **options: Any,
    ) -> None:
        target = Study.objects.filter(name=study).first()
        if target is None:
            raise CommandError(f"no study named {study!r}")
        out: dict[str, Any] = {"study": target.name, "auc": self._auc(target)}
        if masks is not None:
            if not masks.is_dir():
                raise CommandError(f"reference mask folder {masks} does not exist")
            if pred_masks is not None and not pred_masks.is_dir():
                raise CommandError(f"predicted mask folder {pred_masks} does not exist")
            out["segmentation"] = self._segmentation(
                target, masks, pred_masks, nsd_tolerance_mm, topology=not no_topology, progress=not no_progress
            )
        for name, row in out["auc"].items():
            text = row.get("error") or f"AUC {row['auc']:.3f} (95% CI {row['ci'][0]:.3f}-{row['ci'][1]:.3f})"
            self.stdout.write(f"DL AUC {name}: {text}")
        if "segmentation" in out:
            self.stdout.write(format_table(out["segmentation"]))
        if json_out is not None:
            json_out.write_text(_dumps(out))
            self.stdout.write(f"wrote {json_out}")

    def _auc(self, study: Study) -> dict:
        from inference.pipeline.evaluate import standalone_auc

        rows = []
        for case in study.cases.analysed().select_related("truth", "patient", "study"):  # no practice cases
            prediction = shown_prediction(case)
            if prediction is None:
                raise CommandError(f"case {case.case_id} has no prediction: run precompute first")
            rows.append((case.size_stratum, int(case.truth.positive), prediction.probability, case.patient.pseudonym))
        result = {}
        for name in ["all", *stratum_labels(study.size_bins_mm)]:
            sel = [r for r in rows if name == "all" or r[0] == name]
            try:
                result[name] = standalone_auc([r[1] for r in sel], [r[2] for r in sel], [r[3] for r in sel])
            except AnalysisInputError as exc:
                result[name] = {"error": str(exc)}
        return result

    def _segmentation(
        self,
        study: Study,
        masks: Path,
        pred_masks: Path | None,
        tolerance_mm: float | None,
        *,
        topology: bool,
        progress: bool,
    ) -> dict:
        with tqdm(desc="segmentation", unit="series", disable=not progress) as bar:

            def step(done: int, total: int) -> None:
                bar.total = total
                bar.update(1)

            try:
                return segmentation_evaluation(
                    study,
                    masks,
                    pred_masks=pred_masks,
                    tolerance_mm=NSD_TOLERANCE_MM if tolerance_mm is None else tolerance_mm,
                    topology=topology,
                    warn=lambda line: self.stderr.write(line),
                    progress=step,
                )
            except (NoReferenceMasks, ReferenceMaskError) as exc:
                raise CommandError(str(exc)) from exc


def _dumps(obj: Any) -> str:
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        if isinstance(value, float) and not np.isfinite(value):
            return None
        return value

    return json.dumps(clean(obj), indent=1)
