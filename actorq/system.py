"""ActorSystem: the embedded facade over the supervision tree of job actors.

    Supervisor (root, one_for_one)
      ├─ deadletter   DeadLetter (persistent)
      ├─ scheduler    Scheduler
      ├─ dispatcher   Dispatcher (persistent)
      └─ worker-1..N  Worker
    plus one small supervisor per actor a user spawns.

Submissions are validated in the caller's thread (task name, options,
msgpack encoding, size), so bad input is refused before any actor hears of
it; then one message to the Dispatcher, answered once the job is durable.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import logging
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, ParamSpec, Protocol, TypeVar, overload

import msgpack
import pykka

from actorq.actors.board import Outcome, ResultBoard
from actorq.actors.deadletter import DeadLetter
from actorq.actors.dispatcher import Dispatcher, DispatcherPort, RemoteWorkers
from actorq.actors.execution import Pool
from actorq.actors.pool_threads import ThreadPool
from actorq.actors.scheduler import Scheduler
from actorq.actors.worker import worker_factory
from actorq.clock import Clock, SystemClock
from actorq.core import messages as m
from actorq.core.cron import FallBack
from actorq.core.dispatch import DispatchConfig, DispatchCore
from actorq.core.job import JobSpec, unpack
from actorq.core.limits import RateLimit, RetryBudget
from actorq.core.schedules import (
    DEFAULT_CATCH_UP,
    DEFAULT_OVERLAP,
    DEFAULT_TZ,
    DEFAULT_WINDOW,
    CatchUp,
    Overlap,
    ScheduleInfo,
    ScheduleSpec,
    check_name,
)
from actorq.core.state import JobRecord
from actorq.errors import (
    Escalated,
    InvalidLimit,
    InvalidSubmission,
    JobCancelled,
    JobFailed,
    JobNotFound,
    JournalCorrupted,
    JournalUnavailable,
    NotSerializable,
    PayloadTooLarge,
    SystemNotRunning,
    UnknownQueue,
    UnknownTask,
)
from actorq.job import JobHandle, JobInfo, JobStatus
from actorq.middleware import Middleware, MiddlewareStack
from actorq.observe import SystemObserver
from actorq.paging import DEFAULT_LIMIT, check_limit, page
from actorq.persistence.journal import Journal, MemoryJournal, open_journal
from actorq.submission import (
    Signatures,
    check_arguments,
    check_delay,
    check_idempotency_key,
    check_timeout,
)
from actorq.supervision.address import Address
from actorq.supervision.backoff import Backoff
from actorq.supervision.policy import RestartPolicy
from actorq.supervision.supervisor import (
    ChildSpec,
    RestartChild,
    StartChild,
    Supervisor,
    WhichChildren,
)
from actorq.tasks import DELIVERIES, AsyncTask, Delivery, Task, TaskOptions

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

PRIORITY_MIN, PRIORITY_MAX = -100, 100

PoolKind = Literal["threads", "processes"]
POOLS = ("threads", "processes")
# How long start() waits for the actors to recover, to raise what they found
# (a corrupt journal); a longer recovery goes on after start() returns.
START_WAIT = 10.0
# How often stop() looks whether jobs are left to run on the memory journal.
_RUN_DOWN_POLL = 0.02
# How often a hung worker waiting for its replacement looks again.
_HUNG_RECHECK = 0.5
# How often a caller blocked on a result looks whether the system stopped.
_STOP_POLL = 0.25

Durability = Literal["durable", "accepted"]
DURABILITIES = ("durable", "accepted")

# The tree's own policy: a crashing actor is restarted quickly a few times; a
# crash loop (10 within a minute) means something is broken for good.
# A corrupt journal is damage no restart repairs: the tree gives up at once
# instead of replaying it in a loop.
TREE_POLICY = RestartPolicy(
    max_restarts=10,
    within=60.0,
    backoff=Backoff.exponential(0.01, cap=2.0, jitter="full"),
    give_up_on=(JournalCorrupted,),
)
PERSISTENCE_IDS = (DeadLetter.persistence_id, Dispatcher.persistence_id)

# A job's default: 3 retries (4 attempts), each after a delay drawn uniformly
# from 0 up to 0.2 s x 2^n, capped at 30 s ("full jitter": of the schedules in
# AWS's study of backoff it spreads retries of jobs that failed together the
# most, so they do not hit a recovering dependency in waves).
JOB_POLICY = RestartPolicy(
    max_restarts=3, backoff=Backoff.exponential(0.2, cap=30.0, jitter="full")
)


class _Register(Protocol):
    """What `@system.task(...)` with options returns: the decorator proper."""

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> AsyncTask[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...


class ActorSystem:
    """Run jobs on supervised actors in this process. See README for a tour."""

    def __init__(
        self,
        workers: int = 4,
        journal: str | Journal | None = None,
        *,
        queues: Sequence[str] = ("default",),
        clock: Clock | None = None,
        prefetch: int = 32,
        retention: float = 3600.0,
        max_pending: int = 1_000_000,
        max_payload_bytes: int = 1 << 20,
        policy: RestartPolicy | None = None,
        tree_policy: RestartPolicy = TREE_POLICY,
        call_timeout: float = 30.0,
        observer: SystemObserver | None = None,
        seed: int | None = None,
        middleware: Sequence[Middleware] = (),
        retry_budget: RetryBudget | dict[str, RetryBudget] | None = None,
        pool: PoolKind = "threads",
        max_jobs_per_child: int | None = None,
        max_hung_threads: int = 64,
    ) -> None:
        if workers < 1:
            raise ValueError("an actor system needs at least one worker")
        _check_pool(pool, max_jobs_per_child)
        self.pool: PoolKind = pool
        self.max_jobs_per_child = max_jobs_per_child
        self._pool: Pool | None = None
        if not queues or len(set(queues)) != len(queues):
            raise ValueError("queues must be a non-empty list of distinct names")
        self.worker_count = workers
        self.journal_spec = (
            journal if journal is not None else os.environ.get("ACTORQ_JOURNAL", "memory")
        )
        self.queues = tuple(queues)
        self.clock: Clock = clock or SystemClock()
        self._own_clock = clock is None
        self.prefetch = prefetch
        self.retention = retention
        self.max_pending = max_pending
        self.max_payload_bytes = max_payload_bytes
        self.default_policy = policy or JOB_POLICY
        self.tree_policy = tree_policy
        self.call_timeout = call_timeout
        self.observer = observer
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.middleware = MiddlewareStack(middleware)
        # Shared with the Dispatcher's core, so tasks registered later are limited too.
        self.rate_limits: dict[str, RateLimit] = {}
        self._retry_budget = retry_budget
        self.retry_budgets = _retry_budgets(retry_budget, self.queues)
        self.node = socket.gethostname()
        self.declared_schedules: dict[str, ScheduleSpec] = {}  # by @cron, set at each start
        self._signatures = Signatures()
        self.board = ResultBoard()
        self.rng = random.Random(seed)
        self._port = DispatcherPort(self.board)
        self.journal: Journal | None = None
        self.failure: Escalated | None = None
        self._root: pykka.ActorRef[Any] | None = None
        self._accepting = False
        self._down = threading.Event()  # set once stop() has finished
        self.max_hung_threads = max_hung_threads
        self._hung: list[threading.Thread] = []  # threads of replaced workers, maybe still busy
        self._deferred: dict[str, str] = {}  # hung workers waiting to be replaced -> why
        self._hung_lock = threading.Lock()
        self._recheck_armed = False
        self._ids = _JobIds()
        self._lock = threading.Lock()
        self.deadletter = Address("deadletter")
        self.scheduler = Address("scheduler")
        self.dispatcher = Address("dispatcher")
        self.workers = [Address(f"worker-{i + 1}") for i in range(workers)]
        self.remote: RemoteWorkers | None = None

    def configure(
        self,
        *,
        workers: int | None = None,
        queues: Sequence[str] | None = None,
        journal: str | Journal | None = None,
        observer: SystemObserver | None = None,
        board: ResultBoard | None = None,
        remote: RemoteWorkers | None = None,
        pool: PoolKind | None = None,
        max_jobs_per_child: int | None = None,
    ) -> None:
        """Change how a system that is not running yet will start (the CLI's overrides)."""
        if self._root is not None:
            raise RuntimeError("configure() a system before start()")
        if pool is not None or max_jobs_per_child is not None:
            pool = pool or self.pool
            limit = max_jobs_per_child or self.max_jobs_per_child
            _check_pool(pool, limit)
            self.pool, self.max_jobs_per_child = pool, limit
        if workers is not None:
            if workers < 1:
                raise ValueError("an actor system needs at least one worker")
            self.worker_count = workers
            self.workers = [Address(f"worker-{i + 1}") for i in range(workers)]
        if queues is not None:
            if not queues or len(set(queues)) != len(queues):
                raise ValueError("queues must be a non-empty list of distinct names")
            self.queues = tuple(queues)
            self.retry_budgets = _retry_budgets(self._retry_budget, self.queues)
        if journal is not None:
            self.journal_spec = journal
        if observer is not None:
            self.observer = observer
        if remote is not None:  # a cluster's leader also grants to workers on other nodes
            self.remote = remote
        if board is not None:  # a cluster's leader also publishes outcomes to Redis
            self.board = board
            self._port = DispatcherPort(board)

    # -- tasks ----------------------------------------------------------------

    @overload
    def task(self, name: Callable[P, Coroutine[Any, Any, R]]) -> AsyncTask[P, R]: ...
    @overload
    def task(self, name: Callable[P, R]) -> Task[P, R]: ...
    @overload
    def task(
        self,
        name: str | None = None,
        *,
        policy: RestartPolicy | None = None,
        timeout: float | None = None,
        queue: str | None = None,
        priority: int = 0,
        delivery: Delivery = "at_least_once",
        rate_limit: RateLimit | None = None,
    ) -> _Register: ...

    def task(
        self,
        name: Any = None,
        *,
        policy: RestartPolicy | None = None,
        timeout: float | None = None,
        queue: str | None = None,
        priority: int = 0,
        delivery: Delivery = "at_least_once",
        rate_limit: RateLimit | None = None,
    ) -> Any:
        """Register a function as a task: `@system.task` or `@system.task("name", ...)`.

        `rate_limit=RateLimit(n, per=seconds)`: at most n starts of this task in
        any window of that many seconds, across all workers.
        """
        if callable(name):
            return self.task()(name)
        if rate_limit is not None and not isinstance(rate_limit, RateLimit):
            raise InvalidLimit(f"rate_limit must be a RateLimit, not {rate_limit!r}")
        options = TaskOptions(policy, timeout, queue, priority, delivery)
        self._check_options(priority, None, queue, timeout)
        if delivery not in DELIVERIES:
            raise ValueError(f"delivery must be one of {DELIVERIES}, not {delivery!r}")
        if policy is not None and not isinstance(policy, RestartPolicy):
            raise TypeError("policy must be a RestartPolicy")

        def register(fn: Callable[..., Any]) -> Task[Any, Any]:
            task_name = name or f"{fn.__module__}.{fn.__qualname__}"
            if task_name in self.tasks:
                raise ValueError(f"a task named {task_name!r} is registered already")
            if self.pool == "processes":
                from actorq.actors.pool_processes import where

                where(task_name, fn)  # TaskNotImportable now; start() checks the rest
            kind = AsyncTask if inspect.iscoroutinefunction(fn) else Task
            task = kind(self, task_name, fn, options)
            self.tasks[task_name] = task
            if rate_limit is not None:
                self.rate_limits[task_name] = rate_limit
            return task

        return register

    def _lookup(self, name: str) -> Callable[..., Any] | None:
        task = self.tasks.get(name)
        return None if task is None else task.fn

    def _policy_for(self, task_name: str, override: dict[str, Any] | None) -> RestartPolicy:
        if override is not None:
            return RestartPolicy.from_dict(override)
        task = self.tasks.get(task_name)
        if task is not None and task.options.policy is not None:
            return task.options.policy
        return self.default_policy

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> ActorSystem:
        """Recover from the journal and start the actors.

        Raises `JournalCorrupted` for damage found in the journal (a crash's
        torn tail is repaired, not reported), and `SystemNotRunning` if the
        actors could not start.
        """
        with self._lock:
            if self._root is not None:
                raise RuntimeError("this actor system is running already")
            pool = self._make_pool()
            journal = self.journal = open_journal(self.journal_spec)
            try:
                # Where each log ends: for the file journal a scan of every
                # record's checksum, which recovery then reuses. Damage found
                # here is one error for the caller, not a crash of the tree.
                for persistence_id in PERSISTENCE_IDS:
                    journal.last_seq(persistence_id)
            except BaseException:
                self.journal = None
                journal.close()
                pool.close()
                raise
            self.failure = None
            self._down.clear()
            with self._hung_lock:  # the last run's clock, and its timers, are gone
                self._deferred.clear()
                self._recheck_armed = False
            self._port.reopen()
            self._pool = pool
            root = self._root = Supervisor.start(
                self._children(journal, pool),
                self.tree_policy,
                name="root",
                clock=self.clock,
                on_give_up=self._on_give_up,
                observer=self.observer,
            )
            # The root starts its children one by one, synchronously, before it
            # reads its mailbox: once a first question is answered, a child
            # that failed to recover has told the root so, and a second
            # question is answered after the root has decided about it.
            # A long replay is not waited for past START_WAIT: calls wait for it.
            with contextlib.suppress(pykka.ActorDeadError, pykka.Timeout):
                for _ in range(2):
                    root.ask(WhichChildren(), timeout=START_WAIT)
            self._accepting = self.failure is None
        if self.failure is not None:
            failure = self.failure
            self.stop(timeout=0)
            cause = failure.cause
            if isinstance(cause, JournalCorrupted):
                raise cause
            raise SystemNotRunning(f"the actor system failed to start: {failure}") from cause
        try:
            for spec in list(self.declared_schedules.values()):
                self._set_schedule(spec)
        except BaseException:
            self.stop()
            raise
        return self

    def _make_pool(self) -> Pool:
        if self.pool == "threads":
            return ThreadPool()
        from actorq.actors.pool_processes import ProcessPool, location

        for task in self.tasks.values():
            location(task.name, task.fn)  # TaskNotImportable before anything starts
        return ProcessPool(lambda: list(self.tasks), self.max_jobs_per_child)

    def _children(self, journal: Journal, pool: Pool) -> list[ChildSpec]:
        config = DispatchConfig(
            queues=self.queues,
            retention=self.retention,
            max_pending=self.max_pending,
            max_batch=self.prefetch,
            policy_for=self._policy_for,
            rate_limits=self.rate_limits,
            retry_budgets=self.retry_budgets,
            node=self.node,
        )
        mailboxes = {
            "scheduler": self.scheduler,
            "deadletter": self.deadletter,
            **{address.name: address for address in self.workers},
        }
        specs = [
            ChildSpec(
                "deadletter",
                lambda: DeadLetter(
                    journal, dispatcher=self.dispatcher, clock=self.clock, observer=self.observer
                ),
                address=self.deadletter,
            ),
            ChildSpec(
                "scheduler", lambda: Scheduler(self.clock, self.dispatcher), address=self.scheduler
            ),
            ChildSpec(
                "dispatcher",
                lambda: Dispatcher(
                    journal,
                    clock=self.clock,
                    board=self.board,
                    mailboxes=mailboxes,
                    workers=[w.name for w in self.workers],
                    restart_worker=self._restart_worker,
                    config=config,
                    port=self._port,
                    rng=random.Random(self.rng.getrandbits(64)),
                    remote=self.remote,
                    observer=self.observer,
                    middleware=self.middleware,
                ),
                address=self.dispatcher,
            ),
        ]
        for address in self.workers:
            specs.append(
                ChildSpec(
                    address.name,
                    worker_factory(
                        address.name,
                        self.dispatcher,
                        self._lookup,
                        self.board,
                        self.clock,
                        pool,
                        self.middleware,
                    ),
                    address=address,
                    shutdown=1.0,
                )
            )
        return specs

    def _restart_worker(self, name: str, reason: str) -> None:
        """Replace a worker hung in a job that timed out, within the bound of hung threads.

        A thread cannot be killed: each replaced worker leaves its thread in
        the handler until the handler returns. Past `max_hung_threads` such
        threads, a hung worker is replaced only once one of them has ended
        (its jobs wait for the other workers meanwhile), so a task that never
        returns cannot grow the process without bound.
        """
        if self.remote is not None and name not in {w.name for w in self.workers}:
            self.remote.replace(name, reason)
            return
        with self._hung_lock:
            self._deferred[name] = reason
        self._replace_deferred()

    def _replace_deferred(self) -> None:
        root = self._root
        if root is None:
            return
        with self._hung_lock:
            self._hung = [t for t in self._hung if t.is_alive()]
            while self._deferred and len(self._hung) < self.max_hung_threads:
                name, reason = self._deferred.popitem()
                address = next((a for a in self.workers if a.name == name), None)
                thread = getattr(address.actor if address else None, "thread", None)
                if isinstance(thread, threading.Thread):
                    self._hung.append(thread)
                root.tell(RestartChild(name, reason))
            waiting = len(self._deferred)
            if waiting and not self._recheck_armed:
                self._recheck_armed = True
                logger.warning(
                    "%d worker threads are still in jobs that timed out (the bound is %d):"
                    " %d hung workers are replaced once one of those jobs returns",
                    len(self._hung),
                    self.max_hung_threads,
                    waiting,
                )
                self.clock.call_at(self.clock.now() + _HUNG_RECHECK, self._recheck_hung)

    def _recheck_hung(self) -> None:
        with self._hung_lock:
            self._recheck_armed = False
        self._replace_deferred()

    def _on_give_up(self, escalation: Escalated) -> None:
        self.failure = escalation
        self._accepting = False

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting new jobs and stop, within about `timeout` seconds.

        On the memory journal the jobs already queued (and those whose delay
        or backoff is over) still run until `timeout`, as
        `ThreadPoolExecutor.shutdown(wait=True)` runs what it was given; what
        is left then is dropped, with a warning that counts it. On a durable
        journal running jobs may finish until `timeout`, and what is queued
        or scheduled stays in the journal for the next start (logged).
        """
        with self._lock:
            root, self._root = self._root, None
            self._accepting = False
        if root is None:
            return
        deadline = time.monotonic() + timeout
        volatile = isinstance(self.journal, MemoryJournal)
        if volatile and root.is_alive() and self.failure is None:
            self._run_down(deadline)
        try:
            dispatcher: Dispatcher | None = self._port.get(0.1)
        except (SystemNotRunning, JournalUnavailable):
            dispatcher = None
        self._port.close()
        left: dict[str, int] = {}
        if root.is_alive():
            remaining = max(0.0, deadline - time.monotonic())
            try:
                self._call(m.Drain, self.dispatcher, remaining, internal=True)
            except (pykka.Timeout, pykka.ActorDeadError, SystemNotRunning):
                logger.warning("jobs still running after %.1fs; stopping anyway", timeout)
            if dispatcher is not None:
                left = _unfinished(dispatcher)
            try:
                root.stop(timeout=timeout + 10)
            except pykka.ActorDeadError:
                pass
            except pykka.Timeout:
                logger.error("the supervision tree did not stop in time")
        if left:
            counts = ", ".join(f"{n} {status}" for status, n in left.items())
            if volatile:
                logger.warning(
                    "stopping dropped %d unfinished jobs (%s): the memory journal keeps"
                    " nothing for the next start",
                    sum(left.values()),
                    counts,
                )
            else:
                logger.info(
                    "stopping: %d unfinished jobs (%s) stay in the journal for the next start",
                    sum(left.values()),
                    counts,
                )
        if self._pool is not None:
            self._pool.close()  # a process pool kills the children of abandoned workers
            self._pool = None
        if self.journal is not None:
            self.journal.close()
            self.journal = None
        if self._own_clock:
            self.clock.close()
            self.clock = SystemClock()
        self._down.set()

    def _run_down(self, deadline: float) -> None:
        """Wait until no job can run now (none queued, running, or due), or the deadline."""
        while time.monotonic() < deadline:
            try:
                dispatcher = self._port.get(0.1)
                if not dispatcher.read(lambda core: _runnable(core, self.clock.now())):
                    return
            except (SystemNotRunning, JournalUnavailable):
                return
            self.board.idle.wait(min(_RUN_DOWN_POLL, max(0.0, deadline - time.monotonic())))

    def __enter__(self) -> ActorSystem:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._root is not None and self._accepting

    # -- submitting ---------------------------------------------------------------

    def submit(
        self,
        task: str,
        /,
        *args: Any,
        priority: int | None = None,
        delay: float | None = None,
        queue: str | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        policy: RestartPolicy | None = None,
        kwargs: dict[str, Any] | None = None,
        durability: Durability = "durable",
    ) -> JobHandle:
        """Submit one job.

        With durability="durable" (the default) this returns once the job is
        in the journal (for the memory journal: once the Dispatcher has it);
        with "accepted", once the Dispatcher has sequenced it, and
        `handle.durable(timeout)` waits for the rest.
        """
        item = self._spec(
            task, args, kwargs or {}, priority, delay, queue, idempotency_key, timeout, policy
        )
        if durability not in DURABILITIES:
            raise InvalidSubmission(f"durability must be one of {DURABILITIES}, not {durability!r}")
        dispatcher = self._dispatcher()
        ((job_id, existing),), ticket = dispatcher.submit([item], durable=durability == "durable")
        if self.middleware.after_submit:
            self.middleware.call(self.middleware.after_submit, item[0], existing)
        return JobHandle(self, job_id, existing, (dispatcher, ticket))

    def submit_many(
        self,
        task: str,
        argument_lists: Iterable[Sequence[Any]],
        *,
        priority: int | None = None,
        delay: float | None = None,
        queue: str | None = None,
        timeout: float | None = None,
        policy: RestartPolicy | None = None,
    ) -> list[JobHandle]:
        """Submit one job per argument list in a single durable batch, all or none."""
        items = [
            self._spec(task, tuple(args), {}, priority, delay, queue, None, timeout, policy)
            for args in argument_lists
        ]
        if not items:
            return []
        dispatcher = self._dispatcher()
        answer, _ = dispatcher.submit(items, durable=True)
        if self.middleware.after_submit:
            for (spec, _at), (_id, existing) in zip(items, answer, strict=True):
                self.middleware.call(self.middleware.after_submit, spec, existing)
        return [JobHandle(self, job_id, existing) for job_id, existing in answer]

    def submit_encoded(
        self, items: Sequence[EncodedJob], *, durability: Durability = "durable"
    ) -> list[JobHandle]:
        """Submit jobs whose arguments are msgpack bytes already, all or none.

        For submissions that arrive from other processes (`actorq.Client`):
        the same checks as `submit`, on the encoded ``[args, kwargs]``.
        """
        specs = []
        for job in items:
            if not isinstance(job.payload, bytes):
                raise InvalidSubmission("the payload must be msgpack bytes")
            if len(job.payload) > self.max_payload_bytes:
                raise PayloadTooLarge(len(job.payload), self.max_payload_bytes)
            try:
                args, kwargs = unpack(job.payload)
            except Exception:
                raise InvalidSubmission("the payload is not msgpack [args, kwargs]") from None
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise InvalidSubmission("the payload is not msgpack [args, kwargs]")
            specs.append(
                self._spec(
                    job.task,
                    tuple(args),
                    kwargs,
                    job.priority,
                    job.delay,
                    job.queue,
                    job.idempotency_key,
                    job.timeout,
                    None,
                    payload=job.payload,
                )
            )
        if not specs:
            return []
        if durability not in DURABILITIES:
            raise InvalidSubmission(f"durability must be one of {DURABILITIES}, not {durability!r}")
        dispatcher = self._dispatcher()
        answer, ticket = dispatcher.submit(specs, durable=durability == "durable")
        return [JobHandle(self, i, existing, (dispatcher, ticket)) for i, existing in answer]

    def pipeline(self) -> Pipeline:
        """A batch of submissions that do not wait one by one.

        Inside ``with system.pipeline() as p:``, ``p.submit(...)`` takes the
        same arguments as `submit` and returns a handle at once; leaving the
        block waits until every job submitted in it is durable.
        """
        return Pipeline(self)

    def _dispatcher(self) -> Dispatcher:
        if not self._accepting:
            reason = f"failed: {self.failure}" if self.failure else "not running"
            raise SystemNotRunning(f"the actor system is {reason}")
        if self.board.unavailable is not None:
            raise JournalUnavailable(f"the journal cannot be reached: {self.board.unavailable}")
        return self._port.get(self.call_timeout)

    def _wait_durable(self, dispatcher: Dispatcher, ticket: int, timeout: float | None) -> bool:
        if not dispatcher.live and ticket > dispatcher.seq:
            raise JournalUnavailable("the dispatcher restarted before the job was durable")
        return dispatcher.wait_durable(ticket, timeout)

    def _spec(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        priority: int | None,
        delay: float | None,
        queue: str | None,
        idempotency_key: str | None,
        timeout: float | None,
        policy: RestartPolicy | None,
        payload: bytes | None = None,
    ) -> tuple[JobSpec, float | None]:
        task = self.tasks.get(name)
        if task is None:
            raise UnknownTask(name)
        options = task.options
        priority = options.priority if priority is None else priority
        queue = queue or options.queue or self.queues[0]
        timeout = options.timeout if timeout is None else timeout
        self._check_options(priority, delay, queue, timeout)
        check_idempotency_key(idempotency_key)
        if policy is not None and not isinstance(policy, RestartPolicy):
            raise InvalidSubmission("policy must be a RestartPolicy")
        if payload is None:
            payload = self._encode(args, kwargs)
        self._signatures.check(name, task.fn, args, kwargs)
        spec = JobSpec(
            id=self._ids.next(),
            task=name,
            payload=payload,
            queue=queue,
            priority=priority,
            timeout=timeout,
            policy=None if policy is None else policy.to_dict(),
            delivery=options.delivery,
            idempotency_key=idempotency_key,
        )
        if self.middleware.before_submit:
            spec = self.middleware.submitting(spec)
            self._check_options(spec.priority, None, spec.queue, spec.timeout)
            _check_headers(spec.headers)
        return spec, (None if not delay else self.clock.now() + delay)

    def _check_options(self, priority: Any, delay: Any, queue: str | None, timeout: Any) -> None:
        if (
            not isinstance(priority, int)
            or isinstance(priority, bool)
            or not (PRIORITY_MIN <= priority <= PRIORITY_MAX)
        ):
            raise InvalidSubmission(
                f"priority must be an integer from {PRIORITY_MIN} to {PRIORITY_MAX},"
                f" not {priority!r}"
            )
        check_delay(delay)
        check_timeout(timeout)
        if queue is not None and queue not in self.queues:
            raise UnknownQueue(queue, self.queues)

    def _encode(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
        """The job's arguments as msgpack, once: the journal and the worker use these bytes."""
        try:
            payload: bytes = msgpack.packb([args, kwargs], use_bin_type=True)
        except (TypeError, ValueError, OverflowError):
            raise _explain_encoding_failure(args, kwargs) from None
        if len(payload) > self.max_payload_bytes:
            raise PayloadTooLarge(len(payload), self.max_payload_bytes)
        check_arguments(len(payload), args, kwargs)
        return payload

    # -- asking -------------------------------------------------------------------

    def _call(
        self,
        make: Callable[[m.Reply], Any],
        address: Address,
        timeout: float | None = None,
        *,
        internal: bool = False,
    ) -> Any:
        if not (self._accepting or internal):
            reason = f"failed: {self.failure}" if self.failure else "not running"
            raise SystemNotRunning(f"the actor system is {reason}")
        if self.board.unavailable is not None and not internal:
            raise JournalUnavailable(f"the journal cannot be reached: {self.board.unavailable}")
        future: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
        try:
            address.tell(make(future))
        except pykka.ActorDeadError as exc:
            raise SystemNotRunning(str(exc)) from exc
        return future.get(timeout=self.call_timeout if timeout is None else timeout)

    def _read(self, fn: Callable[[DispatchCore], Any]) -> Any:
        """Read the Dispatcher's state in this thread, under its lock."""
        return self._dispatcher().read(fn)

    def job(self, job_id: str) -> JobInfo:
        """The job's current record; raises JobNotFound if unknown or expired."""
        info = self._read(lambda core: _info_of(core, job_id))
        if info is None:
            entry = self._call(lambda r: m.GetDead(job_id, r), self.deadletter)
            if entry is None:
                raise JobNotFound(job_id)
            return entry  # type: ignore[no-any-return]
        return info  # type: ignore[no-any-return]

    def result(self, job_id: str, timeout: float | None = None) -> Any:
        outcome = self.board.outcome(job_id)
        if outcome is None:
            if not self._read(lambda core: job_id in core.state.jobs):
                self.job(job_id)  # a dead letter, or JobNotFound for an id nobody knows
            outcome = self._wait_outcome(job_id, timeout)
        if outcome is None:
            raise TimeoutError(f"job {job_id} did not finish within {timeout}s")
        status, value, error = outcome
        if status is JobStatus.SUCCEEDED:
            return None if value is None else unpack(value)
        if status is JobStatus.CANCELLED:
            raise JobCancelled(job_id)
        raise JobFailed(job_id, error or "failed")

    def _wait_outcome(self, job_id: str, timeout: float | None) -> Outcome | None:
        """Wait for the outcome; a system that stops meanwhile raises SystemNotRunning."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            wait = _STOP_POLL if remaining is None else min(remaining, _STOP_POLL)
            outcome = self.board.wait(job_id, wait)
            if outcome is not None:
                return outcome
            if self._down.is_set():
                reason = f"failed: {self.failure}" if self.failure else "stopped"
                raise SystemNotRunning(f"the actor system {reason} before job {job_id} ended")

    def cancel(self, job_id: str) -> bool:
        """Cancel a scheduled, queued or retrying job; ask a running one to stop.

        True if the job will end cancelled (a running handler sees
        `current_job().cancelled`; whatever it returns, the job ends cancelled).
        """
        return bool(self._call(lambda r: m.Cancel(job_id, r), self.dispatcher))

    def pause(self) -> None:
        """Hold queued jobs back from the workers (running jobs finish); not persisted."""
        self._call(lambda r: m.Pause(True, r), self.dispatcher)

    def resume(self) -> None:
        """Hand queued jobs to the workers again."""
        self._call(lambda r: m.Pause(False, r), self.dispatcher)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until no job is scheduled, queued, running or retrying."""
        return self.board.idle.wait(timeout)

    def stats(self) -> dict[str, Any]:
        """Counts per status, queue depths, and the number of dead letters kept."""
        stats: dict[str, Any] = self._read(lambda core: core.stats())
        stats["dead_letters"] = len(self._call(m.ListDead, self.deadletter))
        return stats

    # -- dead letters ------------------------------------------------------------------

    def dead_letters(self, *, limit: int | None = None, after: str | None = None) -> list[JobInfo]:
        """Dead jobs, oldest first: all, or a page of `limit` after the job with id `after`.

        The next page starts after the last id of this one.
        """
        if limit is not None:
            check_limit(limit)
        return list(self._call(lambda r: m.ListDead(r, limit, after), self.deadletter))

    def jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        task: str | None = None,
        queue: str | None = None,
        limit: int = DEFAULT_LIMIT,
        after: str | None = None,
    ) -> list[JobInfo]:
        """A page of the jobs the Dispatcher holds, in submission order, filtered.

        Up to `limit` jobs after the one with id `after` (the last id of the
        page before); dead jobs stay listed until their retention ends.
        """
        check_limit(limit)
        try:
            wanted = None if status is None else JobStatus(status)
        except ValueError:
            known = ", ".join(s.value for s in JobStatus)
            raise InvalidSubmission(f"status must be one of {known}, not {status!r}") from None

        def keep(job: JobRecord) -> bool:
            return (
                (wanted is None or job.status is wanted)
                and (task is None or job.spec.task == task)
                and (queue is None or job.spec.queue == queue)
            )

        def read(core: DispatchCore) -> list[JobInfo]:
            chosen = page(core.state.jobs, limit=limit, after=after, keep=keep)
            return [job.info() for job in chosen]

        return self._read(read)  # type: ignore[no-any-return]

    def retry_dead(self, job_id: str) -> JobHandle:
        """Run a dead job again under the same id, its attempts reset."""
        revived: str | None = self._call(lambda r: m.ReviveDead(job_id, r), self.deadletter)
        if revived is None:
            raise JobNotFound(job_id)
        return JobHandle(self, job_id)

    def purge_dead(self, job_id: str | None = None) -> int:
        """Forget one dead job, or all of them; returns how many were removed."""
        return int(self._call(lambda r: m.PurgeDead(job_id, r), self.deadletter))

    # -- recurring schedules --------------------------------------------------------

    def cron(
        self,
        expr: str,
        *,
        tz: str = DEFAULT_TZ,
        name: str | None = None,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        catch_up: CatchUp = DEFAULT_CATCH_UP,
        window: float = DEFAULT_WINDOW,
        overlap: Overlap = DEFAULT_OVERLAP,
        fall_back: FallBack = "once",
    ) -> Callable[[Task[P, R] | Callable[P, R]], Task[P, R]]:
        """Run a task on a cron schedule: ``@system.cron("*/15 * * * *", tz="Europe/Berlin")``.

        Put it above ``@system.task`` (a plain function is registered as a task
        too). Everything is checked here, at declaration; the schedule (named
        after the task unless `name` says otherwise) is written to the journal
        when the system starts, and a changed declaration updates it then.
        """
        # Checked before any task is registered, so a bad declaration leaves no trace.
        check_name(name if name is not None else "probe")
        probe = ScheduleSpec(
            "probe", expr, tz, "probe", b"", "default", 0, None, None, "at_least_once",
            catch_up, window, overlap, fall_back,
        )  # fmt: skip
        probe.check()

        def declare(fn: Task[P, R] | Callable[P, R]) -> Task[P, R]:
            task = fn if isinstance(fn, Task) else self.task(fn)
            schedule = name or task.name
            if schedule in self.declared_schedules:
                raise ValueError(f"a schedule named {schedule!r} is declared already")
            spec = self._schedule_spec(
                schedule, expr, task.name, tuple(args), kwargs or {}, tz,
                catch_up, window, overlap, fall_back,
            )  # fmt: skip
            self.declared_schedules[schedule] = spec
            if self._root is not None:
                self._set_schedule(spec)
            return task

        return declare

    def schedule(
        self,
        name: str,
        cron: str,
        task: str,
        /,
        *args: Any,
        tz: str = DEFAULT_TZ,
        kwargs: dict[str, Any] | None = None,
        catch_up: CatchUp = DEFAULT_CATCH_UP,
        window: float = DEFAULT_WINDOW,
        overlap: Overlap = DEFAULT_OVERLAP,
        fall_back: FallBack = "once",
    ) -> ScheduleInfo:
        """Create schedule `name`, or change it (its high-water mark is kept); durable on return.

        Raises InvalidCronExpression, UnknownTimeZone, InvalidSchedule,
        UnknownTask or NotSerializable before anything changes.
        """
        spec = self._schedule_spec(
            name, cron, task, args, kwargs or {}, tz, catch_up, window, overlap, fall_back
        )
        return self._set_schedule(spec)

    def schedules(self) -> list[ScheduleInfo]:
        """Every schedule, by name, each with its next 5 fire times in its zone."""
        infos: list[ScheduleInfo] = self._read(lambda core: core.cron.infos())
        return infos

    def pause_schedule(self, name: str) -> ScheduleInfo:
        """Stop firing; fires while paused are not caught up. Raises ScheduleNotFound."""
        return self._command(lambda core, now: core.cron.pause(name, True, now))

    def resume_schedule(self, name: str) -> ScheduleInfo:
        """Fire again from now on. Raises ScheduleNotFound."""
        return self._command(lambda core, now: core.cron.pause(name, False, now))

    def trigger_schedule(self, name: str) -> JobHandle:
        """Fire now, whatever the expression and the overlap rule. Raises ScheduleNotFound."""
        job_id: str = self._command(lambda core, now: core.cron.trigger(name, now))
        return JobHandle(self, job_id)

    def delete_schedule(self, name: str) -> None:
        """Forget the schedule (its jobs already submitted run on). Raises ScheduleNotFound."""
        self._command(lambda core, now: core.cron.delete(name, now))

    def _set_schedule(self, spec: ScheduleSpec) -> ScheduleInfo:
        return self._command(lambda core, now: core.cron.set(spec, now))

    def _command(self, fn: Callable[[DispatchCore, float], R]) -> R:
        return self._dispatcher().command(fn)

    def _schedule_spec(
        self,
        name: str,
        cron: str,
        task: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        tz: str,
        catch_up: CatchUp,
        window: float,
        overlap: Overlap,
        fall_back: FallBack,
    ) -> ScheduleSpec:
        check_name(name)
        job, _ = self._spec(task, args, kwargs, None, None, None, None, None, None)
        spec = ScheduleSpec(
            name=name,
            cron=cron,
            tz=tz,
            task=task,
            payload=job.payload,
            queue=job.queue,
            priority=job.priority,
            timeout=job.timeout,
            policy=job.policy,
            delivery=job.delivery,
            catch_up=catch_up,
            window=window,
            overlap=overlap,
            fall_back=fall_back,
        )
        spec.check()
        return spec

    # -- user actors ---------------------------------------------------------------------

    def spawn(
        self,
        actor_class: type[pykka.Actor],
        *args: Any,
        name: str,
        policy: RestartPolicy | None = None,
        **kwargs: Any,
    ) -> Address:
        """Start a user's pykka actor under its own supervisor; returns its stable Address."""
        if self._root is None:
            raise SystemNotRunning("start the actor system before spawning actors")
        child = ChildSpec.of(actor_class, *args, name=name, **kwargs)
        own_policy = policy or RestartPolicy()
        clock = self.clock

        def supervisor() -> Supervisor:
            return Supervisor(
                [child],
                own_policy,
                name=f"{name}-supervisor",
                clock=clock,
                on_give_up=lambda e: logger.error("actor %s stopped for good: %s", name, e),
            )

        spec = ChildSpec(f"user:{name}", supervisor, restart="temporary")
        self._root.ask(StartChild(spec))
        return child.address


