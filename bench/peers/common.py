"""Shared pieces of the peer benchmarks: results, Redis keys, job bodies, polling, workers.

Every peer's job body is the same piece of real work, one Redis INCR on a counter key
handed to the job; the harness learns that jobs are done by polling that counter.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

from bench.peers import REPO_ROOT

if TYPE_CHECKING:
    import redis.asyncio

# The worker subprocess learns its run's settings from the environment: the peers' CLIs
# import the peer module by name and give it no other way in.
ENV_REDIS_URL = "ACTORQ_BENCH_REDIS_URL"
ENV_RUN_ID = "ACTORQ_BENCH_RUN_ID"

UNITS = {
    "enqueue": "jobs/s",
    "pipeline": "jobs/s",
    "drain": "jobs/s",
    "latency": "ms",
    "retry": "jobs/s",
}


@dataclass
class PeerResult:
    system: str
    workload: str
    value: float | None
    unit: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PeerResult:
        return cls(
            system=str(data["system"]),
            workload=str(data["workload"]),
            value=None if data.get("value") is None else float(data["value"]),
            unit=str(data.get("unit", "")),
            extra=dict(data.get("extra") or {}),
        )


@dataclass(frozen=True)
class RunKeys:
    """Names for one run. The run id is alphanumeric so every peer keeps it intact in the
    keys it derives from queue names (huey strips punctuation), and cleanup can SCAN for it."""

    run_id: str

    @property
    def done(self) -> str:
        return f"bench:{self.run_id}:done"

    @property
    def warm(self) -> str:
        return f"bench:{self.run_id}:warm"

    @property
    def queue(self) -> str:
        return f"bench-{self.run_id}"

    def attempt(self, i: int) -> str:
        return f"bench:{self.run_id}:att:{i}"


@dataclass(frozen=True)
class JobSpec:
    """One job to enqueue: INCR `done_key`; with `attempt_key`, fail on the first attempt."""

    done_key: str
    attempt_key: str | None = None


@dataclass(frozen=True)
class WorkerSettings:
    redis_url: str
    run_id: str

    @property
    def keys(self) -> RunKeys:
        return RunKeys(self.run_id)


def worker_settings() -> WorkerSettings | None:
    """The run's settings inside a worker subprocess; None in the producer process."""
    url = os.environ.get(ENV_REDIS_URL)
    run_id = os.environ.get(ENV_RUN_ID)
    if not url or not run_id:
        return None
    return WorkerSettings(url, run_id)


# --- job bodies ---------------------------------------------------------------------------


class FirstAttemptError(RuntimeError):
    """Raised by the retry workload's job on its first attempt."""


@functools.cache
def worker_redis() -> redis.Redis:
    # One client per process; redis-py's pool notices a fork and reconnects in the child.
    return redis.Redis.from_url(os.environ[ENV_REDIS_URL])


def run_job(client: redis.Redis, done_key: str, attempt_key: str | None = None) -> None:
    if attempt_key is not None and client.incr(attempt_key) == 1:
        raise FirstAttemptError(attempt_key)
    client.incr(done_key)


async def run_job_async(
    client: redis.asyncio.Redis, done_key: str, attempt_key: str | None = None
) -> None:
    if attempt_key is not None and await client.incr(attempt_key) == 1:
        raise FirstAttemptError(attempt_key)
    await client.incr(done_key)


# --- measuring ----------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (numpy's default method), p in [0, 100]."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Progress:
    first_at: float | None  # perf_counter() when the counter was first seen above zero
    done_at: float  # perf_counter() when it was first seen at the target
    count: int


class WorkerDiedError(RuntimeError):
    pass


def wait_for_count(
    client: redis.Redis,
    key: str,
    target: int,
    *,
    timeout_s: float,
    poll_s: float,
    alive: Callable[[], bool] | None = None,
) -> Progress:
    """Poll `key` until it reaches `target`. The poll interval bounds the timing resolution,
    and polling costs CPU the workers share on a small machine: keep it short, not zero."""
    deadline = time.perf_counter() + timeout_s
    first_at: float | None = None
    while True:
        count = int(client.get(key) or 0)
        now = time.perf_counter()
        if count and first_at is None:
            first_at = now
        if count >= target:
            return Progress(first_at, now, count)
        if now > deadline:
            raise TimeoutError(f"{key} reached {count}/{target} in {timeout_s:.0f}s")
        if alive is not None and not alive():
            raise WorkerDiedError(f"worker exited with {key} at {count}/{target}")
        time.sleep(poll_s)


def delete_run_keys(client: redis.Redis, run_id: str) -> int:
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"*{run_id}*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            deleted += int(client.unlink(*batch))
            batch.clear()
    if batch:
        deleted += int(client.unlink(*batch))
    return deleted


# --- worker subprocess --------------------------------------------------------------------


class WorkerProcess:
    """A peer's worker started as a real subprocess in its own process group, so stopping
    it also reaches the pool children it forks."""

    def __init__(self, argv: Sequence[str], settings: WorkerSettings, *, stop_grace_s: float = 15):
        self.argv = list(argv)
        self.settings = settings
        self.stop_grace_s = stop_grace_s
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the worker
            prefix="actorq-bench-worker-", suffix=".log", delete=False
        )
        self.log_path = Path(self._log.name)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        env[ENV_REDIS_URL] = self.settings.redis_url
        env[ENV_RUN_ID] = self.settings.run_id
        self._proc = subprocess.Popen(
            self.argv,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(self.stop_grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # Pool children may outlive a parent that exited on SIGTERM; they share its group.
        self._signal_group(proc.pid, signal.SIGKILL)
        self._log.close()

    def log_tail(self, chars: int = 3000) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace")
        return text[-chars:]

    def remove_log(self) -> None:
        self.log_path.unlink(missing_ok=True)

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

    def __enter__(self) -> WorkerProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        self.stop()
        if exc is not None:
            exc.add_note(f"worker log tail ({self.log_path}):\n{self.log_tail()}")
        else:
            self.remove_log()
