"""The series a reader is shown with an item: every series of its case, by position (0 = the primary series).

Slices of the primary series keep their URL (``reading-api:image``); every other series' slices are served by
``reading-api:series-image`` under the same access rules (``access.check_item_visible``, preload of the next
item). Nothing here carries a rating, the truth or DL output: only roles, slice counts and image URLs.
"""

from django.urls import reverse

from readerstudy.reading.models import SessionItem
from readerstudy.studies.models import Case, CaseSeries
from readerstudy.studies.roles import DEFAULT_SERIES_ROLE


def of_case(case: Case) -> list[CaseSeries]:
    """The case's series by position; a case without CaseSeries rows (none should exist: the import and
    migration 0005 write them) is shown its primary series under the default role."""
    return of_cases([case])[case.pk]


def of_cases(cases: list[Case]) -> dict[int, list[CaseSeries]]:
    """``of_case`` of several cases (the current item's and the next one's) in one query, by case pk."""
    by_pk: dict[int, list[CaseSeries]] = {case.pk: [] for case in cases}
    # A few rows, sorted here: an ORDER BY costs more to compile than sorting them (this runs on every item).
    for row in CaseSeries.objects.filter(case__in=list(by_pk)).select_related("series").order_by():
        by_pk[row.case_id].append(row)
    for case in {case.pk: case for case in cases}.values():
        rows = by_pk[case.pk]
        rows.sort(key=lambda row: row.position)
        if not rows or rows[0].position != 0:
            rows.insert(0, CaseSeries(case=case, series=case.series, role=DEFAULT_SERIES_ROLE, position=0))
    return by_pk


def slice_urls(item: SessionItem, shown: CaseSeries) -> list[str]:
    if shown.position == 0:
        return numbered_urls("reading-api:image", [item.pk], shown.series.n_slices)
    return numbered_urls("reading-api:series-image", [item.pk, shown.position], shown.series.n_slices)


# An index no series reaches, within the id converter's 18 digits: reverse() checks the value against its regex.
_MARKER = "9" * 18


def numbered_urls(name: str, args: list[int], n: int) -> list[str]:
    """``[reverse(name, args=[*args, i]) for i in range(n)]`` with one reverse() (a series has hundreds of slices,
    and every item payload lists two cases' slices): the URL with a marker index, split around it. The index is
    the last segment of these routes, and core.converters.IdConverter writes it as str(i)."""
    if n <= 0:
        return []
    head, _, tail = reverse(name, args=[*args, int(_MARKER)]).rpartition(_MARKER)
    return [f"{head}{i}{tail}" for i in range(n)]


def payload(item: SessionItem, rows: list[CaseSeries]) -> list[dict]:
    """``[{"role", "label", "primary", "n_slices", "images"}]`` in position order."""
    return [
        {
            "role": row.role,
            "label": row.label,
            "primary": row.position == 0,
            "n_slices": row.series.n_slices,
            "images": slice_urls(item, row),
        }
        for row in rows
    ]


def all_image_urls(item: SessionItem, rows: list[CaseSeries] | None = None) -> list[str]:
    """Every slice URL of every series of the item's case (what the page may preload for the next item);
    ``rows``: the case's ``of_case``, where the caller has it."""
    return [url for row in (of_case(item.case) if rows is None else rows) for url in slice_urls(item, row)]


def shown_series(item: SessionItem, position: int) -> CaseSeries | None:
    """The case's series at ``position`` (0 is the primary series), or None."""
    if position == 0:
        return of_case(item.case)[0]
    return CaseSeries.objects.filter(case_id=item.case_id, position=position).select_related("series").first()