def _retry_budgets(
    budget: RetryBudget | dict[str, RetryBudget] | None, queues: tuple[str, ...]
) -> dict[str, RetryBudget]:
    """One budget for every queue, or a budget per named queue."""
    if budget is None:
        return {}
    if isinstance(budget, RetryBudget):
        return dict.fromkeys(queues, budget)
    if not isinstance(budget, dict):
        raise InvalidLimit(f"retry_budget must be a RetryBudget or a dict of them, not {budget!r}")
    for queue, item in budget.items():
        if queue not in queues:
            raise UnknownQueue(queue, queues)
        if not isinstance(item, RetryBudget):
            raise InvalidLimit(f"retry budget of queue {queue!r} must be a RetryBudget")
    return dict(budget)


def _check_headers(headers: Any) -> None:
    """Headers travel in the journal and to workers: a small map of strings."""
    if headers is None:
        return
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise InvalidSubmission("job headers must be a dict of strings to strings")


def _check_pool(pool: Any, max_jobs_per_child: Any) -> None:
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, not {pool!r}")
    if max_jobs_per_child is not None:
        if not isinstance(max_jobs_per_child, int) or max_jobs_per_child < 1:
            raise ValueError(
                f"max_jobs_per_child must be a positive integer, not {max_jobs_per_child!r}"
            )
        if pool != "processes":
            raise ValueError("max_jobs_per_child applies to pool='processes' only")


