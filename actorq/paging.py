"""Pages of a listing: at most `limit` records after a cursor, the last id of the page before.

Records are listed in the order they were added (job ids are issued in
roughly that order). A cursor whose record has since gone (expired, purged)
still works: the page continues with the ids after it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from actorq.errors import InvalidSubmission

T = TypeVar("T")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidSubmission(f"limit must be an integer from 1 to {MAX_LIMIT}, not {limit!r}")


def page(
    records: Mapping[str, T],
    *,
    limit: int,
    after: str | None = None,
    keep: Callable[[T], bool] | None = None,
) -> list[T]:
    """Up to `limit` records after the one with id `after`, those `keep` accepts."""
    ids: Iterable[str] = records
    if after is not None:
        if after in records:
            rest = itertools.dropwhile(lambda key: key != after, ids)
            next(rest, None)  # the cursor's own record
            ids = rest
        else:
            ids = (key for key in ids if key > after)
    chosen: Iterable[T] = (records[key] for key in ids)
    if keep is not None:
        chosen = filter(keep, chosen)
    return list(itertools.islice(chosen, limit))
