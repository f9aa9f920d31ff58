"""Rate limits per task and retry budgets per queue: decided by the core, across workers."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from actorq import (
    ActorSystem,
    Backoff,
    InvalidLimit,
    RateLimit,
    RestartPolicy,
    RetryBudget,
    UnknownQueue,
)
from actorq.core import effects as fx
from actorq.core import messages as m
from actorq.core.dispatch import DispatchConfig, DispatchCore
from actorq.core.events import Started
from actorq.core.job import JobSpec, pack
from actorq.core.state import DispatcherState
from actorq.service.metrics import PrometheusObserver

NO_ARGS = pack([[], {}])
RETRY_AT_ONCE = RestartPolicy(max_restarts=50, within=1e9, backoff=Backoff.constant(0.0))


def core(workers: int, **config: Any) -> DispatchCore:
    c = DispatchCore(
        DispatchConfig(policy_for=lambda task, override: RETRY_AT_ONCE, **config),
        [f"w{i}" for i in range(1, workers + 1)],
        epoch=1,
        rng=random.Random(1),
    )
    for i in range(1, workers + 1):
        c.handle(m.Ready(f"w{i}", incarnation=i, epoch=1, credits=1), 0.0)
    c.take()
    return c


Start = tuple[float, str, int]  # (at, job id, attempt)


def drive(
    c: DispatchCore, now: float, until: float, fails: Callable[[str, int], bool]
) -> list[Start]:
    """Run the core in virtual time: workers answer at once; timers fire when due."""
    starts: list[Start] = []
    timers: list[fx.Timer] = []
    while True:
        decision = c.take()
        for event in decision.events:
            if isinstance(event, Started):
                starts.extend((event.at, i, c.state.jobs[i].attempts) for i in event.ids)
        finished: dict[str, list[m.Result]] = {}
        for effect in decision.now + decision.durable:
            if isinstance(effect, fx.Arm):
                timers.extend(effect.timers)
            elif isinstance(effect, fx.Tell) and isinstance(effect.message, m.Assign):
                for job_id, attempt, _task, _payload in effect.message.jobs:
                    ok = not fails(job_id, attempt)
                    error = None if ok else "boom"
                    result = (job_id, attempt, ok, pack(None), error, ("Exception",), 0.0)
                    finished.setdefault(effect.to, []).append(result)
        if finished:
            for worker, results in finished.items():
                incarnation = c.workers[worker].incarnation
                c.handle(m.Finished(worker, incarnation, 1, results), now)
            continue
        timers = [t for t in timers if t[1] in ("due", "rate", "budget")]
        if not timers:
            return starts
        when = min(t[0] for t in timers)
        if when > until:
            return starts
        now = max(now, when)
        fired = [t for t in timers if t[0] <= now]
        timers = [t for t in timers if t[0] > now]
        c.handle(m.TimersFired(fired), now)


def spec(i: int, task: str = "t", priority: int = 0, queue: str = "default") -> JobSpec:
    return JobSpec(id=f"j{i}", task=task, payload=NO_ARGS, priority=priority, queue=queue)


def most_in_any_window(times: list[float], per: float) -> int:
    """The largest number of `times` within [t, t + per) for some start t among them."""
    times = sorted(times)
    return max(sum(1 for u in times if t <= u < t + per) for t in times)


def test_rate_limit_holds_across_workers_in_virtual_time() -> None:
    c = core(workers=4, rate_limits={"t": RateLimit(3, per=1.0)})
    c.submit([(spec(i), None) for i in range(20)], now=0.0)
    c.submit([(spec(100 + i, task="free"), None) for i in range(10)], now=0.0)
    starts = drive(c, 0.0, until=100.0, fails=lambda job_id, attempt: False)
    limited = [at for at, job_id, _ in starts if c.state.jobs[job_id].spec.task == "t"]
    assert len(limited) == 20  # every job ran
    assert most_in_any_window(limited, 1.0) == 3
    free = [at for at, job_id, _ in starts if c.state.jobs[job_id].spec.task == "free"]
    assert free == [0.0] * 10  # other tasks are not held back
    assert c.stats()["limited"] == {"rate": {}, "budget": {}}


def test_rate_limited_jobs_keep_their_priority_order() -> None:
    c = core(workers=2, rate_limits={"t": RateLimit(1, per=1.0)})
    c.submit([(spec(i, priority=i % 3), None) for i in range(9)], now=0.0)
    starts = drive(c, 0.0, until=100.0, fails=lambda job_id, attempt: False)
    order = [c.state.jobs[job_id].spec.priority for _, job_id, _ in sorted(starts)]
    # The first start was decided before the rest arrived in the heap; after it,
    # the held-back jobs leave best first.
    assert order[1:] == sorted(order[1:], reverse=True)
    assert most_in_any_window([at for at, _, _ in starts], 1.0) == 1


def test_retry_budget_delays_retries_past_the_budget() -> None:
    budget = RetryBudget(fraction=0.1, window=10.0, minimum=1)
    c = core(workers=4, retry_budgets={"default": budget})
    c.submit([(spec(i), None) for i in range(20)], now=0.0)
    # Every job fails its first attempt and succeeds its second.
    starts = drive(c, 0.0, until=1000.0, fails=lambda job_id, attempt: attempt == 1)
    firsts = [at for at, _, attempt in starts if attempt == 1]
    retries = sorted(at for at, _, attempt in starts if attempt > 1)
    assert len(firsts) == 20 and len(retries) == 20  # every retry ran in the end
    # 20 first attempts allow max(1, 10% of 20) = 2 retries in the window they are in.
    assert sum(1 for at in retries if at < 10.0) == 2
    # Later, with no new first attempts, the minimum: 1 retry per window.
    later = [at for at in retries if at >= 10.0]
    assert most_in_any_window(later, 10.0) <= 1 + 1  # slots are a tenth of the window
    assert c.limits.deferred[("budget", "default")] > 0


def test_retry_budget_lets_retries_through_while_within_it() -> None:
    budget = RetryBudget(fraction=0.5, window=10.0, minimum=0)
    c = core(workers=4, retry_budgets={"default": budget})
    c.submit([(spec(i), None) for i in range(10)], now=0.0)
    failing = {"j0", "j1"}
    starts = drive(
        c, 0.0, until=5.0, fails=lambda job_id, attempt: job_id in failing and attempt == 1
    )
    retries = [at for at, _, attempt in starts if attempt > 1]
    assert retries == [0.0, 0.0]  # 2 retries against 10 first attempts: within 50 %
    assert ("budget", "default") not in c.limits.deferred


def test_rate_limit_holds_with_several_workers_on_a_running_system() -> None:
    observer = PrometheusObserver()
    system = ActorSystem(workers=4, journal="memory", observer=observer)

    @system.task("limited", rate_limit=RateLimit(4, per=0.2))
    def limited(i: int) -> int:
        return i

    with system:
        handles = [system.submit("limited", i) for i in range(24)]
        assert [h.result(30) for h in handles] == list(range(24))
        starts = [system.job(h.id).history[0].started_at or 0.0 for h in handles]
        workers = {system.job(h.id).history[0].worker for h in handles}
    assert most_in_any_window(starts, 0.2) <= 4
    assert len(workers) > 1
    deferred = observer.registry.get_sample_value(
        "actorq_limit_deferrals_total", {"kind": "rate", "name": "limited"}
    )
    assert deferred is not None and deferred > 0


def test_retry_budget_on_a_running_system_delays_retries() -> None:
    observer = PrometheusObserver()
    budget = RetryBudget(fraction=0.0, window=0.5, minimum=1)
    system = ActorSystem(
        workers=2, journal="memory", observer=observer, policy=RETRY_AT_ONCE, retry_budget=budget
    )
    seen: dict[int, int] = {}

    @system.task("once")
    def once(i: int) -> int:
        seen[i] = seen.get(i, 0) + 1
        if seen[i] == 1:
            raise ValueError("first attempt fails")
        return i

    with system:
        handles = [system.submit("once", i) for i in range(4)]
        assert sorted(h.result(30) for h in handles) == [0, 1, 2, 3]
        retries = sorted(
            a.started_at or 0.0 for h in handles for a in system.job(h.id).history if a.attempt > 1
        )
    assert len(retries) == 4
    # One retry per window (plus one for the slot a window is counted in).
    assert most_in_any_window(retries, 0.5) <= 2
    deferred = observer.registry.get_sample_value(
        "actorq_limit_deferrals_total", {"kind": "budget", "name": "default"}
    )
    assert deferred is not None and deferred > 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RateLimit(-1), "starts"),
        (lambda: RateLimit(0), "starts"),
        (lambda: RateLimit(1.5), "starts"),  # type: ignore[arg-type]
        (lambda: RateLimit(5, per=0), "period"),
        (lambda: RateLimit(5, per=-1.0), "period"),
        (lambda: RateLimit(5, per=float("inf")), "period"),
        (lambda: RetryBudget(fraction=1.5), "fraction"),
        (lambda: RetryBudget(fraction=-0.1), "fraction"),
        (lambda: RetryBudget(window=0), "window"),
        (lambda: RetryBudget(minimum=-1), "minimum"),
    ],
)
def test_bad_limits_are_named_errors(make: Callable[[], object], message: str) -> None:
    with pytest.raises(InvalidLimit, match=message):
        make()


def test_bad_limit_options_on_the_system() -> None:
    system = ActorSystem(journal="memory")
    with pytest.raises(InvalidLimit):
        system.task("x", rate_limit=(5, 1.0))(lambda: None)  # type: ignore[call-overload]
    assert "x" not in system.tasks
    with pytest.raises(UnknownQueue):
        ActorSystem(journal="memory", retry_budget={"nope": RetryBudget()})
    with pytest.raises(InvalidLimit):
        ActorSystem(journal="memory", retry_budget={"default": 0.1})  # type: ignore[dict-item]
    with pytest.raises(InvalidLimit):
        ActorSystem(journal="memory", retry_budget=0.1)  # type: ignore[arg-type]


def test_a_restart_counts_the_starts_still_in_the_window() -> None:
    """A recovered core rebuilds its rate log from the attempt history: no fresh window."""
    limits = {"t": RateLimit(3, per=10.0)}
    before = core(workers=2, rate_limits=limits)
    before.submit([(spec(i), None) for i in range(6)], now=0.0)
    first = drive(before, 0.0, until=5.0, fails=lambda job_id, attempt: False)
    assert len(first) == 3  # the window is full until 10.0
    state = DispatcherState.from_snapshot(before.state.to_snapshot())
    after = DispatchCore(
        DispatchConfig(policy_for=lambda task, override: RETRY_AT_ONCE, rate_limits=limits),
        ["w1", "w2"],
        epoch=2,
        rng=random.Random(1),
        state=state,
    )
    after.recovered(5.0)
    for i in (1, 2):
        after.handle(m.Ready(f"w{i}", incarnation=10 + i, epoch=2, credits=1), 5.0)
    second = drive(after, 5.0, until=100.0, fails=lambda job_id, attempt: False)
    assert len(second) == 3
    assert min(at for at, _, _ in second) >= 10.0  # not at 5.0, when the restart came
