"""Run a user's ActorSystem as a long-lived worker process, until a signal stops it.

Why this is not inside `ActorSystem`: an embedded system belongs to its
host program, which owns signals and the process's exit; a worker process
is a host program whose only job is the system, and that policy (signal
handling, exit codes, option overrides) lives here, next to the CLI.

The journal: `--journal` (or ``ACTORQ_JOURNAL``) if given; else the journal
the system was built with, unless that is the in-memory one; else a file
journal in the state directory (``ACTORQ_STATE_DIR``, default
``./actorq-state``). A worker is a deployment, and a deployment that loses its
accepted jobs on every restart must ask for it (``--journal memory``). The
journal is opened and its logs' ends read before any actor starts, so a journal
that cannot be recovered (`JournalCorrupted`) fails once, with one message,
instead of crashing the Dispatcher through its supervisor's restarts; and a
process restarted after a crash waits here for a Redis owner lease to run out.

On a Redis journal a worker is a node of the namespace's cluster: any number
of them can run; one leads (it holds the owner lease and runs the Dispatcher,
Scheduler and DeadLetter, and answers `actorq.Client` requests), the others
stand by and take over once the leader's lease runs out. A leader that loses
its lease (a pause past it, a partition) grants nothing more, steps down and
stands by again; its journal writes are refused by the lease's fencing check.

Shutdown: the first SIGTERM or SIGINT stops accepting and lets running jobs
finish for up to the grace period (`system.stop(timeout=grace)`); a second
SIGINT exits at once with 130 (jobs cut short run again after a restart
under at-least-once delivery; the journal's torn tail is cut at recovery).
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from actorq.errors import InvalidJournalURL, JournalError, JournalUnavailable
from actorq.persistence.journal import Journal, open_journal
from actorq.persistence.url import parse_journal_url, redact_text
from actorq.system import ActorSystem

if TYPE_CHECKING:
    from actorq.service.http_server import Server

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 2, 3, 130

STATE_DIR_ENV = "ACTORQ_STATE_DIR"
DEFAULT_STATE_DIR = "actorq-state"
# The persistent actors whose logs a worker reads before it starts them.
PERSISTENCE_IDS = ("dispatcher", "deadletter")


class LoadError(Exception):
    """MODULE:ATTR does not name an ActorSystem that can be configured."""


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    journal: str | None = None
    workers: int | None = None
    pool: str | None = None
    max_jobs_per_child: int | None = None
    queues: tuple[str, ...] | None = None
    http: tuple[str, int] | None = None
    token: str | None = field(default=None, repr=False)
    grace: float = 30.0
    metrics: bool = True
    access_log: bool = False
    public_docs: bool = False


def state_dir() -> Path:
    """Where a worker keeps its file journal unless told otherwise."""
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR).absolute()


def worker_journal(system: ActorSystem, override: str | None) -> str | Journal:
    """The journal a worker runs `system` on (see the module docstring for the order)."""
    if override is not None:
        return override
    spec = system.journal_spec
    if not isinstance(spec, str) or spec != "memory":
        return spec
    return str(state_dir())


def describe_journal(spec: str | Journal) -> str:
    if not isinstance(spec, str):
        return repr(spec)
    kind = parse_journal_url(spec).kind
    if kind == "memory":
        return "memory (jobs do not survive a restart)"
    if kind == "file":
        return f"file journal in {spec}"
    return redact_text(spec)


class RedactingFormatter(logging.Formatter):
    """Formats with `inner`, then masks URL passwords and the given secrets."""

    def __init__(self, inner: logging.Formatter, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self._inner = inner
        self._secrets = tuple(s for s in secrets if s)

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(self._inner.format(record), self._secrets)


def load_system(target: str) -> ActorSystem:
    """Import MODULE and return its ATTR, which must be an ActorSystem not yet started.

    The module is the user's own code named on the command line (like
    uvicorn's "app:module"); the working directory is importable, as a
    user expects when naming a module next to them.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise LoadError(f"expected MODULE:ATTR (e.g. myapp.jobs:system), not {target!r}")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise LoadError(f"cannot import {module_name!r}: {exc}") from exc
    try:
        system = getattr(module, attr)
    except AttributeError:
        raise LoadError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(system, ActorSystem):
        raise LoadError(f"{target} is a {type(system).__name__}, not an ActorSystem")
    if system.running:
        raise LoadError(f"{target} is started already; let the worker start it")
    return system


def configure(system: ActorSystem, options: WorkerOptions) -> None:
    """Apply command-line overrides to a system that is not started yet."""
    if options.workers is not None and options.workers < 1:
        raise LoadError("--workers must be at least 1")
    system.configure(workers=options.workers, queues=options.queues)
    if options.pool is not None or options.max_jobs_per_child is not None:
        try:
            system.configure(
                pool=options.pool,  # type: ignore[arg-type]  # the CLI offers only the two
                max_jobs_per_child=options.max_jobs_per_child,
            )
        except ValueError as exc:
            raise LoadError(str(exc)) from None
    if system.pool == "processes":
        from actorq.actors.pool_processes import location
        from actorq.errors import TaskNotImportable

        for task in system.tasks.values():
            try:
                location(task.name, task.fn)
            except TaskNotImportable as exc:
                raise LoadError(str(exc)) from None
    if options.queues is not None:
        for task in system.tasks.values():
            if task.options.queue is not None and task.options.queue not in options.queues:
                logger.warning(
                    "task %s defaults to queue %r, which this worker does not declare: "
                    "its submissions will be refused",
                    task.name,
                    task.options.queue,
                )
    if options.metrics:
        from actorq.service.metrics import PrometheusObserver

        if system.observer is None:
            system.configure(observer=PrometheusObserver())
        elif not isinstance(system.observer, PrometheusObserver):
            logger.info("the system has its own observer; Prometheus metrics stay off")


