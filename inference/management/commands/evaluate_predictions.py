"""Standalone evaluation of a study's stored predictions: DL AUC (DeLong CI, clustered by patient) overall and by
size stratum, and, where reference masks are given, segmentation agreement (Dice, HD95) by size stratum."""

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError

from inference.actions import shown_prediction
from readerstudy.analysis import AnalysisInputError
from readerstudy.analysis.strata import stratum_labels
from readerstudy.studies.manifest import id_problem
from readerstudy.studies.models import ImageSeries, Study
from readerstudy.studies.storage import slice_name


class Command(BaseCommand):
    help = "Evaluate a study's DL predictions against truth (AUC) and reference masks (Dice, HD95)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--study", required=True)
        parser.add_argument(
            "--masks",
            type=Path,
            help="folder of reference masks <patient>.npz (lesion_labels, liver_mask; slices in series order)",
        )
        parser.add_argument("--json", dest="json_out", type=Path, help="write the figures here")

    def handle(self, *args: Any, study: str, masks: Path | None, json_out: Path | None, **options: Any) -> None:
        target = Study.objects.filter(name=study).first()
        if target is None:
            raise CommandError(f"no study named {study!r}")
        out = {"study": target.name, "auc": self._auc(target)}
        if masks is not None:
            if not masks.is_dir():
                raise CommandError(f"reference mask folder {masks} does not exist")
            out["segmentation"] = self._segmentation(target, masks)
        for name, row in out["auc"].items():
            text = row.get("error") or f"AUC {row['auc']:.3f} (95% CI {row['ci'][0]:.3f}-{row['ci'][1]:.3f})"
            self.stdout.write(f"DL AUC {name}: {text}")
        for name, row in out.get("segmentation", {}).get("lesions_by_stratum", {}).items():
            if row.get("n"):
                self.stdout.write(
                    f"lesions {name}: n={row['n']} detected {row['detection_rate']:.0%} "
                    f"Dice mean {row['dice_mean']:.3f} HD95 median {row.get('hd95_median_mm')}"
                )
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

    def _segmentation(self, study: Study, masks: Path) -> dict:
        from inference.pipeline.evaluate import case_metrics, per_lesion_metrics, summarise_by_stratum

        lesion_rows, cases = [], []
        for series in ImageSeries.objects.filter(cases__study=study).distinct().select_related("patient"):
            problem = id_problem(series.patient.pseudonym)
            if problem is not None:  # a pseudonym from before ids were checked: not a safe file name under MASKS
                self.stderr.write(f"patient skipped: pseudonym {problem}; its mask cannot be looked up safely")
                continue
            reference = masks / f"{series.patient.pseudonym}.npz"
            if not reference.exists():
                continue
            prediction = shown_prediction(series.cases.filter(study=study).first())
            if prediction is None or not prediction.overlay:
                continue
            with prediction.overlay.open("rb") as f:
                labelmap = np.frombuffer(gzip.decompress(f.read()), dtype=np.uint8).reshape(prediction.overlay_shape)
            truth = np.load(reference)
            if truth["lesion_labels"].shape != labelmap.shape:
                raise CommandError(f"{reference}: shape {truth['lesion_labels'].shape} != series {labelmap.shape}")
            spacing = _spacing(series)
            pred_lesion, pred_liver = labelmap >= 2, labelmap >= 1
            lesion_rows += per_lesion_metrics(pred_lesion, truth["lesion_labels"], spacing, study.size_bins_mm)
            cases.append(
                case_metrics(pred_liver, pred_lesion, truth["liver_mask"], truth["lesion_labels"] > 0, spacing)
            )
        if not cases:
            raise CommandError(f"no reference masks in {masks} match the study's patients")
        return {
            "n_series": len(cases),
            "liver_dice_mean": float(np.mean([c["dice_liver"] for c in cases])),
            "lesions_by_stratum": summarise_by_stratum(lesion_rows, study.size_bins_mm),
        }


def _spacing(series: ImageSeries) -> tuple[float, float, float]:
    with default_storage.open(slice_name(series, 0), "rb") as f:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
    dz = float(np.median(np.diff(series.slice_positions_mm))) if series.n_slices > 1 else float(ds.SliceThickness)
    return (dz, float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1]))


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
