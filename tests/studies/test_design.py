"""Properties of the reading designs (pure functions; no database)."""

import itertools
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from readerstudy.studies.design import CaseRef, crossover_schedule, make_schedule, order_cases, split_blocks

MODALITIES = ["unaided", "aided"]


def cases_for(patient_sizes: list[int]) -> list[CaseRef]:
    return [CaseRef(f"P{p}-L{k}", f"P{p}") for p, n in enumerate(patient_sizes) for k in range(n)]


@settings(max_examples=40, deadline=None)
@given(
    n_readers=st.integers(1, 9),
    patient_sizes=st.lists(st.integers(1, 4), min_size=2, max_size=15),
    n_modalities=st.integers(2, 3),
    grouping=st.sampled_from(["none", "adjacent", "spread"]),
    seed=st.integers(0, 2**32),
)
def test_crossover_reads_every_case_once_per_modality_and_session(
    n_readers, patient_sizes, n_modalities, grouping, seed
):
    cases = cases_for(patient_sizes)
    modalities = [f"m{i}" for i in range(n_modalities)]
    readers = [f"r{i}" for i in range(n_readers)]
    schedule = make_schedule("crossover", seed, readers, cases, modalities, grouping)
    ids = sorted(c.case for c in cases)
    for reader in readers:
        sessions = schedule[reader]
        assert len(sessions) == n_modalities
        for items in sessions:  # every session holds every case exactly once
            assert sorted(case for case, _ in items) == ids
        cells = Counter(item for items in sessions for item in items)
        assert set(cells.values()) == {1}
        assert len(cells) == len(ids) * n_modalities  # every case in every modality
    if grouping != "none":  # a patient's lesions share their modality within a session
        patient_of = {c.case: c.patient for c in cases}
        for reader in readers:
            for items in schedule[reader]:
                per_patient = {}
                for case, modality in items:
                    per_patient.setdefault(patient_of[case], set()).add(modality)
                assert all(len(m) == 1 for m in per_patient.values())


@pytest.mark.parametrize("n_readers", [1, 2, 3, 4, 5, 7, 10])
def test_crossover_counterbalances_the_starting_modality(n_readers):
    cases = cases_for([2] * 10)
    readers = [f"r{i}" for i in range(n_readers)]
    for seed in range(20):
        schedule = make_schedule("crossover", seed, readers, cases, MODALITIES)
        first_case = min(c.case for c in cases)
        starts = Counter(next(m for case, m in schedule[r][0] if case == first_case) for r in readers)
        assert abs(starts["aided"] - starts["unaided"]) <= 1


def test_crossover_blocks_are_balanced_and_by_patient():
    cases = cases_for([1, 2, 3, 4, 1, 1, 2, 2])
    blocks = split_blocks(np.random.default_rng(0), cases, 2, "spread")
    sizes = sorted(len(b) for b in blocks)
    assert sizes[1] - sizes[0] <= 1
    patients = [{c.patient for c in b} for b in blocks]
    assert not patients[0] & patients[1]
    plain = split_blocks(np.random.default_rng(0), cases, 2, "none")
    assert sorted(len(b) for b in plain) == [8, 8]


def test_sequential_gives_unaided_then_aided_for_each_case():
    cases = cases_for([2, 3, 1, 4])
    schedule = make_schedule("sequential", 7, ["a", "b"], cases, MODALITIES)
    for reader in ("a", "b"):
        (items,) = schedule[reader]
        assert len(items) == 2 * len(cases)
        for i in range(0, len(items), 2):
            assert items[i][0] == items[i + 1][0]
            assert (items[i][1], items[i + 1][1]) == ("unaided", "aided")
    orders = [[c for c, _ in schedule[r][0][::2]] for r in ("a", "b")]
    assert orders[0] != orders[1]  # case order randomised per reader


def test_schedule_is_reproducible_from_the_seed_and_changes_with_it():
    cases = cases_for([2] * 12)
    readers = ["r1", "r2", "r3"]
    one = make_schedule("crossover", 42, readers, cases, MODALITIES, "spread")
    assert one == make_schedule("crossover", 42, readers, cases, MODALITIES, "spread")
    assert one != make_schedule("crossover", 43, readers, cases, MODALITIES, "spread")


def test_case_order_differs_between_sessions_and_readers():
    cases = cases_for([1] * 30)
    schedule = crossover_schedule(np.random.default_rng(3), ["r1", "r2"], cases, MODALITIES)
    orders = [[c for c, _ in s] for r in ("r1", "r2") for s in schedule[r]]
    assert len({tuple(o) for o in orders}) == 4


