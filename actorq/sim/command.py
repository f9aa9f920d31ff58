"""`actorq simulate MODULE:SCENARIO`: run a scenario, print its figures and invariants.

A scenario is a function taking the `Simulation` (and, if it has variants,
the variant's name) that sets up workload and faults. The ActorSystem it
simulates is the function's `system` attribute or its module's `system`.
`--compare` runs every name in the function's `variants` attribute under
the same seed and prints them side by side.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from actorq.errors import SimulationError
from actorq.sim.report import SimReport, save_charts
from actorq.sim.simulation import Simulation


def load_scenario(target: str) -> tuple[Callable[..., None], Any]:
    """The scenario function named by MODULE:FUNCTION (or path/to/file.py:FUNCTION), and
    the ActorSystem it runs on."""
    module_name, _, attr = target.rpartition(":")
    if not module_name or not attr:
        raise SimulationError(f"expected MODULE:SCENARIO, not {target!r}")
    try:
        if module_name.endswith(".py") or "/" in module_name:
            path = Path(module_name)
            if not path.is_file():
                raise SimulationError(f"no such file: {module_name}")
            spec = importlib.util.spec_from_file_location(f"actorq_scenario_{path.stem}", path)
            if spec is None or spec.loader is None:
                raise SimulationError(f"cannot load {module_name}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SimulationError(f"cannot import {module_name}: {exc}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise SimulationError(f"{module_name} has no scenario function {attr!r}")
    system = getattr(fn, "system", None) or getattr(module, "system", None)
    if system is None:
        raise SimulationError(f"{module_name} defines no `system` for {attr} to simulate")
    return fn, system


def run_scenario(
    target: str,
    *,
    seed: int,
    until: float,
    journal: str = "memory",
    variant: str | None = None,
    until_text: str | None = None,
) -> SimReport:
    fn, system = load_scenario(target)
    sim = Simulation(system, seed=seed, journal=journal)
    replay = f"actorq simulate {target} --seed {seed} --until {until_text or until}"
    if journal != "memory":
        replay += f" --journal {journal}"
    if variant is not None:
        replay += f" --variant {variant}"
    sim.replay_command = replay
    sim.label = variant or ""
    if variant is None:
        fn(sim)
    else:
        fn(sim, variant)
    return sim.run(until=until)


def variants_of(target: str) -> tuple[str, ...]:
    fn, _ = load_scenario(target)
    variants = tuple(getattr(fn, "variants", ()))
    if not variants:
        raise SimulationError(f"{target} lists no `variants` to compare")
    return variants


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_reports(reports: list[SimReport], console: Console, out: Path | None) -> None:
    table = Table(title="simulation", title_justify="left")
    table.add_column("")
    for report in reports:
        table.add_column(report.label or f"seed {report.seed}", justify="right")
    rows = list(reports[0].summary())
    for key in rows:
        table.add_row(key, *(_fmt(r.summary()[key]) for r in reports))
    table.add_row("dispatcher restarts", *(str(r.dispatcher_restarts) for r in reports))
    table.add_row("worker restarts", *(str(r.worker_restarts) for r in reports))
    console.print(table)
    invariants = Table(title="invariants", title_justify="left")
    invariants.add_column("", no_wrap=True)
    for report in reports:
        invariants.add_column(report.label or f"seed {report.seed}", justify="right")
    for name in reports[0].invariants:
        cells = []
        for report in reports:
            inv = report.invariants[name]
            if len(reports) > 1:
                cells.append({True: "held", False: "VIOLATED", None: "-"}[inv.held])
            else:
                held = {True: "held", False: "VIOLATED", None: "not judged"}[inv.held]
                cells.append(f"{held} ({inv.checks} checks)")
        invariants.add_row(name, *cells)
    console.print(invariants)
    for report in reports:
        label = f" ({report.label})" if report.label else ""
        console.print(f"digest{label} {report.digest}", markup=False)
        violation = report.violation()
        if violation is not None:
            console.print(f"VIOLATED{label} {violation[0]}: {violation[1]}", markup=False)
            console.print(f"seed {report.seed}; replay: {report.replay}", markup=False)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for report in reports:
            name = f"report-{report.label}.json" if report.label else "report.json"
            (out / name).write_text(json.dumps(report.to_dict(), indent=2, default=str))
        charts = save_charts(reports, out)
        console.print(f"report and charts in {out}: {', '.join(p.name for p in charts)}")
