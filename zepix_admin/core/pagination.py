from typing import cast

from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.utils.functional import cached_property

MAX_COUNTED_ROWS = 10_000


class CappedCountPaginator(Paginator):
    """Counts at most MAX_COUNTED_ROWS + 1 rows: enough for the page links, cheap on any table."""

    @cached_property
    def count(self):
        return cast(QuerySet, self.object_list)[: MAX_COUNTED_ROWS + 1].count()