def _unfinished(dispatcher: Dispatcher) -> dict[str, int]:
    """Jobs not yet finished, per status (empty if the Dispatcher cannot be asked)."""
    try:
        stats = dispatcher.read(lambda core: core.stats())
    except (SystemNotRunning, JournalUnavailable):
        return {}
    active = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SCHEDULED, JobStatus.RETRYING)
    statuses: dict[str, int] = stats["statuses"]
    return {s.value: statuses[s.value] for s in active if statuses[s.value]}


def _runnable(core: DispatchCore, now: float) -> int:
    """How many jobs can run now: queued, running, or waiting with their time come."""
    counts = core.state.counts
    due = sum(1 for job in core.state.waiting() if (job.run_at or 0.0) <= now)
    return counts[JobStatus.QUEUED] + counts[JobStatus.RUNNING] + due


def _info_of(core: DispatchCore, job_id: str) -> JobInfo | None:
    job = core.state.jobs.get(job_id)
    return None if job is None else job.info()


def _explain_encoding_failure(args: tuple[Any, ...], kwargs: dict[str, Any]) -> NotSerializable:
    for label, value in [*((f"#{i}", a) for i, a in enumerate(args)), *kwargs.items()]:
        try:
            msgpack.packb(value, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            return NotSerializable(str(label), f"{type(value).__name__}: {exc}")
    return NotSerializable("(keyword names)", "keyword names must be strings")


@dataclass(frozen=True, slots=True)
class EncodedJob:
    """One submission whose arguments are encoded already (from another process)."""

    task: str
    payload: bytes
    priority: int | None = None
    delay: float | None = None
    queue: str | None = None
    idempotency_key: str | None = None
    timeout: float | None = None


class _JobIds:
    """Unique, roughly time-ordered job ids without a uuid per job (uuid4 costs ~2 us)."""

    def __init__(self) -> None:
        self._prefix = f"{int(time.time() * 1000):x}{secrets.token_hex(4)}"
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}-{next(self._counter):x}"


class Pipeline:
    """Submissions that return at once; leaving the block waits until all are durable."""

    def __init__(self, system: ActorSystem) -> None:
        self._system = system
        self._last: tuple[Dispatcher, int] | None = None
        self.handles: list[JobHandle] = []

    def submit(self, task: str, /, *args: Any, **options: Any) -> JobHandle:
        handle = self._system.submit(task, *args, durability="accepted", **options)
        if handle.ticket is not None:
            self._last = handle.ticket
        self.handles.append(handle)
        return handle

    def wait(self, timeout: float | None = None) -> None:
        """Block until every job submitted so far is durable; raises if one was lost."""
        if self._last is None:
            return
        dispatcher, ticket = self._last
        if not self._system._wait_durable(dispatcher, ticket, timeout):
            raise TimeoutError(f"submissions not durable within {timeout}s")

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            self.wait(self._system.call_timeout)
