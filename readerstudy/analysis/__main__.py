"""Command line: ``python -m readerstudy.analysis RATINGS.csv [options]`` (see README.md)."""

from __future__ import annotations

import argparse
import json
import sys

from readerstudy.analysis.api import analyse
from readerstudy.analysis.binary import FOMS
from readerstudy.analysis.covariance import COV_METHODS
from readerstudy.analysis.errors import AnalysisInputError
from readerstudy.analysis.onesided import HYPOTHESES
from readerstudy.analysis.report import format_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m readerstudy.analysis",
        description="Obuchowski-Rockette-Hillis MRMC analysis of empirical AUCs (or sensitivity or specificity at a "
        "threshold) from a long ratings CSV "
        "(columns reader, modality, case, truth, rating).",
    )
    parser.add_argument("ratings", help="ratings CSV")
    parser.add_argument("--cov", choices=COV_METHODS, default="jackknife", help="AUC covariance method")
    parser.add_argument("--cluster-column", help="column naming each case's patient (clustered lesions)")
    parser.add_argument("--stratify-column", help="column of strata (e.g. lesion-size bins) to analyse apart")
    parser.add_argument("--analysis", default="rrrc,frrc,rrfc", help="comma-separated: rrrc,frrc,rrfc")
    parser.add_argument("--alpha", type=float, default=0.05, help="1 - confidence level (default 0.05)")
    parser.add_argument(
        "--frrc-untruncated",
        action="store_true",
        help="FRRC error term with Cov2 - Cov3 as is (MRMCaov) instead of max(.., 0) (Iowa)",
    )
    parser.add_argument(
        "--complete-readers-only",
        action="store_true",
        help="leave out readers who did not rate every case of their block in every modality (else: refuse)",
    )
    parser.add_argument(
        "--fom", choices=FOMS, default="auc", help="figure of merit: the AUC (default), or sensitivity or specificity"
    )
    parser.add_argument(
        "--threshold",
        type=float,
        help="rating at or above which a read calls a case positive (sensitivity, specificity)",
    )
    parser.add_argument("--hypothesis", choices=HYPOTHESES, help="add a one-sided test of each difference (A - B)")
    parser.add_argument("--margin", type=float, help="non-inferiority margin M > 0: H0: A - B <= -M")
    parser.add_argument("--json", metavar="OUT.json", help="also write the full result as JSON")
    args = parser.parse_args(argv)
    try:
        result = analyse(
            args.ratings,
            cov=args.cov,
            cluster=args.cluster_column,
            stratum=args.stratify_column,
            analyses=args.analysis.split(","),
            alpha=args.alpha,
            frrc_truncate=not args.frrc_untruncated,
            complete_readers_only=args.complete_readers_only,
            fom=args.fom,
            threshold=args.threshold,
            margin=args.margin,
            hypothesis=args.hypothesis,
        )
    except AnalysisInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2, allow_nan=False)
            fh.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
