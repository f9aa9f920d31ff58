"""Tasks: functions registered by name, with their default options.

Workers find a task's code only through this registry, by the name carried
in the job; nothing is ever imported from message data.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar

from actorq.supervision.policy import RestartPolicy

if TYPE_CHECKING:
    from actorq.job import JobHandle
    from actorq.system import ActorSystem

P = ParamSpec("P")
R = TypeVar("R")

Delivery = Literal["at_least_once", "at_most_once"]
DELIVERIES = ("at_least_once", "at_most_once")


@dataclass(frozen=True, slots=True)
class TaskOptions:
    policy: RestartPolicy | None = None
    timeout: float | None = None
    queue: str | None = None
    priority: int = 0
    delivery: Delivery = "at_least_once"


class Task(Generic[P, R]):
    """A registered function. Calling it runs it here and now, like the plain function."""

    def __init__(
        self, system: ActorSystem, name: str, fn: Callable[P, R], options: TaskOptions
    ) -> None:
        self.system = system
        self.name = name
        self.fn = fn
        self.options = options
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle:
        """Submit a job with these arguments and the task's default options."""
        return self.system.submit(self.name, *args, kwargs=kwargs)

    def submit_with_options(
        self, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> JobHandle:
        """Submit with per-job options: priority, delay, queue, idempotency_key, timeout, policy."""
        return self.system.submit(self.name, *args, kwargs=kwargs, **options)

    def map(self, argument_lists: Iterable[Sequence[Any]], **options: Any) -> list[JobHandle]:
        """Submit one job per argument list, all in one durable batch."""
        return self.system.submit_many(self.name, argument_lists, **options)


class AsyncTask(Task[P, R]):
    """A registered `async def` function: R is what it returns once awaited.

    Jobs await it on the pool's event loop (see `actorq.actors.pool_async`);
    calling it directly returns the coroutine, like the plain function.
    """

    def __call__(  # type: ignore[override]  # a coroutine of R, as the function itself
        self, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, R]:
        return self.fn(*args, **kwargs)  # type: ignore[return-value]
