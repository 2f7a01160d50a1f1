"""Keep the job list cheap on a large table: a capped count, search by id prefix."""

from uuid import UUID

from django.core.paginator import Paginator
from django.utils.functional import cached_property


class CappedPaginator(Paginator):
    """Count at most `cap` rows: counting millions on every page costs more
    than the page itself. Past the cap, the list says "10000+" and filters
    narrow it down."""

    cap = 10_000

    @cached_property
    def count(self):
        return self.object_list.order_by()[: self.cap + 1].count()

    @property
    def capped(self):
        return self.count > self.cap


def id_prefix_range(term):
    """Return the (lowest, highest) job ids starting with `term`, or None.

    A short id (8+ hex digits) becomes a range on the primary key, which the
    index answers on any database."""
    digits = term.replace("-", "").lower()
    if not 8 <= len(digits) <= 32 or any(c not in "0123456789abcdef" for c in digits):
        return None
    return UUID(digits.ljust(32, "0")), UUID(digits.ljust(32, "f"))
