from typing import cast

from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.utils.functional import cached_property

MAX_COUNTED_ROWS = 10_000


class CappedCountPaginator(Paginator):
    """Counts at most MAX_COUNTED_ROWS + 1 rows: enough for the page links, cheap on any table."""

    cap = MAX_COUNTED_ROWS

    @cached_property
    def count(self):
        return cast(QuerySet, self.object_list)[: MAX_COUNTED_ROWS + 1].count()

    @property
    def capped(self) -> bool:
        """Whether there are more rows than were counted (the count is then not exact)."""
        return self.count > MAX_COUNTED_ROWS
