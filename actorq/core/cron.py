"""When a cron expression fires, in an IANA time zone, with the DST rules spelled out.

Pure: instants are float seconds since the epoch (UTC), passed in and
returned; nothing here reads a clock. Expressions are the five standard
fields (minute hour day-of-month month day-of-week), parsed and stepped by
cronsim, which follows Debian (Vixie) cron where the clock jumps:

- spring forward: a schedule at a fixed time that falls in the missing hour
  (``30 2 * * *`` in Europe/Berlin on 2026-03-29) runs right after the jump,
  at 03:00; a schedule that repeats within the hour (``0 * * * *``,
  ``*/15 2 * * *``) follows the clock as it is, so it has no fire in the
  hour that does not exist.
- fall back: a wall-clock time that happens twice fires once, at its first
  occurrence, unless ``fall_back="twice"`` asks for both. So an hourly
  schedule does not run twice for the repeated hour by default.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from actorq.errors import InvalidCronExpression, UnknownTimeZone

FallBack = Literal["once", "twice"]
FALL_BACKS: tuple[FallBack, ...] = ("once", "twice")

# Searching for the next fire gives up this far ahead: "0 0 30 2 *" (February
# 30th) never fires, and cronsim would otherwise search forever.
_HORIZON = 5 * 366 * 86400.0


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; raises UnknownTimeZone."""
    if not isinstance(name, str) or not name or name != name.strip():
        raise UnknownTimeZone(str(name))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise UnknownTimeZone(name) from None


def check(expr: str, tz: str) -> None:
    """Raise InvalidCronExpression or UnknownTimeZone unless `expr` can fire in `tz`."""
    if not isinstance(expr, str) or len(expr.split()) != 5:
        raise InvalidCronExpression(str(expr), "expected 5 fields: minute hour day month weekday")
    where = zone(tz)
    try:
        CronSim(expr, datetime(2000, 1, 1, tzinfo=where))
    except (CronSimError, ValueError, KeyError, IndexError) as exc:
        raise InvalidCronExpression(expr, str(exc) or type(exc).__name__) from None
    if next_fire(expr, tz, 946684800.0) is None:  # 2000-01-01
        raise InvalidCronExpression(expr, "it never fires")


def fires(expr: str, tz: str, after: float, fall_back: FallBack = "once") -> Iterator[float]:
    """Every fire instant strictly after `after`, ascending (endless for most expressions)."""
    where = zone(tz)
    sim = CronSim(expr, datetime.fromtimestamp(after, where))
    # cronsim steps fixed-time expressions in local wall time and returns the first
    # of two repeated times; the second is added here when asked for.
    wall = sim.fixup_tz is not None
    extra: list[float] = []
    last = after
    limit = after + _HORIZON
    for local in sim:
        instant = local.timestamp()
        while extra and extra[0] <= instant:
            pending = heapq.heappop(extra)
            if pending > last:
                last = pending
                yield pending
        if instant > limit:
            return
        repeated = _repeated(local)
        if repeated and local.fold == 1 and fall_back == "once":
            continue
        if repeated and wall and fall_back == "twice":
            heapq.heappush(extra, local.replace(fold=1).timestamp())
        if instant > last:
            last = instant
            yield instant


def next_fire(expr: str, tz: str, after: float, fall_back: FallBack = "once") -> float | None:
    """The first fire instant strictly after `after`, or None if there is none for years."""
    return next(fires(expr, tz, after, fall_back), None)


def upcoming(
    expr: str, tz: str, after: float, count: int, fall_back: FallBack = "once"
) -> list[datetime]:
    """The next `count` fire times as aware datetimes in the schedule's zone."""
    where = zone(tz)
    out: list[datetime] = []
    for instant in fires(expr, tz, after, fall_back):
        out.append(datetime.fromtimestamp(instant, UTC).astimezone(where))
        if len(out) >= count:
            break
    return out


def due(
    expr: str, tz: str, after: float, until: float, fall_back: FallBack = "once"
) -> Iterator[float]:
    """The fire instants in (after, until], ascending."""
    for instant in fires(expr, tz, after, fall_back):
        if instant > until:
            return
        yield instant


def _repeated(local: datetime) -> bool:
    """True for a wall-clock time that happens twice (the hour the clock falls back)."""
    other = local.replace(fold=1 - local.fold)
    return other.utcoffset() != local.utcoffset()
