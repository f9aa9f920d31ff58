"""PersistentActor: an event-sourced pykka actor with group commit.

A subclass keeps its state in memory and changes it only through
`apply(event)`. Handling a message calls `persist(*events)`, which applies
the events at once (so the next decision sees them) and stages them;
answers and other effects that must wait for the journal are queued with
`after_commit`. Staged events go to the journal in one append (a group
commit), and only then do the effects queued before them run.

Any thread may drive the actor's state, not only the actor's own: `call(fn)`
runs `fn` under the actor's lock in the caller's thread and then waits until
what it staged is durable. That is how a submission avoids two thread
hand-offs per job. Whoever needs durability first leads the next commit and
writes everything staged so far; the others wait for it (leader and
followers, as in PostgreSQL's group commit), so concurrent producers share
one fsync or one Redis round trip.

Events that nobody waits for (a job's start and outcome under at-least-once)
are not committed on their own: they ride with the next commit, or are
written after `linger` seconds at the latest.

A failed append fails the waiting answers and crashes the actor; its
supervisor restarts it, and recovery rebuilds the state from the journal,
dropping whatever was applied but never made durable. Recovery is the same
`apply`, event by event, after the latest snapshot.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pykka

from actorq.clock import Clock, SystemClock
from actorq.errors import JournalCorrupted, JournalUnavailable
from actorq.persistence.journal import Journal, Snapshot

logger = logging.getLogger(__name__)

T = TypeVar("T")

_FREEZE_AFTER = 100_000  # events replayed


class _Flush:
    """To the actor itself: commit what is staged (the linger ran out)."""

    __slots__ = ()


class _Crash:
    """To the actor itself: a commit failed in another thread; restart and recover."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_FLUSH = _Flush()


