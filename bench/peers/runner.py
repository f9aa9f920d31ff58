"""Run one peer workload inside that peer's venv and print one JSON line with the result.

    <venv>/bin/python bench/peers/runner.py --peer rq --workload drain --n 20000 --redis-url URL

Exit status 0 with a result, 1 with a result whose value is null and whose extra.error
says what went wrong. Anything the peer libraries print goes to stderr, so stdout
carries the JSON line alone.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
import traceback
from pathlib import Path

# Run as a script, sys.path[0] is bench/peers; the peer modules import bench.peers.*.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.peers import PEERS, WORKLOADS, module_name
from bench.peers.common import UNITS, PeerResult


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", required=True, choices=PEERS)
    parser.add_argument("--workload", required=True, choices=WORKLOADS)
    parser.add_argument("--n", required=True, type=int)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args(argv)

    stdout = sys.stdout
    try:
        with contextlib.redirect_stdout(sys.stderr):
            module = importlib.import_module(module_name(args.peer))
            result: PeerResult = module.run(args.redis_url, args.workload, args.n)
        status = 0
    except Exception as exc:
        traceback.print_exc()
        error = "".join(traceback.format_exception_only(exc)).strip()
        notes = "\n".join(getattr(exc, "__notes__", []))
        result = PeerResult(args.peer, args.workload, None, UNITS[args.workload], {"error": error})
        if notes:
            result.extra["detail"] = notes[-4000:]
        status = 1
    stdout.write(json.dumps(result.to_dict()) + "\n")
    stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
