"""Cluster nodes as real processes: `actorq worker tests.cluster_app:system` on a Redis journal."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import wait_until
from tests.test_cli import ROOT, actorq_command


def node_env(ledger: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTORQ_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if ledger is not None:
        env["ACTORQ_TEST_LEDGER"] = str(ledger)
    return env


@dataclass
class Node:
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    @property
    def leading(self) -> bool:
        text = self.text()
        return text.rfind("actorq worker running: leader") > text.rfind("stepping down")

    def token(self) -> str:
        found = re.findall(r"leading namespace '[^']*' as (\w+)", self.text())
        assert found, self.text()
        return str(found[-1])

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def start_node(directory: Path, journal: str, *options: str, ledger: Path | None = None) -> Node:
    """Start a node process; it stands by or leads (wait for `leading` if it matters)."""
    n = len(list(directory.glob("node-*.log")))
    log = directory / f"node-{n}.log"
    command = [*actorq_command(), "worker", "tests.cluster_app:system", "--journal", journal]
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, *options],
            cwd=directory,
            env=node_env(ledger),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return Node(process, log)


def wait_leader(nodes: list[Node], timeout: float = 60) -> Node:
    def leader() -> Node | None:
        for node in nodes:
            if node.process.poll() is not None and node.process.returncode != -9:
                raise AssertionError(f"node exited {node.process.returncode}: {node.text()}")
        alive = [n for n in nodes if n.process.poll() is None and n.leading]
        return alive[0] if alive else None

    found = wait_until(leader, timeout=timeout, interval=0.02)
    assert found is not None
    return found
