"""PersistentActor: an event-sourced pykka actor with group commit.

A subclass keeps its state in memory and changes it only through
`apply(event)`. Handling a message calls `persist(*events)`, which applies
the events at once (so the next message sees them) and queues them; replies
and other effects are queued with `after_commit`. When the inbox runs empty
(or a batch grows to `max_batch` events) the queued events go to the journal
in one append, and only then do the effects run. A failed append fails the
waiting replies and crashes the actor; its supervisor restarts it, and
recovery rebuilds the state from the journal, dropping whatever was applied
but never made durable. Recovery is the same `apply`, event by event, after
the latest snapshot.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pykka

from actorq.errors import JournalCorrupted, JournalUnavailable
from actorq.persistence.journal import Journal, Snapshot

logger = logging.getLogger(__name__)

_FREEZE_AFTER = 100_000  # events replayed


class PersistentActor(pykka.ThreadingActor):
    """Base for actors whose state must survive a crash. Subclasses define:

    - `persistence_id` (class or instance attribute);
    - `apply(event)`, pure: the only place state changes;
    - `snapshot_state()` / `restore_snapshot(data)`;
    - `handle(message)` for messages;
    - optionally `on_recovered()` (after recovery, before the first message)
      and `before_commit()` (may persist more events, e.g. assignments).

    All hooks run in the actor's own thread.
    """

    persistence_id: str = ""
    use_daemon_thread = True

    def __init__(
        self,
        journal: Journal,
        *,
        snapshot_every: int = 50_000,
        snapshot_interval: float | None = 300.0,
        max_batch: int = 2_000,
        observer: Any = None,
    ) -> None:
        super().__init__()
        if not self.persistence_id:
            raise ValueError(f"{type(self).__name__} needs a persistence_id")
        self.journal = journal
        self.snapshot_every = snapshot_every
        self.snapshot_interval = snapshot_interval
        self.max_batch = max_batch
        self.observer = observer  # a SystemObserver, or None
        self.seq = 0
        self.recovery_seconds = 0.0
        self.recovered_events = 0
        self._pending: list[Any] = []
        self._effects: list[tuple[Callable[[], None], pykka.Future[Any] | None]] = []
        self._eager: list[Callable[[], None]] = []
        self._since_snapshot = 0
        self._snapshot_at = time.monotonic()
        self._snapshotter: threading.Thread | None = None

    # -- to implement --------------------------------------------------------

    def apply(self, event: Any) -> None:
        raise NotImplementedError

    def snapshot_state(self) -> Any:
        raise NotImplementedError

    def restore_snapshot(self, data: Any) -> None:
        raise NotImplementedError

    def handle(self, message: Any) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget all state (before a recovery attempt is retried)."""
        raise NotImplementedError

    def on_recovered(self) -> None:
        """Runs once the state is rebuilt, before the first message."""

    def on_journal_unavailable(self, error: JournalUnavailable | None) -> None:
        """The journal could not be reached (None: it can be again)."""

    def before_commit(self) -> None:
        """Runs before each group commit; may persist further events."""

    def after_commit_hook(self, events: list[Any]) -> None:
        """Runs after each successful append, with the events it stored."""

    def state_size(self) -> int:
        """Roughly how many records a snapshot holds (for the snapshot policy)."""
        return 0

    # -- the API for subclasses ------------------------------------------------

    def persist(self, *events: Any) -> None:
        for event in events:
            self.apply(event)
        self._pending.extend(events)

    def before_append(self, effect: Callable[[], None]) -> None:
        """Run `effect` at the next commit, while its events are still being written.

        For effects that may safely happen even if those events are lost in a
        crash: the caller decides that a lost event only repeats work.
        """
        self._eager.append(effect)

    def after_commit(self, effect: Callable[[], None]) -> None:
        self._effects.append((effect, None))

    def reply(self, future: pykka.Future[Any], value: Any) -> None:
        """Answer once everything persisted so far is durable."""
        self._effects.append((lambda: future.set(value), future))

    def reply_error(self, future: pykka.Future[Any], error: BaseException) -> None:
        def fail() -> None:
            future.set_exception((type(error), error, error.__traceback__))

        self._effects.append((fail, future))

    # -- pykka hooks -------------------------------------------------------------

    def on_start(self) -> None:
        # An unreachable journal (Redis down) is waited out here rather than
        # crashing in a loop: the supervisor would count every crash toward its
        # intensity and give up on a long outage. Meanwhile the actor answers
        # nothing; `on_journal_unavailable` lets callers fail fast instead.
        delay = 0.05
        while True:
            try:
                self._recover()
                break
            except JournalUnavailable as exc:
                logger.warning("%s: journal unavailable, retrying: %s", self.persistence_id, exc)
                self.on_journal_unavailable(exc)
                self._refuse_requests(exc)
                if self.actor_stopped.wait(delay):
                    return
                delay = min(delay * 2, 2.0)
                self.reset()
                self.seq = 0
        self.on_journal_unavailable(None)
        if self.observer is not None:
            self._notify(
                self.observer.recovered,
                self.persistence_id,
                self.recovered_events,
                self.recovery_seconds,
            )
        self.on_recovered()
        self.commit()

    def _recover(self) -> None:
        # Replay creates millions of long-lived objects; the cyclic collector
        # would traverse them again and again for nothing (it doubled recovery
        # time in bench/recovery.py), so it is paused. After a large replay the
        # survivors are moved to the permanent generation (gc.freeze, as
        # pre-forking servers do): otherwise the first collections after
        # re-enabling would walk them all once more, seconds on a big journal.
        # They are still freed by reference counting when jobs expire.
        enabled = gc.isenabled()
        gc.disable()
        try:
            self._replay()
            if self.recovered_events >= _FREEZE_AFTER:
                gc.freeze()
        finally:
            if enabled:
                gc.enable()

    def _replay(self) -> None:
        started = time.perf_counter()
        snapshot = self.journal.load_snapshot(self.persistence_id)
        if snapshot is not None:
            self.restore_snapshot(snapshot.state)
            self.seq = snapshot.seq
        count = 0
        for seq, event in self.journal.replay(self.persistence_id, after_seq=self.seq):
            if seq != self.seq + 1:
                raise JournalCorrupted(
                    self.persistence_id, seq, f"expected event {self.seq + 1}, found {seq}"
                )
            self.apply(event)
            self.seq = seq
            count += 1
        self.recovered_events = count
        self.recovery_seconds = time.perf_counter() - started
        self._since_snapshot = count
        if count:
            logger.info(
                "%s recovered %d events in %.3fs", self.persistence_id, count, self.recovery_seconds
            )

    def on_receive(self, message: Any) -> Any:
        self.handle(message)
        if len(self._pending) >= self.max_batch or self.actor_inbox.empty():
            self.commit()
        return None

    def on_stop(self) -> None:
        self.commit()
        if self._snapshotter is not None:
            self._snapshotter.join()

    def on_failure(self, *exc_info: Any) -> None:
        self._fail_waiting(exc_info[1])

    # -- group commit -----------------------------------------------------------

    def commit(self) -> None:
        self.before_commit()
        events, self._pending = self._pending, []
        effects, self._effects = self._effects, []
        eager, self._eager = self._eager, []
        for effect in eager:
            effect()
        if events:
            started = time.perf_counter()
            try:
                self.journal.append(self.persistence_id, events, after_seq=self.seq)
            except BaseException as exc:
                self._effects = effects
                self._fail_waiting(exc)
                if isinstance(exc, JournalUnavailable):
                    self.on_journal_unavailable(exc)
                raise
            if self.observer is not None:
                seconds = time.perf_counter() - started
                self._notify(
                    self.observer.journal_appended, self.persistence_id, len(events), seconds
                )
            self.seq += len(events)
            self._since_snapshot += len(events)
            self.after_commit_hook(events)
        for effect, _ in effects:
            effect()
        if events:
            self._maybe_snapshot()

    def snapshot(self, *, wait: bool = False) -> None:
        """Snapshot the committed state: copied here, written by a background thread.

        Encoding and writing a large state takes seconds; the actor goes on
        serving meanwhile. One snapshot is written at a time.
        """
        if self._snapshotter is not None and self._snapshotter.is_alive():
            return
        enabled = gc.isenabled()
        gc.disable()  # as in recovery: a snapshot copies the whole state
        try:
            snapshot = Snapshot(self.seq, self.snapshot_state())
        finally:
            if enabled:
                gc.enable()
        self._since_snapshot = 0
        self._snapshot_at = time.monotonic()

        def write() -> None:
            try:
                self.journal.save_snapshot(self.persistence_id, snapshot)
            except Exception:
                logger.exception("%s: snapshot at %d failed", self.persistence_id, snapshot.seq)

        self._snapshotter = threading.Thread(
            target=write, name=f"actorq-snapshot:{self.persistence_id}", daemon=True
        )
        self._snapshotter.start()
        if wait:
            self._snapshotter.join()

    def _maybe_snapshot(self) -> None:
        # A snapshot costs time in proportion to the state; waiting for at least
        # twice the state's size in new events keeps that cost O(1) per event,
        # and recovery reads at most one snapshot plus a tail of that length.
        threshold = max(self.snapshot_every, 2 * self.state_size())
        due = self._since_snapshot >= threshold or (
            self.snapshot_interval is not None
            and time.monotonic() - self._snapshot_at >= self.snapshot_interval
        )
        if due:
            self.snapshot()

    def _refuse_requests(self, error: JournalUnavailable) -> None:
        """Answer waiting requests (messages with a reply) with `error` instead of hanging.

        Facts from other actors (a worker's results) stay in the inbox, in order,
        for when the journal is back.
        """
        kept = []
        while not self.actor_inbox.empty():
            envelope = self.actor_inbox.get()
            reply = getattr(envelope.message, "reply", None)
            if reply is None:
                kept.append(envelope)
                continue
            with contextlib.suppress(Exception):  # the asker may have been answered already
                reply.set_exception((type(error), error, None))
        for envelope in kept:
            self.actor_inbox.put(envelope)

    def _notify(self, hook: Callable[..., None], *args: Any) -> None:
        try:
            hook(*args)
        except Exception:
            logger.exception("%s: observer hook %r raised", self.persistence_id, hook)

    def _fail_waiting(self, error: BaseException | None) -> None:
        effects, self._effects = self._effects, []
        self._pending = []
        for _, future in effects:
            if future is not None:
                exc = error or RuntimeError("actor failed")
                with contextlib.suppress(Exception):
                    future.set_exception((type(exc), exc, exc.__traceback__))
