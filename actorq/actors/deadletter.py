"""The DeadLetter actor: jobs that exhausted their policy, kept for inspection.

A persistent actor of its own. The Dispatcher hands a dead job over with
`Bury` and keeps re-sending it (after each recovery) until `DeadLettered`
confirms it; burying is idempotent by job id, so the hand-off is
at-least-once on the wire and exactly-once in effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from actorq import messages as m
from actorq.persistence.codec import event_type
from actorq.persistence.journal import Journal
from actorq.persistence.persistent import PersistentActor
from actorq.supervision.address import Address


@event_type("dead.buried")
@dataclass(frozen=True, slots=True)
class Buried:
    job: dict[str, Any]
    policy: dict[str, Any] | None
    delivery: str
    timeout: float | None


@event_type("dead.removed")
@dataclass(frozen=True, slots=True)
class Removed:
    ids: list[str]


class DeadLetter(PersistentActor):
    persistence_id = "deadletter"

    def __init__(self, journal: Journal, *, dispatcher: Address, **persistence: Any) -> None:
        super().__init__(journal, **persistence)
        self.dispatcher = dispatcher
        self.entries: dict[str, Buried] = {}

    def apply(self, event: Any) -> None:
        if isinstance(event, Buried):
            self.entries[event.job["id"]] = event
        elif isinstance(event, Removed):
            for job_id in event.ids:
                self.entries.pop(job_id, None)

    def after_commit_hook(self, events: list[Any]) -> None:
        if self.observer is not None:
            self._notify(self.observer.dead_letters_changed, len(self.entries))

    def on_recovered(self) -> None:
        self.after_commit_hook([])

    def reset(self) -> None:
        self.entries = {}

    def snapshot_state(self) -> Any:
        return [
            {"job": e.job, "policy": e.policy, "delivery": e.delivery, "timeout": e.timeout}
            for e in self.entries.values()
        ]

    def restore_snapshot(self, data: Any) -> None:
        self.entries = {row["job"]["id"]: Buried(**row) for row in data}

    def handle(self, message: Any) -> None:
        if isinstance(message, m.Bury):
            job_id = message.job["id"]
            known = self.entries.get(job_id)
            if known is None or known.job != message.job:  # a revived job that died again
                self.persist(Buried(message.job, message.policy, message.delivery, message.timeout))
            self.after_commit(lambda: self.dispatcher.tell(m.DeadLettered(job_id)))
        elif isinstance(message, m.ListDead):
            self.reply(message.reply, [e.job for e in self.entries.values()])
        elif isinstance(message, m.GetDead):
            self.reply(message.reply, self.entries.get(message.job_id))
        elif isinstance(message, m.TakeDead):
            entry = self.entries.get(message.job_id)
            if entry is not None and entry.job["finished_at"] == message.finished_at:
                self.persist(Removed([message.job_id]))
            self.reply(message.reply, entry)
        elif isinstance(message, m.PurgeDead):
            ids = list(self.entries) if message.job_id is None else [message.job_id]
            ids = [i for i in ids if i in self.entries]
            if ids:
                self.persist(Removed(ids))
            self.reply(message.reply, len(ids))
