"""The DeadLetter actor: jobs that exhausted their policy, kept for inspection.

A persistent actor of its own. The Dispatcher hands a dead job over with
`Bury` and keeps re-sending it (after each recovery) until `DeadLettered`
confirms it; burying is idempotent by job id, so the hand-off is
at-least-once on the wire and exactly-once in effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from actorq.core import messages as m
from actorq.core.job import JobInfo, pack
from actorq.core.wire import event_type, upcaster
from actorq.paging import page
from actorq.persistence.journal import Journal
from actorq.persistence.persistent import PersistentActor
from actorq.supervision.address import Address


@event_type("dead.buried", version=2)
@dataclass(frozen=True, slots=True)
class Buried:
    job: JobInfo

    def to_wire(self) -> dict[str, Any]:
        return {"job": self.job.to_wire()}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Buried:
        return cls(JobInfo.from_wire(data["job"]))


@upcaster("dead.buried", 1)
def _buried_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 kept the job as a flat dict beside its policy, delivery and timeout."""
    row = data["job"]
    spec = {
        "id": row["id"],
        "task": row["task"],
        "payload": pack([row["args"], row["kwargs"]]),
        "queue": row["queue"],
        "priority": row["priority"],
        "timeout": data["timeout"],
        "policy": data["policy"],
        "delivery": data["delivery"],
        "idempotency_key": row["idempotency_key"],
    }
    kept = ("status", "attempts", "result", "error", "created_at", "run_at")
    info = {name: row[name] for name in kept}
    info.update(spec=spec, started_at=row["started_at"], finished_at=row["finished_at"])
    return {"job": info}


@event_type("dead.removed")
@dataclass(frozen=True, slots=True)
class Removed:
    ids: list[str]


@event_type("dead.reviving")
@dataclass(frozen=True, slots=True)
class Reviving:
    """The decision to revive: kept until the Dispatcher confirms, re-sent after a crash."""

    job_id: str


class DeadLetter(PersistentActor):
    persistence_id = "deadletter"

    def __init__(self, journal: Journal, *, dispatcher: Address, **persistence: Any) -> None:
        super().__init__(journal, **persistence)
        self.dispatcher = dispatcher
        self.entries: dict[str, JobInfo] = {}
        self.reviving: set[str] = set()  # decided, not yet confirmed by the Dispatcher
        self._asking: dict[str, list[Any]] = {}  # job id -> callers of retry_dead waiting

    def apply(self, event: Any) -> None:
        if isinstance(event, Buried):
            self.entries[event.job.id] = event.job
            self.reviving.discard(event.job.id)
        elif isinstance(event, Removed):
            for job_id in event.ids:
                self.entries.pop(job_id, None)
                self.reviving.discard(job_id)
        elif isinstance(event, Reviving) and event.job_id in self.entries:
            self.reviving.add(event.job_id)

    def after_commit_hook(self, events: list[Any]) -> None:
        if self.observer is not None:
            self._notify(self.observer.dead_letters_changed, len(self.entries))

    def on_recovered(self) -> None:
        self.after_commit_hook([])
        for job_id in self.reviving:  # decided before a crash: see it through
            self._send_revive(self.entries[job_id], None)

    def reset(self) -> None:
        self.entries = {}
        self.reviving = set()

    def snapshot_state(self) -> Any:
        return [
            {"job": info.to_wire(), **({"reviving": True} if info.id in self.reviving else {})}
            for info in self.entries.values()
        ]

    def restore_snapshot(self, data: Any) -> None:
        rows = [_buried_v1(row) if "policy" in row else row for row in data]
        self.entries = {}
        self.reviving = set()
        for row in rows:
            info = JobInfo.from_wire(row["job"])
            self.entries[info.id] = info
            if row.get("reviving"):
                self.reviving.add(info.id)

    def _send_revive(self, entry: JobInfo, reply: Any) -> None:
        self.dispatcher.tell(m.Revive(entry.spec, entry.finished_at, reply))

    def handle(self, message: Any) -> None:
        if isinstance(message, m.Bury):
            job_id = message.job.id
            known = self.entries.get(job_id)
            if known is None or known != message.job:  # a revived job that died again
                self.persist(Buried(message.job))
            self.after_commit(lambda: self.dispatcher.tell(m.DeadLettered(job_id)))
        elif isinstance(message, m.ListDead):
            if message.limit is None:
                self.reply(message.reply, list(self.entries.values()))
            else:
                chosen = page(self.entries, limit=message.limit, after=message.after)
                self.reply(message.reply, chosen)
        elif isinstance(message, m.GetDead):
            self.reply(message.reply, self.entries.get(message.job_id))
        elif isinstance(message, m.ReviveDead):
            # One durable decision here, then a confirmed hand-over: the entry
            # stays until the Dispatcher has the job, so a crash leaves the job
            # in one place or the other, never in neither, and never runs it twice.
            found = self.entries.get(message.job_id)
            if found is None:
                self.reply(message.reply, None)
                return
            if found.id not in self.reviving:
                self.persist(Reviving(found.id))
            self._asking.setdefault(found.id, []).append(message.reply)
            self.after_commit(lambda: self._send_revive(found, None))
        elif isinstance(message, m.Revived):
            entry = self.entries.get(message.job_id)
            if entry is not None and entry.finished_at == message.died_at:
                self.persist(Removed([message.job_id]))
            # Answered once the letter is gone: a caller listing next sees it gone.
            for reply in self._asking.pop(message.job_id, []):
                self.reply(reply, message.job_id)
        elif isinstance(message, m.PurgeDead):
            ids = list(self.entries) if message.job_id is None else [message.job_id]
            ids = [i for i in ids if i in self.entries]
            if ids:
                self.persist(Removed(ids))
            self.reply(message.reply, len(ids))