class StopSignals:
    """SIGTERM/SIGINT set `requested`; a second SIGINT exits the process at once."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self._previous = {
            sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)
        }

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.requested.is_set():
            self.requested.set()
            return
        if signum == signal.SIGINT:
            logger.warning("second interrupt: exiting at once; running jobs are cut short")
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)
        logger.info("already stopping (send SIGINT again to exit at once)")

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def open_worker_journal(spec: str | Journal) -> Journal:
    """Open the journal and read where each persistent actor's log ends.

    Reading the ends is what the actors would do first; here a failure is one
    error rather than a crash loop. For the file journal it checks every
    record's checksum, and the actors reuse the scan.
    """
    journal = open_journal(spec)
    try:
        for persistence_id in PERSISTENCE_IDS:
            journal.last_seq(persistence_id)
    except BaseException:
        journal.close()
        raise
    return journal


def run_worker(system: ActorSystem, options: WorkerOptions) -> int:
    """Start `system` (and its HTTP API), block until a signal, stop; returns the exit code."""
    spec = worker_journal(system, options.journal)
    if options.journal is None and system.journal_spec == "memory":
        logger.info(
            "the system names no durable journal; as a worker it keeps its jobs in %s"
            " (--journal memory keeps them in memory, lost at every restart)",
            spec,
        )
    logger.info("journal: %s", describe_journal(spec))
    if isinstance(spec, str) and parse_journal_url(spec).kind == "redis":
        from actorq.service.node import run_node

        return run_node(system, options, spec)
    try:
        journal = open_worker_journal(spec)
    except InvalidJournalURL as exc:
        logger.error("%s", exc)
        return EXIT_USAGE
    except (JournalError, OSError) as exc:
        logger.error("the journal cannot be opened: %s", exc)
        return EXIT_UNAVAILABLE
    system.configure(journal=journal)
    # Installed only now: while a restarted worker waits out a dead owner's
    # lease, SIGTERM and Ctrl-C end it at once, as they do any process.
    signals = StopSignals()
    try:
        return _run(system, options, signals, spec, journal)
    finally:
        signals.restore()


def wait_recovered(system: ActorSystem, signals: StopSignals) -> None:
    """Return once the Dispatcher answers, which it does once it has recovered.

    "running" in the log then means running. A long replay is waited for,
    and so is a journal backend that is away (the actors wait for it too).
    """
    import pykka

    noted: set[str] = set()
    while not signals.requested.is_set():
        if system.failure is not None:
            raise system.failure
        try:
            system.stats()
            return
        except pykka.Timeout:
            reason, detail = "still recovering the journal", ""
        except JournalUnavailable as exc:
            reason, detail = "waiting for the journal to answer", f": {exc}"
            signals.requested.wait(0.5)
        if reason not in noted:  # once each, not once a poll
            noted.add(reason)
            logger.info("%s%s", reason, detail)


def _run(
    system: ActorSystem,
    options: WorkerOptions,
    signals: StopSignals,
    spec: str | Journal,
    journal: Journal,
) -> int:
    try:
        system.start()
    except Exception as exc:
        logger.error("the actor system could not start: %s", exc)
        journal.close()
        return EXIT_UNAVAILABLE
    try:
        wait_recovered(system, signals)
    except Exception as exc:
        logger.error("the actor system did not come up: %s", system.failure or exc)
        system.stop(timeout=0)
        return EXIT_UNAVAILABLE
    server: Server | None = None
    if options.http is not None:
        from actorq.service.http import serve

        host, port = options.http
        try:
            server = serve(
                system,
                host,
                port,
                options.token,
                access_log=options.access_log,
                public_docs=options.public_docs,
            )
        except (OSError, TimeoutError) as exc:
            logger.error("%s", exc)
            system.stop(timeout=options.grace)
            return EXIT_UNAVAILABLE
    logger.info(
        "actorq worker running: %d workers, queues %s, journal %s%s",
        system.worker_count,
        ",".join(system.queues),
        describe_journal(spec),
        f", HTTP API on {server.url}" if server is not None else "",
    )
    if system.pool == "processes":
        limit = system.max_jobs_per_child
        logger.info(
            "jobs run in %d child processes, one per worker%s",
            system.worker_count,
            f", each replaced after {limit} jobs" if limit else "",
        )
    code = EXIT_OK
    while not signals.requested.wait(0.5):
        if system.failure is not None:
            logger.error("the actor system failed: %s", system.failure)
            code = EXIT_UNAVAILABLE
            break
    logger.info("stopping: running jobs may finish for up to %.1fs", options.grace)
    system.stop(timeout=options.grace)
    if server is not None:
        server.stop()
    logger.info("stopped")
    return code
