"""What a simulation run measured: `SimReport`, as JSON and as PNG charts."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

INVARIANTS = (
    "no_acknowledged_loss",
    "attempts_within_policy",
    "no_fenced_result",
    "dead_letters_balanced",
    "liveness",
    "cron_fired_once",
)


@dataclass
class Invariant:
    """held: True (checked, held), False (violated), None (never judged in this run)."""

    held: bool | None = None
    checks: int = 0
    first_violation: str | None = None


@dataclass
class Sample:
    t: float
    queued: int
    running: int
    waiting: int  # scheduled or retrying
    submitted: int
    attempts: int
    terminal: int

    @property
    def amplification(self) -> float:
        return self.attempts / self.submitted if self.submitted else 0.0


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank percentile (q in 0..100) of `values`, or None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class SimReport:
    seed: int
    until: float
    start: str
    digest: str
    steps: int
    invariants: dict[str, Invariant]
    jobs: int
    acknowledged: int
    succeeded: int
    dead: int
    cancelled: int
    unfinished: int
    attempts: int
    attempts_histogram: dict[str, dict[int, int]]
    finished_at: float | None
    time_to_success: dict[str, float | None]
    dead_letters: int
    dispatcher_restarts: int
    worker_restarts: int
    faults_injected: dict[str, int]
    samples: list[Sample] = field(default_factory=list)
    success_times: list[float] = field(default_factory=list)
    replay: str = ""
    label: str = ""

    @property
    def ok(self) -> bool:
        return all(inv.held is not False for inv in self.invariants.values())

    @property
    def amplification(self) -> float:
        return self.attempts / self.jobs if self.jobs else 0.0

    def violation(self) -> tuple[str, str] | None:
        for name, inv in self.invariants.items():
            if inv.held is False:
                return name, inv.first_violation or ""
        return None

    def summary(self) -> dict[str, Any]:
        """The headline figures, for tables and comparisons."""
        return {
            "jobs": self.jobs,
            "acknowledged": self.acknowledged,
            "succeeded": self.succeeded,
            "dead": self.dead,
            "unfinished": self.unfinished,
            "attempts": self.attempts,
            "amplification": round(self.amplification, 3),
            "finished_at": self.finished_at,
            "p50": self.time_to_success["p50"],
            "p99": self.time_to_success["p99"],
            "dead_letters": self.dead_letters,
        }

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["samples"] = [
            {**asdict(s), "amplification": round(s.amplification, 4)} for s in self.samples
        ]
        data["amplification"] = self.amplification
        data["ok"] = self.ok
        del data["success_times"]
        return data

    def save(self, directory: str | Path) -> list[Path]:
        """Write report.json and PNG charts; returns the paths written."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "report.json"
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str))
        return [path, *save_charts([self], out)]


def save_charts(reports: list[SimReport], out: Path) -> list[Path]:
    """Queue depth, in-flight, attempts over time, and the time-to-success CDF per report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    for report in reports:
        label = report.label or f"seed {report.seed}"
        hours = [s.t / 3600 for s in report.samples]
        axes[0].plot(hours, [s.queued + s.waiting for s in report.samples], label=label)
        axes[1].plot(hours, [s.running for s in report.samples], label=label)
        axes[2].plot(hours, [s.amplification for s in report.samples], label=label)
    axes[0].set_ylabel("queued + retrying")
    axes[1].set_ylabel("in flight")
    axes[2].set_ylabel("attempts / jobs")
    axes[2].set_xlabel("virtual hours")
    axes[0].legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    path = out / "timeline.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for report in reports:
        times = sorted(report.success_times)
        if times:
            ys = [(i + 1) / len(times) for i in range(len(times))]
            ax.step(times, ys, where="post", label=report.label or f"seed {report.seed}")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("time to success (virtual seconds)")
    ax.set_ylabel("fraction of succeeded jobs")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    path = out / "time_to_success.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)
    return written
