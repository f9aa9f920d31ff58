"""The `actorq` command line: run a worker, and talk to a running one over HTTP.

`worker` and `serve` run a user's ActorSystem in this process (`runner.py`),
on a file journal in ``$ACTORQ_STATE_DIR`` (default ``./actorq-state``)
unless `--journal` says otherwise;
`submit`, `status`, `jobs`, `dlq`, `queues` and `cron` are clients of a running system's
HTTP API (`--url`, default http://127.0.0.1:8000 or $ACTORQ_URL; token from
--token or $ACTORQ_API_TOKEN). `demo` runs a self-contained demonstration;
`simulate` runs a fault-injection scenario in virtual time (docs/simulation.md).

Exit codes, stable for scripts:

    0    ok
    1    the job failed or was cancelled, or there is no such job or schedule
    2    usage error: bad arguments or options, or the server refused the
         request as invalid (400, 401, 413, 422)
    3    cannot reach the server, or the system is not running or is at its
         pending-jobs bound (503); worker: the system could not start or failed
    4    submit --wait: the job had not finished when the wait ran out
    130  worker: stopped at once by a second Ctrl-C
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import click
from rich.console import Console
from rich.table import Table

from actorq.errors import InvalidJournalURL
from actorq.job import JobStatus
from actorq.paging import DEFAULT_LIMIT, MAX_LIMIT
from actorq.persistence.url import parse_journal_url, redact
from actorq.service.client import EXIT_FAILED, EXIT_USAGE, Client, CommandFailed

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES = """\b
Exit codes:
  0    ok
  1    the job failed or was cancelled, or there is no such job
  2    usage error, or the server refused the request as invalid
  3    cannot reach the server / system not running or overloaded
  4    submit --wait: the job had not finished in time
  130  worker: stopped at once by a second Ctrl-C