def test_adjacent_keeps_a_patients_lesions_together():
    cases = cases_for([3, 2, 4, 1, 2])
    ordered = order_cases(np.random.default_rng(5), cases, "adjacent")
    patients = [c.patient for c in ordered]
    runs = [p for i, p in enumerate(patients) if i == 0 or p != patients[i - 1]]
    assert len(runs) == len(set(patients))  # each patient forms one contiguous run


def test_spread_keeps_a_patients_lesions_apart():
    cases = cases_for([4] * 6)  # 24 lesions: ideal spacing is 6 positions
    gaps_spread, gaps_random = [], []
    for seed in range(30):
        for grouping, gaps in (("spread", gaps_spread), ("none", gaps_random)):
            ordered = order_cases(np.random.default_rng(seed), cases, grouping)
            positions = {}
            for i, c in enumerate(ordered):
                positions.setdefault(c.patient, []).append(i)
            gaps.append(min(b - a for p in positions.values() for a, b in itertools.pairwise(p)))
    assert min(gaps_spread) >= 3
    assert np.mean(gaps_spread) > np.mean(gaps_random) + 2


def test_design_rejects_bad_input():
    cases = cases_for([1, 1])
    with pytest.raises(ValueError, match="at least 2 modalities"):
        make_schedule("crossover", 1, ["r"], cases, ["only"])
    with pytest.raises(ValueError, match="unknown design"):
        make_schedule("parallel", 1, ["r"], cases, MODALITIES)
    with pytest.raises(ValueError, match="unique"):
        make_schedule("crossover", 1, ["r"], cases + cases[:1], MODALITIES)


# --- split-plot -------------------------------------------------------------------------------------------------


def _split_plot_cases(n_patients: int = 30) -> list:
    from readerstudy.studies.design import CaseRef

    cases = []
    for p in range(n_patients):
        for lesion in range(1 + p % 3):  # 1 to 3 lesions per patient
            truth = (p + lesion) % 2
            stratum = ("<=10", "10-30", ">30")[(p * 7 + lesion) % 3]
            cases.append(CaseRef(f"P{p:02d}-L{lesion}", f"P{p:02d}", (truth, stratum)))
    return cases


@pytest.mark.parametrize("design", ["crossover", "sequential"])
@pytest.mark.parametrize("groups", [2, 3])
def test_split_plot_groups_read_their_own_block_in_every_modality(design, groups):
    from readerstudy.studies.design import make_schedule

    cases = _split_plot_cases()
    readers = [f"r{i}" for i in range(7)]
    schedule = make_schedule(design, 99, readers, cases, ["unaided", "aided"], groups=groups)
    assert set(schedule) == set(readers)
    read_by = {r: {c for session in schedule[r] for c, _ in session} for r in readers}
    blocks = {frozenset(v) for v in read_by.values()}
    assert len(blocks) == groups, "one block per group"
    assert set().union(*blocks) == {c.case for c in cases} and sum(map(len, blocks)) == len(cases), "a partition"
    group_sizes = sorted(sum(read_by[r] == b for r in readers) for b in blocks)
    assert group_sizes[-1] - group_sizes[0] <= 1, "readers dealt evenly"
    for r in readers:
        items = [item for session in schedule[r] for item in session]
        assert sorted(items) == sorted((c, m) for c in read_by[r] for m in ("unaided", "aided")), "every modality"
    patient_of = {c.case: c.patient for c in cases}
    for block in blocks:
        others = set().union(*(b for b in blocks if b != block))
        assert not {patient_of[c] for c in block} & {patient_of[c] for c in others}, "a patient stays in one block"
    key_of = {c.case: c.balance for c in cases}
    for key in set(key_of.values()):
        counts = [sum(key_of[c] == key for c in block) for block in blocks]
        assert max(counts) - min(counts) <= 3, (key, counts)  # whole patients of up to 3 lesions: near-equal
    again = make_schedule(design, 99, readers, cases, ["unaided", "aided"], groups=groups)
    assert again == schedule, "a pure function of the seed"


def test_one_group_is_the_fully_crossed_design_unchanged():
    from readerstudy.studies.design import make_schedule

    cases = _split_plot_cases(10)
    readers = ["a", "b", "c"]
    assert make_schedule("crossover", 5, readers, cases, ["u", "d"]) == make_schedule(
        "crossover", 5, readers, cases, ["u", "d"], groups=1
    )


def test_split_plot_needs_a_reader_and_a_patient_per_group():
    from readerstudy.studies.design import make_schedule

    with pytest.raises(ValueError, match="needs at least 4 readers and 4 patients \\(has 3 readers, 30 patients\\)"):
        make_schedule("crossover", 1, ["a", "b", "c"], _split_plot_cases(), ["u", "d"], groups=4)