class PersistentActor(pykka.ThreadingActor):
    """Base for actors whose state must survive a crash. Subclasses define:

    - `persistence_id` (class or instance attribute);
    - `apply(event)`, pure: the only place state changes;
    - `snapshot_state()` / `restore_snapshot(data)`;
    - `handle(message)` for messages;
    - optionally `on_recovered()` (after recovery, before the first message).

    `handle`, `on_recovered` and the functions given to `call` run under the
    actor's lock, in the actor's thread or a caller's; effects queued with
    `after_commit` run in the thread that completed the commit, in order.
    """

    persistence_id: str = ""
    use_daemon_thread = True

    def __init__(
        self,
        journal: Journal,
        *,
        clock: Clock | None = None,
        snapshot_every: int = 50_000,
        snapshot_interval: float | None = 300.0,
        max_batch: int = 2_000,
        linger: float = 0.005,
        observer: Any = None,
    ) -> None:
        super().__init__()
        if not self.persistence_id:
            raise ValueError(f"{type(self).__name__} needs a persistence_id")
        self.journal = journal
        self.clock: Clock = clock or SystemClock()
        self.snapshot_every = snapshot_every
        self.snapshot_interval = snapshot_interval
        self.max_batch = max_batch
        self.linger = linger
        self.observer = observer  # a SystemObserver, or None
        self.lock = threading.RLock()  # the state, the staged events, the queued effects
        self.seq = 0  # the last durable event
        self.recovery_seconds = 0.0
        self.recovered_events = 0
        self.live = False  # recovered and taking calls
        self._staged: list[Any] = []
        self._staged_seq = 0  # the last staged event
        self._effects: collections.deque[tuple[int, Callable[[], None], Any]] = collections.deque()
        self._commit = threading.Condition(threading.Lock())
        self._committing = False
        self._broken: BaseException | None = None
        self._linger_armed = False
        self._since_snapshot = 0
        self._snapshot_at = 0.0
        self._snapshotter: threading.Thread | None = None
        self._thread_ident = 0

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

    def after_commit_hook(self, events: list[Any]) -> None:
        """Runs under the lock after each successful append, with the events it stored."""

    def state_size(self) -> int:
        """Roughly how many records a snapshot holds (for the snapshot policy)."""
        return 0

    # -- the API for subclasses (under the lock) ---------------------------------

    def persist(self, *events: Any) -> None:
        for event in events:
            self.apply(event)
        self.stage(*events)

    def stage(self, *events: Any) -> None:
        """Queue events that are already applied (a decision core applied them)."""
        self._staged.extend(events)
        self._staged_seq += len(events)

    def after_commit(self, effect: Callable[[], None], future: Any = None) -> None:
        """Run `effect` once everything persisted so far is durable."""
        self._effects.append((self._staged_seq, effect, future))

    def reply(self, future: Any, value: Any) -> None:
        """Answer once everything persisted so far is durable."""
        self.after_commit(lambda: future.set(value), future)

    def reply_error(self, future: Any, error: BaseException) -> None:
        def fail() -> None:
            future.set_exception((type(error), error, error.__traceback__))

        self.after_commit(fail, future)

    # -- calls from other threads ---------------------------------------------------

    def call(self, fn: Callable[[], T], *, durable: bool = True) -> T:
        """Run `fn` under the lock in this thread; with `durable`, wait for the journal.

        Raises `JournalUnavailable` if this incarnation cannot take calls (not
        recovered yet, or a commit failed and it is being restarted).
        """
        with self.lock:
            if self._broken is not None or not self.live:
                raise JournalUnavailable(
                    f"{self.persistence_id} is recovering"
                    + ("" if self._broken is None else f" after: {self._broken}")
                )
            result = fn()
            ticket = self._staged_seq
        if ticket > self.seq:
            if durable:
                self.flush(ticket)
            else:
                self._arm_linger()
        return result

    def wait_durable(self, ticket: int, timeout: float | None = None) -> bool:
        """Block until event `ticket` is durable (leading a commit if none is under way)."""
        if ticket <= self.seq:
            return True
        self.flush(ticket, timeout=timeout)
        return ticket <= self.seq

    @property
    def staged_seq(self) -> int:
        return self._staged_seq

    # -- pykka hooks -------------------------------------------------------------

    def on_start(self) -> None:
        # An unreachable journal (Redis down) is waited out here rather than
        # crashing in a loop: the supervisor would count every crash toward its
        # intensity and give up on a long outage. Meanwhile the actor answers
        # nothing; `on_journal_unavailable` lets callers fail fast instead.
        self._thread_ident = threading.get_ident()
        delay = 0.05
        while True:
            try:
                with self.lock:
                    self._recover()
                break
            except JournalCorrupted as exc:
                # No retry repairs damage: one clear line, and the supervisor gives up.
                logger.error("%s cannot recover: %s", self.persistence_id, exc)
                raise
            except JournalUnavailable as exc:
                logger.warning("%s: journal unavailable, retrying: %s", self.persistence_id, exc)
                self.on_journal_unavailable(exc)
                self._refuse_requests(exc)
                if self.actor_stopped.wait(delay):
                    return
                delay = min(delay * 2, 2.0)
                self.reset()
                self.seq = self._staged_seq = 0
        self.on_journal_unavailable(None)
        if self.observer is not None:
            self._notify(
                self.observer.recovered,
                self.persistence_id,
                self.recovered_events,
                self.recovery_seconds,
            )
        self._snapshot_at = self.clock.now()
        with self.lock:
            self.on_recovered()
            self.live = True
        self.flush()

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
            try:
                self.restore_snapshot(snapshot.state)
            except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
                raise JournalCorrupted(
                    f"the snapshot of {self.persistence_id}",
                    snapshot.seq,
                    f"its body cannot be read ({type(exc).__name__}: {exc})",
                ) from exc
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
        self._staged_seq = self.seq
        self.recovered_events = count
        self.recovery_seconds = time.perf_counter() - started
        self._since_snapshot = count
        if count:
            logger.info(
                "%s recovered %d events in %.3fs", self.persistence_id, count, self.recovery_seconds
            )

    def on_receive(self, message: Any) -> Any:
        if message is _FLUSH:
            self._linger_armed = False
            self.flush()
            return None
        if isinstance(message, _Crash):
            raise message.error
        with self.lock:
            self.handle(message)
            waiting = bool(self._effects)
            staged = len(self._staged)
        if staged >= self.max_batch or (waiting and self.actor_inbox.empty()):
            self.flush()
        elif staged:
            self._arm_linger()
        return None

    def on_stop(self) -> None:
        with self.lock:
            self.live = False
        if self._broken is None:
            self.flush()
        if self._snapshotter is not None:
            self._snapshotter.join()

    def on_failure(self, *exc_info: Any) -> None:
        with self.lock:
            self.live = False
            self._fail_waiting(exc_info[1])

    # -- group commit -----------------------------------------------------------

    def flush(self, upto: int | None = None, timeout: float | None = None) -> None:
        """Make every event staged so far (or up to `upto`) durable, and run its effects."""
        target = self._staged_seq if upto is None else upto
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._commit:
                while True:
                    if self._broken is not None:
                        raise self._broken
                    if not self._committing:
                        self._committing = True
                        break
                    if self.seq >= target and not self._effects_due():
                        return
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return
                    self._commit.wait(remaining)
            try:
                self._commit_once()
            finally:
                with self._commit:
                    self._committing = False
                    self._commit.notify_all()
            if self.seq >= target and not self._effects_due():
                return

    def _effects_due(self) -> bool:
        effects = self._effects
        return bool(effects) and effects[0][0] <= self.seq

    def _commit_once(self) -> None:
        snapshot: Snapshot | None = None
        with self.lock:
            events, self._staged = self._staged, []
            upto = self._staged_seq
            if events and self._snapshot_due(len(events)):
                # The copy includes the events being written: it is valid once they are.
                snapshot = self._copy_state(upto)
        if events:
            started = time.perf_counter()
            try:
                self.journal.append(self.persistence_id, events, after_seq=self.seq)
            except BaseException as exc:
                self._break(exc)
                raise
            if self.observer is not None:
                seconds = time.perf_counter() - started
                self._notify(
                    self.observer.journal_appended, self.persistence_id, len(events), seconds
                )
            with self._commit:
                self.seq = upto
            self._since_snapshot += len(events)
            with self.lock:
                self.after_commit_hook(events)
        ready = []
        with self.lock:
            effects = self._effects
            while effects and effects[0][0] <= upto:
                ready.append(effects.popleft()[1])
        for effect in ready:
            effect()
        if snapshot is not None:
            self._write_snapshot(snapshot)

    def _break(self, error: BaseException) -> None:
        """A commit failed: what was staged is lost; answer its waiters and restart."""
        with self._commit:
            self._broken = error
            self._commit.notify_all()
        with self.lock:
            self.live = False
            self._fail_waiting(error)
        if isinstance(error, JournalUnavailable):
            self.on_journal_unavailable(error)
        if threading.get_ident() != self._thread_ident:
            with contextlib.suppress(pykka.ActorDeadError):
                self.actor_ref.tell(_Crash(error))

    def _arm_linger(self) -> None:
        with self.lock:
            if self._linger_armed:
                return
            self._linger_armed = True
        ref = self.actor_ref

        def fire() -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(_FLUSH)

        self.clock.call_at(self.clock.now() + self.linger, fire)

    # -- snapshots ---------------------------------------------------------------

    def snapshot(self, *, wait: bool = False) -> None:
        """Snapshot the committed state: copied here, written by a background thread."""
        self.flush()
        with self.lock:
            if self._staged:
                return  # a commit is on its way; the next snapshot will cover it
            snapshot = self._copy_state(self.seq)
        self._write_snapshot(snapshot, wait=wait)

    def _snapshot_due(self, new_events: int) -> bool:
        # A snapshot costs time in proportion to the state; waiting for at least
        # twice the state's size in new events keeps that cost O(1) per event,
        # and recovery reads at most one snapshot plus a tail of that length.
        if self._snapshotter is not None and self._snapshotter.is_alive():
            return False
        threshold = max(self.snapshot_every, 2 * self.state_size())
        return self._since_snapshot + new_events >= threshold or (
            self.snapshot_interval is not None
            and self.clock.now() - self._snapshot_at >= self.snapshot_interval
        )

    def _copy_state(self, seq: int) -> Snapshot:
        enabled = gc.isenabled()
        gc.disable()  # as in recovery: a snapshot copies the whole state
        try:
            return Snapshot(seq, self.snapshot_state())
        finally:
            if enabled:
                gc.enable()

    def _write_snapshot(self, snapshot: Snapshot, *, wait: bool = False) -> None:
        """Encoding and writing a large state takes seconds; it happens off the actor."""
        if self._snapshotter is not None and self._snapshotter.is_alive():
            self._snapshotter.join()
        self._since_snapshot = 0
        self._snapshot_at = self.clock.now()

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

    # -- failures ------------------------------------------------------------------

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
        effects, self._effects = self._effects, collections.deque()
        self._staged = []
        for _, _, future in effects:
            if future is not None:
                exc = error or RuntimeError("actor failed")
                with contextlib.suppress(Exception):
                    future.set_exception((type(exc), exc, exc.__traceback__))
