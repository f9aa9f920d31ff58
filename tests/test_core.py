"""The decision core on its own: pure decisions, driven by hand with explicit time."""

from __future__ import annotations

import random
from typing import Any

from actorq.core import effects as fx
from actorq.core import messages as m
from actorq.core.dispatch import DispatchConfig, DispatchCore
from actorq.core.job import JobSpec, pack
from actorq.supervision import Backoff, RestartPolicy

NO_ARGS = pack([[], {}])


def core(workers: int = 2, seed: int = 1, **config: Any) -> DispatchCore:
    c = DispatchCore(
        DispatchConfig(**config),
        [f"w{i}" for i in range(1, workers + 1)],
        epoch=1,
        rng=random.Random(seed),
    )
    for i in range(1, workers + 1):
        c.handle(m.Ready(f"w{i}", incarnation=i, epoch=1, credits=1), 0.0)
    c.take()
    return c


def spec(i: int, task: str = "t", priority: int = 0) -> JobSpec:
    return JobSpec(id=f"j{i}", task=task, payload=NO_ARGS, priority=priority)


def assigns(decision: fx.Decision) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for effect in decision.now + decision.durable:
        if isinstance(effect, fx.Tell) and isinstance(effect.message, m.Assign):
            out.setdefault(effect.to, []).extend(j[0] for j in effect.message.jobs)
    return out


def finish(c: DispatchCore, worker: str, ids: list[str], now: float, seconds: float) -> None:
    results: list[m.Result] = [
        (i, c.state.jobs[i].attempts, True, pack(None), None, (), seconds) for i in ids
    ]
    incarnation = c.workers[worker].incarnation
    c.handle(m.Finished(worker, incarnation, 1, results), now)


def test_a_task_of_unknown_duration_travels_alone_then_in_batches() -> None:
    """First one job per worker; once the task is known to be quick, many per Assign."""
    c = core(workers=1)
    c.submit([(spec(i), None) for i in range(50)], now=1.0)
    first = assigns(c.take())
    assert first == {"w1": ["j0"]}
    finish(c, "w1", ["j0"], now=1.001, seconds=0.00001)
    second = assigns(c.take())["w1"]
    assert len(second) == 32  # the batch cap, far under the 2 ms budget


def test_a_slow_task_never_has_jobs_queued_behind_it() -> None:
    """A task known to take 1 s is handed out one job at a time per worker."""
    c = core(workers=2)
    c.estimates["slow"] = 1.0
    c.submit([(spec(i, "slow"), None) for i in range(10)], now=1.0)
    assert assigns(c.take()) == {"w1": ["j0"], "w2": ["j1"]}


def test_priority_is_taken_when_a_worker_has_room() -> None:
    """Jobs queued while every worker is busy go out highest priority first."""
    c = core(workers=1)
    c.submit([(spec(0, "block"), None)], now=1.0)
    c.take()
    c.submit([(spec(1, priority=1), None), (spec(2, priority=9), None)], now=1.1)
    c.submit([(spec(3, priority=5), None)], now=1.2)
    assert assigns(c.take()) == {}  # w1 is busy: nothing is pushed to it
    finish(c, "w1", ["j0"], now=2.0, seconds=1.0)
    assert assigns(c.take()) == {"w1": ["j2"]}  # "t" is of unknown duration: alone


def test_jobs_stuck_behind_an_overrunning_job_are_recalled_for_an_idle_worker() -> None:
    """A worker making no progress past recall_after gives back what it has not started."""
    c = core(workers=2)
    c.estimates["t"] = 0.00001
    c.submit([(spec(i), None) for i in range(10)], now=1.0)
    granted = assigns(c.take())
    w1 = granted["w1"]
    assert len(w1) > 1
    finish(c, "w2", granted["w2"], now=1.001, seconds=0.00001)
    decision = c.take()
    assert not [e for e in decision.now if isinstance(e, fx.Recall)]  # w1 is on schedule
    c.handle(m.TimersFired([(1.03, "recall", "w1", None)]), 1.03)
    recalls = [e for e in c.take().now if isinstance(e, fx.Recall)]
    assert recalls == [fx.Recall("w1", w1[1:])]
    c.handle(m.Recalled("w1", w1[1:]), 1.031)
    regranted = assigns(c.take())
    assert regranted == {"w2": w1[1:]}


def test_the_same_seed_draws_the_same_backoff_delays() -> None:
    """Retry delays come from the core's RNG: equal seeds, equal decisions."""

    def delays(seed: int) -> list[float]:
        policy = RestartPolicy(max_restarts=5, backoff=Backoff.exponential(1, jitter="full"))
        c = core(workers=1, seed=seed, policy_for=lambda task, override: policy)
        c.submit([(spec(0), None)], now=0.0)
        c.take()
        out = []
        for attempt in range(1, 4):
            c.handle(
                m.Finished("w1", 1, 1, [("j0", attempt, False, None, "boom", ("Exception",), 0.1)]),
                attempt * 100.0,
            )
            failed = [e for e in c.take().events if type(e).__name__ == "Failed"]
            out.append(failed[0].delay)
            c.handle(
                m.TimersFired([(0.0, "due", "j0", c.state.jobs["j0"].run_at)]), attempt * 100.0 + 50
            )
            c.take()
        return out

    assert delays(7) == delays(7)
    assert delays(7) != delays(8)
