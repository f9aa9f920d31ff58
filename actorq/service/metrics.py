"""Prometheus metrics for an ActorSystem, fed by the SystemObserver hooks.

Why an observer and not counters sprinkled through the actors: the
Dispatcher already hands every durable batch of events to `committed`, once
per group commit, so one hook sees every job transition exactly once and in
order, and the actors stay free of metrics code. The price is that the hook
runs on the Dispatcher's thread, the hot path: it aggregates the batch in
plain dicts first and then makes one `.inc(n)` per label set (a labelled
child costs ~1 us per call; a batch of 2,000 successes of one task costs
one call, not 2,000). Histograms still take one `observe` per job; that is
what a histogram is.

Each observer owns its `CollectorRegistry`: nothing is registered with the
process-global registry, and nothing happens at import time, so two systems
in one process (or a test suite) never collide.

The dead-letter count comes from the DeadLetter actor's own hook
(`dead_letters_changed`), after each of its commits.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Callable, Iterable
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from actorq.core.events import (
    BecameDue,
    Cancelled,
    Expired,
    Failed,
    Requeued,
    ScheduleFired,
    ScheduleSkipped,
    Started,
    Submitted,
    Succeeded,
)
from actorq.job import JobStatus
from actorq.observe import SystemObserver

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from actorq.core.state import DispatcherState
    from actorq.errors import Escalated

# Job durations span sub-millisecond no-ops to hour-long batch jobs.
DURATION_BUCKETS = (0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0, 1800.0, 7200.0)
# A group commit holds 1 to max_batch (2,000 by default) events.
BATCH_BUCKETS = (1, 2, 5, 10, 50, 100, 500, 1000, 2000, 5000)
APPEND_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0)
RATE_WINDOW = 60  # seconds over which GET /queues reports finishing rates


class PrometheusObserver(SystemObserver):
    """Collect actorq's metrics into a registry of its own (`self.registry`).

    Enable it with ``ActorSystem(..., observer=PrometheusObserver())``; expose
    `registry` with `prometheus_client.generate_latest(observer.registry)` or
    the HTTP API's ``GET /metrics``.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.submitted = Counter(
            "actorq_jobs_submitted", "Jobs accepted.", ["task", "queue"], registry=r
        )
        self.finished = Counter(
            "actorq_jobs_finished",
            "Jobs that reached a terminal status (succeeded, dead, cancelled).",
            ["task", "status"],
            registry=r,
        )
        self.duration = BatchHistogram(
            "actorq_job_duration_seconds",
            "Run time of one attempt, from assignment to its outcome.",
            "task",
            DURATION_BUCKETS,
        )
        self.wait = BatchHistogram(
            "actorq_job_wait_seconds",
            "Time a job was ready to run (queued) before a worker took it.",
            "queue",
            DURATION_BUCKETS,
        )
        r.register(self.duration)
        r.register(self.wait)
        self.depth = Gauge("actorq_queue_depth", "Jobs queued and ready.", ["queue"], registry=r)
        self.in_flight = Gauge("actorq_jobs_in_flight", "Jobs running on a worker.", registry=r)
        self.dead_letters = Gauge(
            "actorq_dead_letters", "Dead jobs kept by the dead letters.", registry=r
        )
        self.restarts = Counter(
            "actorq_actor_restarts", "Actor restarts by their supervisor.", ["actor"], registry=r
        )
        self.append_seconds = Histogram(
            "actorq_journal_append_seconds",
            "Duration of one group-commit append to the journal.",
            ["persistence_id"],
            buckets=APPEND_BUCKETS,
            registry=r,
        )
        self.batch_events = Histogram(
            "actorq_journal_batch_events",
            "Events written per group commit.",
            ["persistence_id"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.recovery = Gauge(
            "actorq_recovery_seconds",
            "Duration of the latest recovery (snapshot load and replay).",
            ["persistence_id"],
            registry=r,
        )
        self.rate_limited = Gauge(
            "actorq_rate_limited_jobs",
            "Queued jobs held back by their task's rate limit.",
            ["task"],
            registry=r,
        )
        self.budget_waiting = Gauge(
            "actorq_retry_budget_waiting_jobs",
            "Retries held back because their queue's retry budget is spent.",
            ["queue"],
            registry=r,
        )
        self.deferrals = Counter(
            "actorq_limit_deferrals",
            "Times a job was held back by a limit (kind: rate or budget; name: task or queue).",
            ["kind", "name"],
            registry=r,
        )
        self._deferred: dict[tuple[str, str], int] = {}
        self.cron_fires = Counter(
            "actorq_cron_fires", "Fires of a recurring schedule that submitted a job.",
            ["schedule"], registry=r,
        )  # fmt: skip
        self.cron_missed = Counter(
            "actorq_cron_missed_fires",
            "Fire instants that passed without a job: reason=missed (the system was down and"
            " the catch-up rule dropped them) or reason=overlap (the previous job was unfinished).",
            ["schedule", "reason"],
            registry=r,
        )
        self._children: dict[tuple[object, ...], Any] = {}
        self._ready_at: dict[str, float] = {}
        self.rates = RateWindow(RATE_WINDOW)

    # -- wiring -------------------------------------------------------------------

    def dead_letters_changed(self, count: int) -> None:
        self.dead_letters.set(count)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # -- hooks ----------------------------------------------------------------------

    def committed(  # noqa: PLR0915 - one flat loop is the cheap form of this hot path
        self, events: list[Any], state: DispatcherState
    ) -> None:
        """Dispatcher thread, once per group commit: aggregate, then update.

        Batches are mostly runs of one task on one queue, so each loop keeps
        the last label set's accumulator at hand and only looks it up in a
        dict when the labels change (string identity, then equality).
        """
        jobs = state.jobs
        submitted: dict[tuple[str, str], list[int]] = {}
        succeeded: dict[tuple[str, str], list[float]] = {}  # (task, queue) -> durations
        finished: dict[tuple[str, str, str], int] = {}  # (task, status, queue), not successes
        durations: dict[str, list[float]] = {}  # attempts that failed
        waits: dict[str, list[float]] = {}
        ready_at = self._ready_at
        sub_task = sub_queue = ok_task = ok_queue = wait_queue = None
        sub_cell: list[int] = []
        ok_series: list[float] = []
        wait_series: list[float] = []
        for e in events:
            kind = type(e)
            if kind is Submitted:
                spec = e.spec
                if spec.task is not sub_task or spec.queue is not sub_queue:
                    sub_task, sub_queue = spec.task, spec.queue
                    sub_cell = submitted.setdefault((spec.task, spec.queue), [0])
                sub_cell[0] += 1
            elif kind is Succeeded:
                job = jobs.get(e.id)
                if job is None:
                    continue
                if job.spec.task is not ok_task or job.spec.queue is not ok_queue:
                    ok_task, ok_queue = job.spec.task, job.spec.queue
                    ok_series = succeeded.setdefault((job.spec.task, job.spec.queue), [])
                ok_series.append(e.at - (job.started_at or e.at))
            elif kind is Started:
                at = e.at
                for job_id in e.ids:
                    job = jobs.get(job_id)
                    if job is None:
                        continue
                    if job.spec.queue is not wait_queue:
                        wait_queue = job.spec.queue
                        wait_series = waits.setdefault(job.spec.queue, [])
                    ready = ready_at.pop(job_id, job.created_at) if ready_at else job.created_at
                    wait_series.append(at - ready)
            elif kind is Failed:
                job = jobs.get(e.id)
                if job is None:
                    continue
                started = job.started_at  # a retry in this same batch may have moved it
                if started is not None and started <= e.at:
                    durations.setdefault(job.spec.task, []).append(e.at - started)
                if e.retry_at is None:
                    outcome = (job.spec.task, "dead", job.spec.queue)
                    finished[outcome] = finished.get(outcome, 0) + 1
            elif kind is Cancelled:
                ready_at.pop(e.id, None)
                job = jobs.get(e.id)
                if job is not None:
                    outcome = (job.spec.task, "cancelled", job.spec.queue)
                    finished[outcome] = finished.get(outcome, 0) + 1
            elif kind is BecameDue or kind is Requeued:
                for job_id in e.ids:
                    ready_at[job_id] = e.at
            elif kind is Expired:
                for job_id in e.ids:
                    ready_at.pop(job_id, None)
            elif kind is ScheduleFired:
                self._child(self.cron_fires, e.name).inc()
            elif kind is ScheduleSkipped:
                self._child(self.cron_missed, e.name, e.reason).inc(e.count)
        for (task, queue), series in succeeded.items():
            finished[task, "succeeded", queue] = len(series)
            durations.setdefault(task, []).extend(series)
        self._update(state, submitted, finished, durations, waits)

    def _update(
        self,
        state: DispatcherState,
        submitted: dict[tuple[str, str], list[int]],
        finished: dict[tuple[str, str, str], int],
        durations: dict[str, list[float]],
        waits: dict[str, list[float]],
    ) -> None:
        child = self._child
        for (task, queue), (n,) in submitted.items():
            child(self.submitted, task, queue).inc(n)
        if finished:
            by_queue: Counter[str] = Counter()
            for (task, status, queue), n in finished.items():
                child(self.finished, task, status).inc(n)
                by_queue[queue] += n
            self.rates.add(by_queue)
        for task, seconds in durations.items():
            self.duration.observe_many(task, seconds)
        for queue, seconds in waits.items():
            self.wait.observe_many(queue, seconds)
        for queue, depth in state.depth.items():
            child(self.depth, queue).set(depth)
        self.in_flight.set(state.counts[JobStatus.RUNNING])

    def limits_changed(
        self, waiting: dict[str, dict[str, int]], deferred: dict[tuple[str, str], int]
    ) -> None:
        child = self._child
        for task, n in waiting["rate"].items():
            child(self.rate_limited, task).set(n)
        for queue, n in waiting["budget"].items():
            child(self.budget_waiting, queue).set(n)
        # Series of limits no longer holding anything back drop to zero.
        for (kind, name), _n in self._deferred.items():
            gauge = self.rate_limited if kind == "rate" else self.budget_waiting
            if name not in waiting[kind]:
                child(gauge, name).set(0)
        for key, n in deferred.items():
            grown = n - self._deferred.get(key, 0)
            if grown > 0:
                child(self.deferrals, *key).inc(grown)
        self._deferred = dict(deferred)

    def journal_appended(self, persistence_id: str, events: int, seconds: float) -> None:
        self._child(self.append_seconds, persistence_id).observe(seconds)
        self._child(self.batch_events, persistence_id).observe(events)

    def recovered(self, persistence_id: str, events: int, seconds: float) -> None:
        self._child(self.recovery, persistence_id).set(seconds)

    def child_restarted(self, supervisor: str, child: str, error: BaseException | None) -> None:
        self._child(self.restarts, child).inc()

    def escalated(self, supervisor: str, error: Escalated) -> None:
        """Nothing to count: /readyz reports a failed system."""


class BatchHistogram:
    """A labelled histogram that takes a batch of observations per call.

    prometheus_client's Histogram takes a lock and walks its buckets per
    observation (~1 us); a per-job metric on the Dispatcher's thread paid that
    twice per job, 20% of no-op throughput. Here one thread (the
    Dispatcher's) writes plain lists with `bisect`, and a scrape copies them
    (a C-level copy under the GIL, so a snapshot is never torn).
    """

    def __init__(self, name: str, documentation: str, label: str, buckets: Iterable[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self.bounds = sorted(float(b) for b in buckets)
        # per label value: a count per bucket (the last one is +Inf), then the sum
        self._series: dict[str, list[float]] = {}

    def observe_many(self, label: str, values: list[float]) -> None:
        series = self._series.get(label)
        if series is None:
            series = self._series[label] = [0.0] * (len(self.bounds) + 2)
        bounds = self.bounds
        first = bounds[0]
        fastest = 0  # most jobs land in the first bucket: skip the bisect call for them
        for value in values:
            if value <= first:
                fastest += 1
            else:
                series[bisect_left(bounds, value)] += 1
        series[0] += fastest
        series[-1] += sum(values)

    def count(self, label: str) -> int:
        series = self._series.get(label)
        return 0 if series is None else int(sum(series[:-1]))

    def collect(self) -> list[Metric]:
        from prometheus_client.metrics_core import HistogramMetricFamily

        family = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        bounds = [*(repr(b) for b in self.bounds), "+Inf"]
        for label, series in list(self._series.items()):
            snapshot = list(series)
            cumulative = list(accumulate(snapshot[:-1]))
            family.add_metric([label], list(zip(bounds, cumulative, strict=True)), snapshot[-1])
        return [family]

    def describe(self) -> list[Metric]:
        from prometheus_client.metrics_core import HistogramMetricFamily

        return [HistogramMetricFamily(self.name, self.documentation, labels=[self.label])]


class RateWindow:
    """Jobs finished per second over the last `window` seconds, per queue.

    The Dispatcher thread adds one Counter per commit into one-second buckets;
    HTTP threads read. A lock guards the deque (taken once per commit).
    """

    def __init__(self, window: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._buckets: deque[tuple[int, Counter[str]]] = deque()

    def add(self, finished: Counter[str]) -> None:
        second = int(self._clock())
        with self._lock:
            if self._buckets and self._buckets[-1][0] == second:
                self._buckets[-1][1].update(finished)
            else:
                self._buckets.append((second, Counter(finished)))
                self._trim(second)

    def per_second(self, queues: Iterable[str]) -> dict[str, float]:
        """Finished jobs per second per queue, averaged over the window.

        Over the time since the observer started, while that is shorter than
        the window: a fresh system is not reported as slower than it is.
        """
        now = self._clock()
        span = max(1.0, min(float(self.window), now - self._started))
        totals: Counter[str] = Counter()
        with self._lock:
            self._trim(int(now))
            for _, counts in self._buckets:
                totals.update(counts)
        return {q: totals[q] / span for q in queues}

    def _trim(self, second: int) -> None:
        horizon = second - self.window
        while self._buckets and self._buckets[0][0] <= horizon:
            self._buckets.popleft()
