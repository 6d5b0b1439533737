"""Reading designs as pure functions of a seeded ``numpy.random.Generator``.

The output is the full stored randomisation: for every reader, a list of sessions, each a list of
``(case, modality)`` items in reading order. ``launch`` writes it to SessionItem once; nothing recomputes it.

Crossover (fully crossed, M modalities, M sessions): cases are split into M blocks of near-equal size. Reader r
has a rotation offset o_r; in session s (0-based) block b is read in modality (b + s + o_r) mod M. So every
session holds every case exactly once, and across the M sessions every case is read once in every modality.
The offsets are balanced across readers (their counts differ by at most one; with two modalities: the numbers
of readers starting block A aided and unaided differ by at most one). Within a session the items of all blocks
are shuffled together, per reader and per session.

Sequential: one session; each case appears as consecutive items in modality order (unaided, then aided); the
case order is shuffled per reader.

Practice session (optional, before session 1): where a study has practice cases, every reader also gets one
practice session holding every practice case in every modality, per case in the given modality order (unaided
first), the case order shuffled per reader. It draws from its own stream of the study's seed, so adding practice
cases changes nothing in the design's own sessions. Practice cases never enter the design's sessions.

Split-plot (``groups`` G >= 2, within either design): readers are dealt into G groups of near-equal size and the
cases into G blocks of whole patients, balanced by each case's ``balance`` key (truth and size stratum: each block
gets near-equal numbers of every key); group g reads block g only, in every modality, under the design above.
Readers are dealt round-robin in a seeded random order; patients, largest first in a seeded random order, each go to
the block that holds the fewest cases of that patient's commonest key (ties: fewest cases, then at random).

Patient grouping: with ``adjacent`` or ``spread`` a patient's lesions go to the same block (blocks are then
balanced by lesion count, largest patients first); ``adjacent`` reads them one after another, ``spread`` places
them evenly apart in the session so that one lesion's read does not prime the next.
"""

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

PatientGrouping = Literal["none", "adjacent", "spread"]


@dataclass(frozen=True)
class CaseRef:
    """What a design needs to know about a case: its id and its patient (cluster)."""

    case: Hashable
    patient: Hashable
    balance: Hashable = None  # split-plot blocks hold near-equal numbers of each key (e.g. truth and size stratum)


Item = tuple[Hashable, Hashable]  # (case, modality)
Schedule = dict[Hashable, list[list[Item]]]  # reader -> sessions -> items


def balanced_offsets(rng: np.random.Generator, n_readers: int, n_modalities: int) -> list[int]:
    """Rotation offsets for readers: each offset used floor or ceil of n_readers / n_modalities times."""
    offsets = np.arange(n_readers) % n_modalities
    # Shuffle which offset value gets the extra reader too, not only which reader gets which offset.
    relabel = rng.permutation(n_modalities)
    return [int(relabel[o]) for o in rng.permutation(offsets)]


def split_blocks(
    rng: np.random.Generator, cases: Sequence[CaseRef], n_blocks: int, grouping: PatientGrouping
) -> list[list[CaseRef]]:
    """Split cases into ``n_blocks`` blocks of near-equal size (by patient when grouping is not 'none')."""
    if grouping == "none":
        order = rng.permutation(len(cases))
        return [[cases[i] for i in order[b::n_blocks]] for b in range(n_blocks)]
    by_patient = _group_by_patient(cases)
    patients = list(by_patient)
    order = rng.permutation(len(patients))
    # Largest patients first (stable on the shuffled order), each to the currently smallest block.
    ranked = sorted((patients[i] for i in order), key=lambda p: -len(by_patient[p]))
    blocks: list[list[CaseRef]] = [[] for _ in range(n_blocks)]
    for patient in ranked:
        sizes = np.array([len(b) for b in blocks])
        smallest = np.flatnonzero(sizes == sizes.min())
        blocks[int(rng.choice(smallest))].extend(by_patient[patient])
    return blocks


def order_cases(rng: np.random.Generator, cases: Sequence[CaseRef], grouping: PatientGrouping) -> list[CaseRef]:
    """A random reading order of cases, honouring the patient grouping option."""
    if grouping == "none":
        return [cases[i] for i in rng.permutation(len(cases))]
    by_patient = _group_by_patient(cases)
    patients = list(by_patient)
    if grouping == "adjacent":
        ordered: list[CaseRef] = []
        for i in rng.permutation(len(patients)):
            lesions = by_patient[patients[i]]
            ordered.extend(lesions[j] for j in rng.permutation(len(lesions)))
        return ordered
    # spread: lesion k of a patient with n lesions gets key (k + u) / n, u ~ U(0, 1) per patient, so each
    # patient's lesions are evenly spaced over the session; random tie-breaks keep the order unpredictable.
    keys = []
    for patient in patients:
        lesions = by_patient[patient]
        u = rng.random()
        for k, j in enumerate(rng.permutation(len(lesions))):
            keys.append(((k + u) / len(lesions), rng.random(), lesions[j]))
    keys.sort(key=lambda t: (t[0], t[1]))
    return [c for _, _, c in keys]


