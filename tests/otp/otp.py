"""Run scenarios on Erlang/OTP's real supervisor (the runner in `erl/`).

A scenario is the normalised JSON form kept in `fixture.json`: a tree of
supervisors (strategy, intensity, period, restart) and workers (restart,
init_ms, stop_ms), and events (crash, exit normal / shutdown, wait, align).
The Erlang runner writes, per scenario, the trace of starts and stops, the
children alive after the events, whether the root gave up, and leftovers.

`python -m tests.otp.otp` records OTP's results into `fixture.json` again.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
FIXTURE = HERE / "fixture.json"


def _estr(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _node(node: dict[str, Any]) -> str:
    if "children" in node:
        kids = ", ".join(_node(c) for c in node["children"])
        return (
            f"{{sup, {_estr(node['name'])}, {node['strategy']}, {node['intensity']}, "
            f"{node['period']}, {node['restart']}, [{kids}]}}"
        )
    name, restart = _estr(node["name"]), node["restart"]
    return f"{{worker, {name}, {restart}, {node['init_ms']}, {node['stop_ms']}}}"


def _event(e: dict[str, Any]) -> str:
    if e["do"] == "crash":
        return f"{{crash, {_estr(e['child'])}, {_estr(e['label'])}}}"
    if e["do"] == "exit":
        return f"{{exit, {_estr(e['child'])}, {e['reason']}, {_estr(e['label'])}}}"
    if e["do"] == "align":
        return f"{{align, {_estr(e['label'])}}}"
    return f"{{wait, {e['ms']}, {_estr(e['label'])}}}"


def to_erlang(scenario: dict[str, Any]) -> str:
    events = ", ".join(_event(e) for e in scenario["events"])
    return f"{{scenario, {_estr(scenario['name'])}, {_node(scenario['tree'])}, [{events}]}}.\n"


def run(scenarios: list[dict[str, Any]], timeout: float = 600) -> dict[str, dict[str, Any]]:
    """OTP's result for each scenario, by name (needs `erl` and `erlc` on the PATH)."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sources = sorted(str(p) for p in (HERE / "erl").glob("*.erl"))
        subprocess.run(["erlc", "-o", tmp, *sources], check=True, timeout=timeout)
        terms, out = work / "scenarios.terms", work / "otp.jsonl"
        terms.write_text("".join(to_erlang(s) for s in scenarios))
        main = f'harness_run:main(["{terms}", "{out}"])'
        subprocess.run(
            ["erl", "-noshell", "-pa", tmp, "-eval", main],
            check=True,
            timeout=timeout,
            capture_output=True,
        )
        results = [json.loads(line) for line in out.read_text().splitlines()]
    return {r["name"]: r for r in results}


def load() -> list[dict[str, Any]]:
    """The fixture: a list of {"scenario": ..., "otp": ...}."""
    data: list[dict[str, Any]] = json.loads(FIXTURE.read_text())
    return data


def record() -> None:
    entries = load()
    otp = run([e["scenario"] for e in entries])
    for e in entries:
        e["otp"] = {k: v for k, v in otp[e["scenario"]["name"]].items() if k != "name"}
    FIXTURE.write_text(json.dumps(entries, indent=1) + "\n")


if __name__ == "__main__":
    record()
    sys.exit(0)