"""
EXIT_TIMEOUT = 4
TERMINAL = {"succeeded", "dead", "cancelled"}
_KINDS: dict[type, str] = {list: "array", dict: "object"}

# soft_wrap: a message is one line however wide, so that a log collector or a
# terminal wraps it, not rich at 80 columns when stderr is not a terminal.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(code: int, message: str) -> click.exceptions.Exit:
    err.print(f"[red]error:[/red] {message}", markup=True)
    return click.exceptions.Exit(code)


def client_command(fn: F) -> F:
    """Add --url and --token, and turn CommandFailed into its exit code."""

    @click.option(
        "--url",
        envvar="ACTORQ_URL",
        default="http://127.0.0.1:8000",
        show_default=True,
        help="The server's base URL [env: ACTORQ_URL].",
    )
    @click.option(
        "--token", envvar="ACTORQ_API_TOKEN", help="Bearer token [env: ACTORQ_API_TOKEN]."
    )
    @functools.wraps(fn)
    def wrapper(url: str, token: str | None, **kwargs: Any) -> Any:
        _check_url(url)
        try:
            with Client(url, token) as client:
                return fn(client, **kwargs)
        except CommandFailed as exc:
            raise _fail(exc.code, exc.message) from None

    return wrapper  # type: ignore[return-value]


def _check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (reading it validates it)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(
            f"expected http(s)://HOST[:PORT], not {redact(url)!r}", param_hint="--url"
        )


def _json_value(text: str, what: str, kind: type) -> Any:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=what) from None
    if not isinstance(value, kind):
        raise click.BadParameter(f"must be a JSON {_KINDS[kind]}", param_hint=what)
    return value


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES,
)
@click.version_option(package_name="actorq")
def main() -> None:
    """actorq: an actor-model job system on pykka."""


def _check_journal(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        try:
            parse_journal_url(value)
        except InvalidJournalURL as exc:
            raise click.BadParameter(str(exc)) from None
    return value


@main.command(epilog=EXIT_CODES)
@click.option("--jobs", default=300, show_default=True, type=click.IntRange(min=10))
@click.option(
    "--journal",
    default=None,
    callback=_check_journal,
    help="memory, a directory or a URL [default: a new temporary directory (file journal)].",
)
def demo(jobs: int, journal: str | None) -> None:
    """Run an embedded workload: retries, dead letters, delays, a timeout; then a summary."""
    from actorq.demo import run_demo

    run_demo(jobs=jobs, journal=journal)


@main.command(epilog=EXIT_CODES)
@click.argument("target", metavar="MODULE:SCENARIO")
@click.option("--seed", default=0, show_default=True, type=int, help="The run's seed.")
@click.option("--until", default="6h", show_default=True, help="Virtual time: 90s, 15m, 6h, 2d.")
@click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Report + charts."
)
@click.option("--journal", default="memory", type=click.Choice(["memory", "file"]))
@click.option("--variant", help="Run this one of the scenario's variants.")
@click.option("--compare", is_flag=True, help="Run every variant side by side.")
def simulate(
    target: str,
    seed: int,
    until: str,
    out_dir: Path | None,
    journal: str,
    variant: str | None,
    compare: bool,
) -> None:
    """Run a fault-injection scenario in virtual time; exit 1 if an invariant broke."""
    from actorq.errors import SimulationError
    from actorq.sim import command, parse_duration

    try:
        seconds = parse_duration(until)
        variants = command.variants_of(target) if compare else (variant,)
        reports = [
            command.run_scenario(
                target, seed=seed, until=seconds, journal=journal, variant=v, until_text=until
            )
            for v in variants
        ]
    except (SimulationError, ValueError) as exc:
        raise _fail(EXIT_USAGE, str(exc)) from None
    command.print_reports(reports, out, out_dir)
    if not all(r.ok for r in reports):
        raise click.exceptions.Exit(EXIT_FAILED)


def _worker_options(fn: F) -> F:
    options = [
        click.argument("target", metavar="MODULE:ATTR"),
        click.option(
            "--journal",
            envvar="ACTORQ_JOURNAL",
            callback=_check_journal,
            help="memory, a directory, file:///dir or redis://... [env: ACTORQ_JOURNAL;"
            " default: a file journal in $ACTORQ_STATE_DIR, else ./actorq-state].",
        ),
        click.option("--workers", type=click.IntRange(min=1), help="Override the worker count."),
        click.option(
            "--pool",
            type=click.Choice(["threads", "processes"]),
            help="Run jobs in the worker threads or in one child process per worker"
            " [default: the system's own, threads unless it says otherwise].",
        ),
        click.option(
            "--max-jobs-per-child",
            type=click.IntRange(min=1),
            help="With --pool processes: replace a worker's child after this many jobs.",
        ),
        click.option("--queues", help="Override the queues, in order: a,b,c."),
        click.option(
            "--token", envvar="ACTORQ_API_TOKEN", help="API token [env: ACTORQ_API_TOKEN]."
        ),
        click.option(
            "--grace",
            default=30.0,
            show_default=True,
            type=click.FloatRange(min=0),
            help="Seconds running jobs may take to finish on SIGTERM/SIGINT.",
        ),
        click.option("--metrics/--no-metrics", default=True, help="Prometheus metrics (on)."),
        click.option("--access-log", is_flag=True, help="Log every HTTP request."),
        click.option(
            "--public-docs",
            is_flag=True,
            envvar="ACTORQ_PUBLIC_DOCS",
            help="Serve /openapi.json and /docs without the token (they need it by default).",
        ),
        click.option(
            "--log-level",
            default="info",
            show_default=True,
            type=click.Choice(["debug", "info", "warning", "error"]),
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@main.command(epilog=EXIT_CODES)
@_worker_options
@click.option("--http", "http", metavar="HOST:PORT", help="Also serve the HTTP API here.")
def worker(**options: Any) -> None:
    """Run the ActorSystem MODULE:ATTR until SIGTERM or SIGINT.

    Options override the system's own settings before it starts. The first
    SIGTERM/SIGINT lets running jobs finish for up to --grace seconds; a
    second SIGINT exits at once.
    """
    _worker(**options)


@main.command(epilog=EXIT_CODES)
@_worker_options
@click.option("--http", "http", metavar="HOST:PORT", required=True, help="Serve the HTTP API here.")
def serve(**options: Any) -> None:
    """Run the ActorSystem MODULE:ATTR with its HTTP API (worker with --http required)."""
    _worker(**options)


def _worker(
    target: str,
    journal: str | None,
    workers: int | None,
    pool: str | None,
    max_jobs_per_child: int | None,
    queues: str | None,
    http: str | None,
    token: str | None,
    grace: float,
    metrics: bool,
    access_log: bool,
    public_docs: bool,
    log_level: str,
) -> None:
    import logging

    from rich.logging import RichHandler

    from actorq.service.runner import (
        LoadError,
        RedactingFormatter,
        WorkerOptions,
        configure,
        load_system,
        run_worker,
    )

    if err.is_terminal:
        handler: logging.Handler = RichHandler(console=err, show_path=False)
        plain = logging.Formatter("%(message)s")
    else:  # a log file or collector: one plain line per record, not a wrapped table
        handler = logging.StreamHandler(sys.stderr)
        plain = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(RedactingFormatter(plain, secrets=(token or "",)))
    logging.basicConfig(level=log_level.upper(), handlers=[handler])
    options = WorkerOptions(
        journal=journal,
        workers=workers,
        pool=pool,
        max_jobs_per_child=max_jobs_per_child,
        queues=_parse_queues(queues) if queues is not None else None,
        http=_parse_address(http) if http is not None else None,
        token=token or None,
        grace=grace,
        metrics=metrics,
        access_log=access_log,
        public_docs=public_docs,
    )
    try:
        system = load_system(target)
        configure(system, options)
    except LoadError as exc:
        raise click.BadParameter(str(exc), param_hint="MODULE:ATTR") from None
    raise click.exceptions.Exit(run_worker(system, options))


def _parse_queues(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(","))
    if not all(names) or len(set(names)) != len(names):
        raise click.BadParameter("a comma-separated list of distinct names", param_hint="--queues")
    return names


def _parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"expected HOST:PORT, not {text!r}", param_hint="--http")
    return host.removeprefix("[").removesuffix("]"), int(port)


@main.command(epilog=EXIT_CODES)
@click.argument("task")
@click.argument("args_json", metavar="[ARGS_JSON]", default="[]")
@click.option("--kwargs", "kwargs_json", default="{}", help="Keyword arguments, a JSON object.")
@click.option("--priority", type=int, help="-100..100; higher runs first.")
@click.option("--delay", type=float, help="Seconds before the job becomes ready.")
@click.option("--queue", help="A declared queue.")
@click.option("--idempotency-key", help="Submitting the same key again returns the first job.")
@click.option("--timeout", type=float, help="Seconds an attempt may run.")
@click.option("--wait", type=click.FloatRange(min=0), help="Wait up to SECONDS for the result.")
@click.option("--json", "as_json", is_flag=True, help="Print the job record as JSON.")
@client_command
def submit(
    client: Client,
    task: str,
    args_json: str,
    kwargs_json: str,
    wait: float | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Submit a job running TASK with ARGS_JSON (a JSON array); prints its id.

    With --wait, waits for the outcome: prints the result as JSON and exits
    0 if it succeeded, 1 if it died or was cancelled, 4 if time ran out.
    """
    body: dict[str, Any] = {
        "task": task,
        "args": _json_value(args_json, "ARGS_JSON", list),
        "kwargs": _json_value(kwargs_json, "--kwargs", dict),
        **{k: v for k, v in options.items() if v is not None},
    }
    job = client.call("POST", "/jobs", json=body)
    if wait is None:
        if as_json:
            _print_json(job)
        else:
            click.echo(job["id"])
        return
    job = _wait_for(client, job, wait)
    if as_json:
        _print_json(job)
    _finish(job)


