"""The Scheduler: the timer set for delays, retry backoffs, timeouts, sweeps and cron fires.

It keeps timers in a heap and asks the Clock to wake it at the earliest
one; when timers fall due it sends them to the Dispatcher in one batch. It
holds no job state: the Dispatcher arms every timer from its own state, and
re-arms them after recovery, so a timer is never a leased message that can
expire and run a job twice. A timer that fires for a job that has moved on
is ignored by the Dispatcher.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
from typing import Any

import pykka

from actorq.clock import Clock, TimerHandle
from actorq.core import messages as m
from actorq.supervision.address import Address


class _Tick:
    __slots__ = ()


_TICK = _Tick()


class Scheduler(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(self, clock: Clock, dispatcher: Address) -> None:
        super().__init__()
        self.clock = clock
        self.dispatcher = dispatcher
        self._heap: list[tuple[float, int, tuple[float, str, str, Any]]] = []
        self._seq = itertools.count()
        self._armed: tuple[float, TimerHandle] | None = None

    def on_stop(self) -> None:
        if self._armed is not None:
            self._armed[1].cancel()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, m.Schedule):
            for timer in message.timers:
                heapq.heappush(self._heap, (timer[0], next(self._seq), timer))
        elif message is _TICK:
            self._armed = None
            self._fire()
        else:
            return super().on_receive(message)
        self._arm()
        return None

    def pending(self) -> int:
        return len(self._heap)

    def _fire(self) -> None:
        now = self.clock.now()
        due = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap)[2])
        if due:
            self.dispatcher.tell(m.TimersFired(due))

    def _arm(self) -> None:
        if not self._heap:
            return
        when = self._heap[0][0]
        if self._armed is not None:
            if self._armed[0] <= when:
                return
            self._armed[1].cancel()
        me = self.actor_ref
        self._armed = (when, self.clock.call_at(when, lambda: _tell(me, _TICK)))


def _tell(ref: pykka.ActorRef[Any], message: Any) -> None:
    # Stopped meanwhile: the timers are re-armed from the Dispatcher's state.
    with contextlib.suppress(pykka.ActorDeadError):
        ref.tell(message)
