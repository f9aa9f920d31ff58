"""SystemObserver: no-op hooks for metrics and tracing, called by the actors.

Every hook runs in the thread of the actor that calls it (named below) and
must be quick: the Dispatcher's hooks sit on the hot path, once per group
commit, not once per job. An exception in a hook is logged and otherwise
ignored; it never breaks the actor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actorq.supervision.supervisor import SupervisorObserver

if TYPE_CHECKING:
    from actorq.core.state import DispatcherState


class SystemObserver(SupervisorObserver):
    def committed(self, events: list[Any], state: DispatcherState) -> None:
        """Dispatcher thread: `events` are durable and applied to `state`."""

    def journal_appended(self, persistence_id: str, events: int, seconds: float) -> None:
        """Dispatcher or DeadLetter thread: one group commit took `seconds`."""

    def dead_letters_changed(self, count: int) -> None:
        """DeadLetter thread: it now keeps `count` dead jobs (after each commit)."""

    def limits_changed(
        self, waiting: dict[str, dict[str, int]], deferred: dict[tuple[str, str], int]
    ) -> None:
        """Dispatcher thread, after each commit while rate limits or retry budgets are set:
        jobs held back now ({"rate": {task: n}, "budget": {queue: n}}), and how many
        were held back so far per (kind, name)."""

    def recovered(self, persistence_id: str, events: int, seconds: float) -> None:
        """Persistent actor thread: recovery replayed `events` in `seconds`."""
