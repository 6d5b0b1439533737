"""Split-plot studies: readers in groups, each group reading its own block of cases in every modality.

**Detecting the design** (from which reads are in the table; ``read[m, r, k]``: reader r rated case k in
modality m). Two readers are linked when they rated a common case in any modality; each connected set of
readers is a **group**, and its **block** B_g is the set of cases its readers rated between them. Blocks are
disjoint by construction. A reader is **complete** when they rated every case of their group's block in every
modality. One group is a fully crossed study; two or more groups are a split-plot study. Refused:

- a group with no complete reader: its readers' case sets overlap only partially (e.g. groups reading cases
  1-100 and 51-150), or they rated different cases in different modalities;
- incomplete readers (a reader who rated a case of the block in one modality but not in another, or not at
  all), unless ``complete_readers_only`` leaves them out of the analysis. Since a complete reader rated the
  whole block, leaving readers out never loses a case, and the blocks stay as detected.

The data cannot show cases that nobody of a group rated: a group whose readers all stopped early gets the
block they rated between them.

**Analysis** (as MRMCaov 0.3.0 analyses a "partially paired factorial design"; Obuchowski 2009). Reader r's
AUC theta_mr in modality m is computed on the cases of their block only. The OR model is unchanged; only the
AUC covariance matrix (G = t r rows, modality-major) knows the design:

- jackknife, over all C units u of the study (cases, or patients with a cluster column):
  theta_mr^(-u) = AUC of reader r in modality m without the cases of u that r's group rated (= theta_mr when
  r's group rated none), and Cov = ((C-1)/C) sum_u (theta^(-u) - mean)(theta^(-u) - mean)^T. Entries between
  readers of different groups are small but not zero: off its block a row's deviation is the constant
  theta_mr - mean_u theta_mr^(-u).
- unbiased (Gallas U-statistic, unclustered): computed within each block; 0 between groups, which share no
  case (what MRMCaov's ``unbiased()`` gives for readers without common cases).
- DeLong (clustered: Obuchowski 1997): computed within each block; 0 between groups. MRMCaov refuses DeLong
  for unbalanced designs; the block-diagonal form here is the same construction as the unbiased one (cases of
  different blocks are independent samples). Refused when a patient has cases in more than one block, whose
  covariance across groups would not be 0.

Var, Cov1, Cov2, Cov3 are then the averages over **all** pairs of their kind, pairs of readers from different
groups included with their (near) zero covariance: the variance of the mean over readers of d_r =
theta_1r - theta_2r is (1/r^2) sum_{r,r'} Cov(d_r, d_r') = (2/r) (Var - Cov1 + (r-1)(Cov2 - Cov3)) exactly
with these all-pair averages. (Within a group of n = r/G readers, with block covariances Cov2_b and Cov3_b,
the all-pair average is Cov2 = (n-1)/(r-1) Cov2_b: Obuchowski's split-plot weight.) The mean squares come
from the complete t x r table of AUCs, so RRRC (Hillis 2008 ddf), FRRC and RRFC are the fully crossed
formulas of ``orh.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from readerstudy.analysis.auc import placements
from readerstudy.analysis.covariance import COV_METHODS, auc_covariance, jackknife_pseudo_aucs
from readerstudy.analysis.data import ReaderStudy, build_study
from readerstudy.analysis.errors import AnalysisInputError

FULLY_CROSSED, SPLIT_PLOT = "fully crossed", "split-plot"
_MAX_LISTED = 10  # how many readers / cells a message names


def _show(value: object) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)


def _names(values: list | np.ndarray) -> str:
    shown = ", ".join(_show(v) for v in list(values)[:_MAX_LISTED])
    return shown + (f" and {len(values) - _MAX_LISTED} more" if len(values) > _MAX_LISTED else "")


@dataclass(frozen=True)
class SplitPlotStudy:
    """Readers in groups, each group rating its own block of cases in every modality.

    ``ratings[m, r, k]`` is NaN where reader r's group did not read case k; ``reader_group`` (R,) and
    ``case_group`` (K,) give each reader's and case's group code 0..n_groups-1.
    """

    modalities: list[str]
    readers: list[str]
    cases: np.ndarray
    truth: np.ndarray
    ratings: np.ndarray
    reader_group: np.ndarray
    case_group: np.ndarray
    clusters: np.ndarray | None = None

    @property
    def n_positive(self) -> int:
        return int(self.truth.sum())

    @property
    def n_negative(self) -> int:
        return int(self.truth.size - self.truth.sum())

    @property
    def n_clusters(self) -> int | None:
        return None if self.clusters is None else int(np.unique(self.clusters).size)

    @property
    def n_groups(self) -> int:
        return int(self.reader_group.max()) + 1

    def block(self, g: int) -> ReaderStudy:
        """Group g as a fully crossed study of its readers on its block (clusters recoded 0..)."""
        rows, cols = self.reader_group == g, self.case_group == g
        clusters = None if self.clusters is None else np.unique(self.clusters[cols], return_inverse=True)[1]
        return ReaderStudy(
            self.modalities,
            [r for r, keep in zip(self.readers, rows, strict=True) if keep],
            self.cases[cols],
            self.truth[cols],
            self.ratings[:, rows][:, :, cols],
            clusters,
        )

    def subset(self, keep: np.ndarray) -> SplitPlotStudy:
        """The same readers and modalities on the cases where ``keep`` is True (e.g. one stratum)."""
        clusters = None if self.clusters is None else np.unique(self.clusters[keep], return_inverse=True)[1]
        return SplitPlotStudy(
            self.modalities,
            self.readers,
            self.cases[keep],
            self.truth[keep],
            self.ratings[:, :, keep],
            self.reader_group,
            self.case_group[keep],
            clusters,
        )

    def groups(self) -> list[dict]:
        """Each group's readers and its block's case counts (the result's ``groups``)."""
        return [_group_entry(self.block(g)) for g in range(self.n_groups)]


def _group_entry(study: ReaderStudy) -> dict:
    return {
        "readers": study.readers,
        "n_cases": int(study.truth.size),
        "n_positive": study.n_positive,
        "n_negative": study.n_negative,
    }


def design_entries(study: ReaderStudy | SplitPlotStudy) -> dict:
    """The result's ``design`` and ``groups`` (a fully crossed study is one group)."""
    if isinstance(study, SplitPlotStudy):
        return {"design": SPLIT_PLOT, "groups": study.groups()}
    return {"design": FULLY_CROSSED, "groups": [_group_entry(study)]}


@dataclass(frozen=True)
class Design:
    """What :func:`detect_design` found: groups of readers, their blocks, and who is complete."""

    reader_group: np.ndarray  # (R,) group code of each reader, groups numbered by their first reader
    case_group: np.ndarray  # (K,) group code of each case
    complete: np.ndarray  # (R,) bool: rated every case of the block in every modality
    reads: np.ndarray  # (R,) ratings given
    expected: np.ndarray  # (R,) block size x modalities

    @property
    def n_groups(self) -> int:
        return int(self.reader_group.max()) + 1

    def completion(self, readers: list[str], kept: np.ndarray) -> dict:
        """reader -> reads done / expected and whether the reader is analysed (the result's ``completion``)."""
        return {
            r: {
                "group": int(self.reader_group[i]),
                "reads": int(self.reads[i]),
                "expected": int(self.expected[i]),
                "complete": bool(self.complete[i]),
                "kept": bool(kept[i]),
            }
            for i, r in enumerate(readers)
        }


def detect_design(read: np.ndarray) -> Design:
    """Groups, blocks and complete readers from ``read[m, r, k]`` (see the module docstring)."""
    any_read = np.asarray(read.any(axis=0)).astype(np.int64)  # (R, K)
    linked = any_read @ any_read.T > 0  # (R, R), True on the diagonal
    group_of = np.arange(linked.shape[0])  # smallest reader index reachable: converges in <= R rounds
    while True:
        nearest = np.where(linked, group_of[None, :], group_of.size).min(axis=1)
        if (nearest == group_of).all():
            break
        group_of = nearest
    reader_group = np.unique(group_of, return_inverse=True)[1]  # numbered in the order of their first reader
    case_group = reader_group[np.argmax(any_read, axis=0)]  # every case was rated by somebody
    in_block = reader_group[:, None] == case_group[None, :]  # (R, K)
    n_m = read.shape[0]
    expected = n_m * in_block.sum(axis=1)
    reads = read.sum(axis=(0, 2))
    complete = reads == expected  # a reader rates nothing outside their block, by construction
    return Design(reader_group, case_group, complete, reads, expected)


def _differ_in_modalities(study: ReaderStudy, read: np.ndarray, readers: np.ndarray) -> str:
    """'reader 'A' rated case 'c1' in modality 'M0' but not in 'M1'' for the first such reader, or ''."""
    for r in readers:
        partly = read[:, r, :].any(axis=0) & ~read[:, r, :].all(axis=0)
        if partly.any():
            k = int(np.flatnonzero(partly)[0])
            done, missing = np.flatnonzero(read[:, r, k]), np.flatnonzero(~read[:, r, k])
            return (
                f"reader {_show(study.readers[r])} rated case {_show(study.cases[k])} in modality "
                f"{_show(study.modalities[done[0]])} but not in {_show(study.modalities[missing[0]])}"
            )
    return ""


def _no_complete_reader(study: ReaderStudy, read: np.ndarray, readers: np.ndarray) -> AnalysisInputError:
    """The refusal for a group where nobody rated the whole block: partial overlap or unpaired modalities."""
    any_read = np.asarray(read.any(axis=0))
    sets: dict[bytes, list[int]] = {}  # readers with the same case set
    for r in readers:
        sets.setdefault(any_read[r].tobytes(), []).append(int(r))
    expected = (
        "; expected every reader to rate every case in every modality (fully crossed), or reader groups "
        "rating disjoint blocks of cases, each reader their group's whole block in every modality (split-plot)"
    )
    if len(sets) == 1:
        return AnalysisInputError(
            f"not a supported design: readers {_names([study.readers[r] for r in readers])} rated different cases "
            f"in different modalities, e.g. {_differ_in_modalities(study, read, readers)}" + expected
        )
    parts = [
        f"readers {_names([study.readers[r] for r in members])} rated {int(any_read[members[0]].sum())} cases"
        for members in sets.values()
    ]
    first, second = (members[0] for members in list(sets.values())[:2])
    shared = np.flatnonzero(any_read[first] & any_read[second])
    example = f" (e.g. case {_show(study.cases[shared[0]])} by both of the first two)" if shared.size else ""
    return AnalysisInputError(
        f"not a supported design: reader groups whose case blocks overlap partially: {'; '.join(parts)}; "
        f"their blocks share cases{example}, and no reader rated all "
        f"{int(any_read[readers].any(axis=0).sum())} cases they rated between them" + expected
    )


def _missing_cells(study: ReaderStudy, read: np.ndarray, design: Design) -> AnalysisInputError:
    in_block = design.reader_group[:, None] == design.case_group[None, :]
    gap = np.argwhere(~read & in_block[None, :, :])  # (m, r, k) rows, modality-major
    shown = "; ".join(
        f"reader {_show(study.readers[r])} x modality {_show(study.modalities[m])} x case {_show(study.cases[k])}"
        for m, r, k in gap[:_MAX_LISTED]
    )
    incomplete = [study.readers[r] for r in np.flatnonzero(~design.complete)]
    where = "every case" if design.n_groups == 1 else f"every case of their group's block ({design.n_groups} groups)"
    return AnalysisInputError(
        f"not fully crossed: {len(gap)} reader x modality x case cell(s) missing, e.g. {shown}; expected every "
        f"reader to rate {where} in every modality (readers {_names(incomplete)} did not; "
        "complete_readers_only=True, --complete-readers-only on the command line, leaves them out)"
    )


def build_design(
    df: pd.DataFrame, cluster: str | None = None, complete_readers_only: bool = False
) -> tuple[ReaderStudy | SplitPlotStudy, dict]:
    """Validate a ratings table, detect its design and shape it for the analysis.

    Returns the study (a :class:`ReaderStudy` when fully crossed, else a :class:`SplitPlotStudy`) and the
    result's ``design``, ``groups`` and ``completion`` entries. Refusals raise AnalysisInputError.
    """
    full = build_study(df, cluster, missing_ok=True)
    read = ~np.isnan(full.ratings)
    design = detect_design(read)
    for g in range(design.n_groups):
        members = np.flatnonzero(design.reader_group == g)
        if not design.complete[members].any():
            raise _no_complete_reader(full, read, members)
    if not complete_readers_only and not design.complete.all():
        raise _missing_cells(full, read, design)
    kept = design.complete
    readers = [r for r, keep in zip(full.readers, kept, strict=True) if keep]
    ratings = full.ratings if kept.all() else full.ratings[:, kept]  # no copy of a complete study
    study: ReaderStudy | SplitPlotStudy
    if design.n_groups == 1:
        study = ReaderStudy(full.modalities, readers, full.cases, full.truth, ratings, full.clusters)
    else:
        study = SplitPlotStudy(
            full.modalities,
            readers,
            full.cases,
            full.truth,
            ratings,
            design.reader_group[kept],
            design.case_group,
            full.clusters,
        )
    info = {**design_entries(study), "completion": design.completion(full.readers, kept)}
    return study, info


def _checked_block(study: SplitPlotStudy, g: int, what: str) -> ReaderStudy:
    block = study.block(g)
    if block.n_positive == 0 or block.n_negative == 0:
        has = "no cases" if block.truth.size == 0 else ("only positive" if block.n_negative == 0 else "only negative")
        raise AnalysisInputError(
            f"{what}: the block of reader group {g + 1} (readers {_names(block.readers)}) has {has} cases "
            f"({block.truth.size}); expected both truth classes in every group's block"
        )
    return block


def split_plot_auc_covariance(
    study: SplitPlotStudy, method: str = "jackknife", what: str = "the data set"
) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (G,) and their G x G covariance (modality-major rows m * R + r) of a split-plot study."""
    if method not in COV_METHODS:
        raise AnalysisInputError(f"covariance method {method!r}: expected one of {list(COV_METHODS)}")
    n_m, n_r, _ = study.ratings.shape
    units = study.clusters if study.clusters is not None else np.arange(study.truth.size)
    n_units = int(units.max()) + 1
    if method == "delong" and study.clusters is not None:
        spread = [u for u in range(n_units) if np.unique(study.case_group[units == u]).size > 1]
        if spread:
            raise AnalysisInputError(
                f"DeLong covariance of a split-plot study: patient cluster(s) with cases in the blocks of more "
                f"than one reader group (e.g. the patient of case {_show(study.cases[units == spread[0]][0])}); "
                "use the jackknife, which deletes whole patients across groups"
            )
    auc = np.empty(n_m * n_r)
    cov = np.zeros((n_m * n_r, n_m * n_r))
    theta = np.empty((n_m * n_r, n_units))  # jackknife: leave-one-unit-out AUCs over all units of the study
    for g in range(study.n_groups):
        block = _checked_block(study, g, what)
        rows = (np.arange(n_m)[:, None] * n_r + np.flatnonzero(study.reader_group == g)[None, :]).ravel()
        x = block.ratings.reshape(-1, block.truth.size)
        if method == "jackknife":
            p = placements(x, block.truth)
            auc[rows] = p.auc
            theta[rows] = p.auc[:, None]  # units this group did not rate leave its AUCs as they are
            block_units = np.unique(units[study.case_group == g])  # the global codes of block.clusters 0..
            theta[np.ix_(rows, block_units)] = jackknife_pseudo_aucs(p, block.clusters)
        else:
            auc[rows], cov[np.ix_(rows, rows)] = auc_covariance(x, block.truth, method, block.clusters)
    if method == "jackknife":
        dev = theta - theta.mean(axis=1, keepdims=True)
        cov = (n_units - 1) / n_units * (dev @ dev.T)
    return auc, cov
