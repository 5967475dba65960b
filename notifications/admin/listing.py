"""What keeps the admin's big lists fast on a table of millions of rows.

- Counting: an unfiltered list shows the planner's row estimate (pg_class),
  never COUNT(*) over the whole table; a filtered list counts only as far as a
  few pages past the one shown (COUNT over a LIMIT), and says "N+" beyond.
- Date drill-down: Django's date_hierarchy lists the years, months or days
  that hold rows with SELECT DISTINCT date_trunc(...), a scan of every row in
  range. Here each level costs one MIN/MAX, answered from the ends of an
  index, and offers every period between them.
"""

from __future__ import annotations

import calendar
from datetime import datetime
from functools import cached_property
from typing import Any, cast

from django.contrib.admin import ShowFacets
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Page, Paginator
from django.db.models import Count, IntegerField, Max, Min, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils import formats, timezone
from django.utils.text import capfirst

from .. import storage

ESTIMATE_ABOVE = 100_000  # below this an exact COUNT(*) is cheap enough to be worth it
COUNT_AT_LEAST = 10_000  # a filtered list counts at least this far...
PAGES_AHEAD = 10  # ...or this many pages past the one shown


class CheapCountPaginator(Paginator):
    """A paginator whose count never scans the whole table. count_kind: "exact", "estimate" or "at_least"."""

    def __init__(self, object_list: QuerySet[Any], per_page: int, orphans: int = 0, allow_empty_first_page: bool = True,
                 *, page_number: int = 1) -> None:  # fmt: skip
        super().__init__(object_list, per_page, orphans, allow_empty_first_page)
        self.page_number = page_number
        self.count_kind = "exact"

    @cached_property
    def count(self) -> int:
        queryset = cast("QuerySet[Any]", self.object_list)
        if not queryset.query.where:
            estimate = storage.backend(queryset.db).estimated_rows(queryset.model)
            if estimate is not None and estimate >= ESTIMATE_ABOVE:
                self.count_kind = "estimate"
                return estimate
        limit = max(COUNT_AT_LEAST, (self.page_number + PAGES_AHEAD) * self.per_page)
        # values("pk"): count rows, not the list's annotations (a per-row subquery would run for each counted row).
        counted = queryset.order_by().values("pk")[: limit + 1].count()
        if counted > limit:
            self.count_kind = "at_least"
            return limit
        return counted

    def page(self, number: int | str) -> Page:
        """As Paginator.page, but an inexact count never cuts the last page short."""
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if self.count_kind == "exact" and top + self.orphans >= self.count:
            top = self.count
        return self._get_page(self.object_list[bottom:top], number, self)  # type: ignore[attr-defined]


def count_per_row(rows: QuerySet[Any], *, by: str) -> Coalesce:
    """An annotation counting `rows` (filtered on an OuterRef) for each listed row: one index probe per row shown,
    never a GROUP BY over the whole related table."""
    counted = rows.order_by().values(by).annotate(n=Count("*")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def page_number(request: HttpRequest) -> int:
    try:
        return max(1, int(request.GET.get("p", 1)))
    except ValueError:
        return 1


class CheapListMixin:
    """For a ModelAdmin over a table that may hold millions of rows: no full counts, no facets."""

    show_full_result_count = False
    show_facets = ShowFacets.NEVER  # facets COUNT every filter choice over the table

    def get_paginator(self, request: HttpRequest, queryset: QuerySet[Any], per_page: int, orphans: int = 0,
                      allow_empty_first_page: bool = True) -> CheapCountPaginator:  # fmt: skip
        return CheapCountPaginator(queryset, per_page, orphans, allow_empty_first_page, page_number=page_number(request))


class CheapDateHierarchyChangeList(ChangeList):
    """A ChangeList whose date drill-down is built from one MIN/MAX per level (see the module's docstring)."""

    @cached_property
    def cheap_date_hierarchy(self) -> dict[str, Any]:
        field = str(self.date_hierarchy)
        year, month, day = (self.params.get(f"{field}__{part}") for part in ("year", "month", "day"))
        generic = f"{field}__"

        def link(filters: dict[str, Any]) -> str:
            return str(self.get_query_string(filters, [generic]))

        def title(value: datetime, fmt: str) -> str:
            return str(capfirst(formats.date_format(value, fmt)))

        if year and month and day:
            chosen = datetime(int(year), int(month), int(day))
            return {
                "show": True,
                "back": {"link": link({f"{field}__year": year, f"{field}__month": month}), "title": title(chosen, "YEAR_MONTH_FORMAT")},
                "choices": [{"title": title(chosen, "MONTH_DAY_FORMAT")}],
            }
        first, last = self._date_range(field)
        if first is None or last is None:
            return {"show": False}
        if not year and first.year == last.year:
            year = str(first.year)
            if first.month == last.month:
                month = str(first.month)
        if year and month:
            y, m = int(year), int(month)
            days = range(first.day if (first.year, first.month) == (y, m) else 1,
                         (last.day if (last.year, last.month) == (y, m) else calendar.monthrange(y, m)[1]) + 1)  # fmt: skip
            return {
                "show": True,
                "back": {"link": link({f"{field}__year": year}), "title": year},
                "choices": [
                    {"link": link({f"{field}__year": year, f"{field}__month": month, f"{field}__day": d}),
                     "title": title(datetime(y, m, d), "MONTH_DAY_FORMAT")}
                    for d in days
                ],
            }  # fmt: skip
        if year:
            y = int(year)
            months = range(first.month if first.year == y else 1, (last.month if last.year == y else 12) + 1)
            return {
                "show": True,
                "back": {"link": link({}), "title": "All dates"},
                "choices": [
                    {"link": link({f"{field}__year": year, f"{field}__month": m}), "title": title(datetime(y, m, 1), "YEAR_MONTH_FORMAT")}
                    for m in months
                ],
            }
        return {
            "show": True,
            "back": None,
            "choices": [{"link": link({f"{field}__year": y}), "title": str(y)} for y in range(first.year, last.year + 1)],
        }

    def _date_range(self, field: str) -> tuple[datetime | None, datetime | None]:
        """First and last value in the filtered list: one query, two index probes."""
        found = self.queryset.order_by().aggregate(first=Min(field), last=Max(field))
        first, last = found["first"], found["last"]
        if first is None or last is None:
            return None, None
        return timezone.localtime(first), timezone.localtime(last)