def _wait_for(client: Client, job: dict[str, Any], seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    interval = 0.02
    with err.status(f"waiting for job {job['id']}") if err.is_terminal else _nothing():
        while job["status"] not in TERMINAL:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _fail(EXIT_TIMEOUT, f"job {job['id']} is still {job['status']}")
            time.sleep(min(interval, left))
            interval = min(interval * 2, 0.5)
            job = client.call("GET", f"/jobs/{job['id']}")
    return job


def _finish(job: dict[str, Any]) -> None:
    if job["status"] == "succeeded":
        click.echo(json.dumps(job["result"]))
        return
    reason = f": {job['error']}" if job.get("error") else ""
    raise _fail(EXIT_FAILED, f"job {job['id']} ended {job['status']}{reason}")


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


@main.command(epilog=EXIT_CODES)
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the job record as JSON.")
@click.option("--history", is_flag=True, help="Also list every attempt kept, oldest first.")
@client_command
def status(client: Client, job_id: str, as_json: bool, history: bool) -> None:
    """Show a job; exits 0 if it exists (whatever its status), 1 if not."""
    job = client.call("GET", f"/jobs/{job_id}")
    if as_json:
        _print_json(job)
        return
    attempts = job.pop("history", None) or []
    trace = job.pop("traceback", None)
    table = Table(show_header=False, box=None)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    now = time.time()
    for key, value in job.items():
        cell = _when(value, now) if key in _TIMES and value is not None else _cell(value)
        table.add_row(f"[bold]{key}[/bold]", cell)
    if job.get("started_at") is not None and job.get("finished_at") is not None:
        table.add_row("[bold]ran for[/bold]", _duration(job["finished_at"] - job["started_at"]))
    out.print(table)
    if history:
        _print_history(attempts, now)
    if trace:
        out.print("[bold]traceback[/bold] (last failure)")
        out.print(trace, markup=False, highlight=False, end="")


def _print_history(attempts: list[dict[str, Any]], now: float) -> None:
    table = Table(title="attempts", title_justify="left")
    for column in ("#", "started", "outcome", "ran", "worker", "node", "retry in", "error"):
        table.add_column(column, overflow="fold")
    for a in attempts:
        table.add_row(
            str(a["attempt"]),
            _when(a["started_at"], now) if a["started_at"] is not None else "-",
            a["outcome"],
            _duration(a["ran"]) if a["ran"] is not None else "-",
            _cell(a["worker"]),
            _cell(a["node"]),
            _duration(a["retry_delay"]) if a["retry_delay"] is not None else "-",
            _cell(a["error"]),
        )
    out.print(table)


_TIMES = ("created_at", "run_at", "started_at", "finished_at")


def _when(epoch: float, now: float) -> str:
    """ISO 8601 in the local zone, with how long ago (or how soon) it is."""
    stamp = datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")
    delta = now - epoch
    relative = f"{_duration(delta)} ago" if delta >= 0 else f"in {_duration(-delta)}"
    return f"{stamp} ({relative})"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return json.dumps(value)


@main.group(epilog=EXIT_CODES)
def dlq() -> None:
    """Inspect, retry and purge dead jobs."""


def _paging(fn: F) -> F:
    fn = click.option(
        "--after", metavar="JOB_ID", help="Start after this job (the last id of a page)."
    )(fn)
    return click.option(
        "--limit",
        type=click.IntRange(1, MAX_LIMIT),
        default=DEFAULT_LIMIT,
        show_default=True,
        help="Records per page.",
    )(fn)


def _page_query(limit: int, after: str | None, **filters: str | None) -> str:
    params = {k: v for k, v in {**filters, "after": after}.items() if v is not None}
    return urlencode({**params, "limit": limit})


def _print_jobs(jobs: list[dict[str, Any]], title: str, limit: int, *, status: bool) -> None:
    table = Table(title=title)
    table.add_column("id", no_wrap=True)  # ids are copied into the next command: never wrapped
    table.add_column("task", no_wrap=True)
    if status:
        table.add_column("status")
    table.add_column("queue")
    table.add_column("attempts", justify="right")
    table.add_column("error", overflow="fold")
    for job in jobs:
        cells = [job["id"], job["task"], *([job["status"]] if status else [])]
        table.add_row(*cells, job["queue"], str(job["attempts"]), job["error"] or "")
    out.print(table)
    if len(jobs) == limit:
        err.print(f"more: --after {jobs[-1]['id']}", markup=False)


@main.command(epilog=EXIT_CODES)
@click.option("--status", type=click.Choice([s.value for s in JobStatus]), help="Only these.")
@click.option("--task", help="Only jobs of this task.")
@click.option("--queue", help="Only jobs of this queue.")
@_paging
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
@client_command
def jobs(
    client: Client,
    status: str | None,
    task: str | None,
    queue: str | None,
    limit: int,
    after: str | None,
    as_json: bool,
) -> None:
    """List a page of jobs in submission order; the next page with --after."""
    query = _page_query(limit, after, status=status, task=task, queue=queue)
    page = client.call("GET", f"/jobs?{query}")
    if as_json:
        _print_json(page)
        return
    _print_jobs(page, f"{len(page)} jobs", limit, status=True)


@dlq.command("list", epilog=EXIT_CODES)
@_paging
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
@client_command
def dlq_list(client: Client, limit: int, after: str | None, as_json: bool) -> None:
    """List a page of dead jobs, oldest first; the next page with --after."""
    page = client.call("GET", f"/dlq?{_page_query(limit, after)}")
    if as_json:
        _print_json(page)
        return
    _print_jobs(page, f"{len(page)} dead jobs", limit, status=False)


@dlq.command("retry", epilog=EXIT_CODES)
@click.argument("job_id")
@client_command
def dlq_retry(client: Client, job_id: str) -> None:
    """Run dead job JOB_ID again under its id, attempts reset."""
    job = client.call("POST", f"/dlq/{job_id}/retry")
    click.echo(job["id"])


@dlq.command("purge", epilog=EXIT_CODES)
@click.argument("job_id", required=False)
@click.option("--yes", is_flag=True, help="Do not ask before purging every dead job.")
@client_command
def dlq_purge(client: Client, job_id: str | None, yes: bool) -> None:
    """Forget dead job JOB_ID, or every dead job; prints how many were removed."""
    if job_id is None and not yes:
        if not sys.stdin.isatty():
            raise _fail(EXIT_USAGE, "purging every dead job needs --yes when not interactive")
        click.confirm("Forget every dead job?", abort=True)
    path = "/dlq" if job_id is None else f"/dlq/{job_id}"
    click.echo(client.call("DELETE", path)["purged"])


@main.command(epilog=EXIT_CODES)
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@client_command
def queues(client: Client, as_json: bool) -> None:
    """Show each queue's depth and finishing rate, and the jobs in flight."""
    info = client.call("GET", "/queues")
    if as_json:
        _print_json(info)
        return
    window = info["rate_window_seconds"]
    table = Table("queue", "depth", f"finished/s ({window}s)")
    for queue in info["queues"]:
        rate = "-" if queue["rate"] is None else f"{queue['rate']:.2f}"
        table.add_row(queue["name"], str(queue["depth"]), rate)
    table.caption = (
        f"in flight {info['in_flight']} · active {info['active']} · "
        f"dead letters {info['dead_letters']}"
    )
    out.print(table)


@main.group(epilog=EXIT_CODES)
def cron() -> None:
    """List, pause, resume, trigger and delete recurring schedules."""


@cron.command("list", epilog=EXIT_CODES)
@click.option("--json", "as_json", is_flag=True, help="Print the schedules as JSON.")
@client_command
def cron_list(client: Client, as_json: bool) -> None:
    """List schedules, each with its next 5 fire times in its own zone."""
    schedules = client.call("GET", "/schedules")
    if as_json:
        _print_json(schedules)
        return
    table = Table(title=f"{len(schedules)} schedules")
    table.add_column("name", no_wrap=True)
    table.add_column("cron", no_wrap=True)
    table.add_column("zone", no_wrap=True)
    table.add_column("task")
    table.add_column("state")
    table.add_column("fired/missed/skipped", justify="right")
    table.add_column("next fires (in the zone)", no_wrap=True)
    for item in schedules:
        counts = f"{item['fired']}/{item['missed']}/{item['skipped']}"
        state = "paused" if item["paused"] else "active"
        nexts = "\n".join(item["next_fires"]) or "-"
        table.add_row(item["name"], item["cron"], item["tz"], item["task"], state, counts, nexts)
    out.print(table)


def _schedule_command(action: str, help_text: str) -> None:
    @cron.command(action, help=help_text, epilog=EXIT_CODES)
    @click.argument("name")
    @client_command
    def command(client: Client, name: str) -> None:
        path = f"/schedules/{quote(name, safe='')}"
        if action == "delete":
            client.call("DELETE", path)
            click.echo(name)
        elif action == "trigger":
            click.echo(client.call("POST", f"{path}/trigger")["id"])
        else:
            item = client.call("POST", f"{path}/{action}")
            click.echo(f"{item['name']} {'paused' if item['paused'] else 'active'}")


_schedule_command("pause", "Stop schedule NAME firing (fires while paused are not caught up).")
_schedule_command("resume", "Let schedule NAME fire again from now on.")
_schedule_command("trigger", "Fire schedule NAME now; prints the job id.")
_schedule_command("delete", "Forget schedule NAME (jobs it submitted run on).")


if __name__ == "__main__":
    main()
