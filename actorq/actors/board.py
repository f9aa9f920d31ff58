"""ResultBoard: the Dispatcher's published view of outcomes, for waiting callers.

Job state belongs to the Dispatcher's thread; callers waiting for a result
must not each send it a message per job. The Dispatcher publishes terminal
outcomes here after they are durable, and callers block on a per-job event
created only when somebody waits. The board also carries the flags
cooperative cancellation reads (`JobContext.cancelled`) and an idle flag
for `ActorSystem.join()`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from actorq.core.effects import Outcome

__all__ = ["Outcome", "ResultBoard"]


class ResultBoard:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outcomes: dict[str, Outcome] = {}
        self._waiters: dict[str, threading.Event] = {}
        self.cancelled: set[str] = set()
        self._watchers: dict[str, Callable[[], None]] = {}
        self.idle = threading.Event()
        self.idle.set()
        self.unavailable: str | None = None  # why the journal cannot be reached, if it cannot

    def publish(self, outcomes: list[tuple[str, Outcome]]) -> None:
        with self._lock:
            for job_id, outcome in outcomes:
                self._outcomes[job_id] = outcome
                self.cancelled.discard(job_id)
                waiter = self._waiters.pop(job_id, None)
                if waiter is not None:
                    waiter.set()

    def flag_cancelled(self, job_id: str) -> None:
        """Mark a running job cancelled (or timed out) and wake whoever runs it."""
        with self._lock:
            self.cancelled.add(job_id)
            watcher = self._watchers.pop(job_id, None)
        if watcher is not None:
            watcher()

    def unflag(self, job_ids: list[str]) -> None:
        """Clear flags left by an attempt that timed out, before the job runs again."""
        with self._lock:
            for job_id in job_ids:
                self.cancelled.discard(job_id)

    def watch(self, job_id: str, callback: Callable[[], None]) -> bool:
        """Call `callback` (in the flagging thread) when `job_id` is flagged cancelled.

        Returns False, registering nothing, if it is flagged already. Workers
        that can stop a job from outside (a coroutine, a child process) use it.
        """
        with self._lock:
            if job_id in self.cancelled:
                return False
            self._watchers[job_id] = callback
            return True

    def unwatch(self, job_id: str) -> None:
        with self._lock:
            self._watchers.pop(job_id, None)

    def forget(self, job_ids: list[str]) -> None:
        with self._lock:
            for job_id in job_ids:
                self._outcomes.pop(job_id, None)

    def outcome(self, job_id: str) -> Outcome | None:
        return self._outcomes.get(job_id)

    def wait(self, job_id: str, timeout: float | None) -> Outcome | None:
        """Block until `job_id` has an outcome; None on timeout."""
        with self._lock:
            outcome = self._outcomes.get(job_id)
            if outcome is not None:
                return outcome
            waiter = self._waiters.setdefault(job_id, threading.Event())
        waiter.wait(timeout)
        return self._outcomes.get(job_id)

    def set_idle(self, idle: bool) -> None:
        if idle:
            self.idle.set()
        else:
            self.idle.clear()
