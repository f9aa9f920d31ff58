"""No-op jobs through a Client into a 2-node cluster, and failover time against the lease.

    python -m bench.cluster [--jobs 20000] [--singles 2000] [--leases 1,2,5] [--runs 2]

One private redis-server (no persistence), nodes started as
``actorq worker bench.cluster_app:system --journal redis://...`` processes,
the Client in this process. Figures:

- enqueue, one ``submit()`` at a time (each waits for the leader's durable
  answer), jobs/s;
- enqueue with ``submit_many`` in batches of 500, jobs/s, and end to end
  (first submission to the last job succeeded, polled with ``stats()``), jobs/s;
- failover: SIGKILL the leader, then submit one job and wait for its
  result: seconds from the kill to that result, per lease length.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from actorq import Client
from bench.peers.redis_server import redis_server

ROOT = Path(__file__).resolve().parent.parent


class Node:
    def __init__(self, journal: str, log: Path) -> None:
        self.log = log
        actorq = Path(sys.executable).parent / "actorq"
        command = [str(actorq)] if actorq.exists() else [sys.executable, "-m", "actorq"]
        command += ["worker", "bench.cluster_app:system", "--journal", journal, "--no-metrics"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    @property
    def leading(self) -> bool:
        text = self.log.read_text(errors="replace")
        return text.rfind("running: leader") > text.rfind("stepping down")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


def cluster(
    redis_url: str, directory: Path, lease: float, nodes: int = 2
) -> tuple[str, list[Node]]:
    url = f"{redis_url}?namespace=b-{uuid.uuid4().hex[:8]}&lease={lease:g}"
    started = [Node(url, directory / f"{uuid.uuid4().hex[:6]}.log") for _ in range(nodes)]
    deadline = time.monotonic() + 60
    while not any(n.leading for n in started):
        if time.monotonic() > deadline:
            raise RuntimeError("no node took the lead within 60 s")
        time.sleep(0.02)
    return url, started


def throughput(redis_url: str, directory: Path, jobs: int, singles: int) -> dict[str, float]:
    url, nodes = cluster(redis_url, directory, lease=10)
    try:
        with Client(url) as client:
            client.submit("noop").result(timeout=30)  # warm: both nodes joined
            started = time.perf_counter()
            for _ in range(singles):
                client.submit("noop")
            single_rate = singles / (time.perf_counter() - started)
            while client.stats()["active"]:
                time.sleep(0.01)
            base = client.stats()["statuses"]["succeeded"]
            started = time.perf_counter()
            for first in range(0, jobs, 500):
                client.submit_many("noop", [()] * min(500, jobs - first))
            enqueued = time.perf_counter() - started
            while client.stats()["statuses"]["succeeded"] < base + jobs:
                time.sleep(0.005)
            total = time.perf_counter() - started
        return {
            "enqueue, submit() one at a time (jobs/s)": single_rate,
            "enqueue, submit_many by 500 (jobs/s)": jobs / enqueued,
            "end to end, submit_many by 500 (jobs/s)": jobs / total,
        }
    finally:
        for node in nodes:
            node.kill()


def failover(redis_url: str, directory: Path, lease: float) -> float:
    url, nodes = cluster(redis_url, directory, lease=lease)
    try:
        with Client(url) as client:
            client.submit("noop").result(timeout=30)
            leader = next(n for n in nodes if n.leading)
            killed = time.perf_counter()
            leader.kill()
            client.submit("noop").result(timeout=60)
            return time.perf_counter() - killed
    finally:
        for node in nodes:
            node.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--singles", type=int, default=2_000)
    parser.add_argument("--leases", default="1,2,5")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="actorq-bench-cluster-"))
    try:
        with redis_server() as redis_url:
            runs = [
                throughput(redis_url, directory, args.jobs, args.singles) for _ in range(args.runs)
            ]
            print("| figure | median of runs |\n|---|---:|")
            for name in runs[0]:
                print(f"| {name} | {statistics.median(r[name] for r in runs):,.0f} |")
            print("\n| lease (s) | SIGKILL to first job done by the new leader (s), per run |")
            print("|---:|---|")
            for lease in (float(x) for x in args.leases.split(",")):
                seconds = [failover(redis_url, directory, lease) for _ in range(args.runs)]
                print(f"| {lease:g} | {', '.join(f'{s:.2f}' for s in seconds)} |")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
