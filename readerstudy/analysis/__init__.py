"""MRMC statistics core: empirical AUC, its covariance, Obuchowski-Rockette-Hillis analysis (no Django).

Names are imported lazily so that ``readerstudy.analysis.strata`` (used by the web app to label cases)
does not pull in numpy, pandas or scipy.
"""

from importlib import import_module

_EXPORTS = {
    "analyse": "api",
    "analyse_study": "api",
    "AnalysisInputError": "errors",
    "check_size_bins": "strata",
    "size_stratum": "strata",
    "stratum_labels": "strata",
    "holm": "strata",
    "model_auc": "standalone",
    "compare_model_to_readers": "standalone",
    "empirical_auc": "auc",
    "placements": "auc",
    "auc_covariance": "covariance",
    "build_study": "data",
    "read_ratings": "data",
    "ReaderStudy": "data",
    "build_design": "splitplot",
    "SplitPlotStudy": "splitplot",
    "format_report": "report",
    "power_from_pilot": "power",
    "cases_for_power": "power",
    "power_grid": "power",
    "pilot_variance": "power",
    "PilotVariance": "power",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