def crossover_schedule(
    rng: np.random.Generator,
    readers: Sequence[Hashable],
    cases: Sequence[CaseRef],
    modalities: Sequence[Hashable],
    grouping: PatientGrouping = "none",
) -> Schedule:
    """Fully crossed design: len(modalities) sessions per reader, every case once per session."""
    n_mod = len(modalities)
    _check(readers, cases, modalities, min_modalities=2)
    blocks = split_blocks(rng, cases, n_mod, grouping)
    offsets = balanced_offsets(rng, len(readers), n_mod)
    schedule: Schedule = {}
    for reader, offset in zip(readers, offsets, strict=True):
        sessions = []
        for s in range(n_mod):
            modality_of = {
                c.case: modalities[(b + s + offset) % n_mod] for b, block in enumerate(blocks) for c in block
            }
            ordered = order_cases(rng, [c for block in blocks for c in block], grouping)
            sessions.append([(c.case, modality_of[c.case]) for c in ordered])
        schedule[reader] = sessions
    return schedule


def sequential_schedule(
    rng: np.random.Generator,
    readers: Sequence[Hashable],
    cases: Sequence[CaseRef],
    modalities: Sequence[Hashable],
    grouping: PatientGrouping = "none",
) -> Schedule:
    """One session per reader; per case every modality in the given order (unaided first)."""
    _check(readers, cases, modalities, min_modalities=2)
    schedule: Schedule = {}
    for reader in readers:
        ordered = order_cases(rng, cases, grouping)
        schedule[reader] = [[(c.case, m) for c in ordered for m in modalities]]
    return schedule


def make_schedule(
    design: str,
    seed: int,
    readers: Sequence[Hashable],
    cases: Sequence[CaseRef],
    modalities: Sequence[Hashable],
    grouping: PatientGrouping = "none",
    groups: int = 1,
) -> Schedule:
    """The stored randomisation of a study: a pure function of its seed and sorted inputs (``groups`` >= 2: a
    split-plot study, see the module's docstring)."""
    rng = np.random.default_rng(seed)
    build = {"crossover": crossover_schedule, "sequential": sequential_schedule}.get(design)
    if build is None:
        raise ValueError(f"unknown design {design!r}: expected 'crossover' or 'sequential'")
    if groups == 1:
        return build(rng, readers, cases, modalities, grouping)
    schedule: Schedule = {}
    for group_readers, block in split_plot_groups(rng, readers, cases, groups):
        schedule.update(build(rng, group_readers, block, modalities, grouping))
    return schedule


def split_plot_groups(
    rng: np.random.Generator, readers: Sequence[Hashable], cases: Sequence[CaseRef], groups: int
) -> list[tuple[list[Hashable], list[CaseRef]]]:
    """Readers in ``groups`` groups and the cases in as many blocks (whole patients, balanced by key)."""
    by_patient = _group_by_patient(cases)
    if not 2 <= groups <= min(len(readers), len(by_patient)):
        raise ValueError(
            f"a split-plot design of {groups} groups needs at least {groups} readers and {groups} patients "
            f"(has {len(readers)} readers, {len(by_patient)} patients)"
        )
    dealt = [readers[i] for i in rng.permutation(len(readers))]
    reader_groups = [dealt[g::groups] for g in range(groups)]
    patients = [list(by_patient)[i] for i in rng.permutation(len(by_patient))]
    ranked = sorted(patients, key=lambda p: -len(by_patient[p]))  # stable: the shuffle breaks ties
    blocks: list[list[CaseRef]] = [[] for _ in range(groups)]
    for patient in ranked:
        lesions = by_patient[patient]
        keys = [c.balance for c in lesions]
        key = max(set(keys), key=lambda k: (keys.count(k), str(k)))
        counts = np.array([sum(c.balance == key for c in b) for b in blocks])
        sizes = np.array([len(b) for b in blocks])
        best = np.flatnonzero(counts == counts.min())
        candidates = best[sizes[best] == sizes[best].min()]
        blocks[int(rng.choice(candidates))].extend(lesions)
    return list(zip(reader_groups, blocks, strict=True))


# Spawn key of the practice session's random stream: np.random.default_rng([seed, PRACTICE_STREAM]).
PRACTICE_STREAM = 1


def practice_schedule(
    seed: int, readers: Sequence[Hashable], cases: Sequence[CaseRef], modalities: Sequence[Hashable]
) -> dict[Hashable, list[Item]]:
    """Every reader's practice items: each practice case in every modality (in the order given: unaided first),
    consecutively, cases in a seeded random order per reader. Empty dict without practice cases."""
    if not cases:
        return {}
    _check(readers, cases, modalities, min_modalities=1)
    rng = np.random.default_rng([seed, PRACTICE_STREAM])  # independent of make_schedule's stream
    return {reader: [(c.case, m) for c in order_cases(rng, cases, "none") for m in modalities] for reader in readers}


def _group_by_patient(cases: Sequence[CaseRef]) -> dict[Hashable, list[CaseRef]]:
    groups: dict[Hashable, list[CaseRef]] = {}
    for c in cases:
        groups.setdefault(c.patient, []).append(c)
    return groups


def _check(readers: Sequence, cases: Sequence[CaseRef], modalities: Sequence, min_modalities: int) -> None:
    if len(modalities) < min_modalities:
        raise ValueError(f"a design needs at least {min_modalities} modalities, got {len(modalities)}")
    if not readers:
        raise ValueError("a design needs at least one reader")
    if not cases:
        raise ValueError("a design needs at least one case")
    ids = [c.case for c in cases]
    if len(set(ids)) != len(ids):
        raise ValueError("case ids must be unique")
    if len(set(readers)) != len(readers) or len(set(modalities)) != len(modalities):
        raise ValueError("reader and modality ids must be unique")
