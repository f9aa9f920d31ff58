"""Peer job systems measured against actorq: one module per peer, each run in its own venv.

This package is imported both by the parent harness and inside every peer venv, so it
must stay standard-library only; peer libraries are imported by the peer modules alone.
"""

from __future__ import annotations

from pathlib import Path

PEERS: tuple[str, ...] = ("rq", "dramatiq", "celery", "arq", "taskiq", "huey")
WORKLOADS: tuple[str, ...] = ("enqueue", "drain", "latency", "retry")
# Counts of the full benchmark; the verification run uses smaller ones.
DEFAULT_N: dict[str, int] = {"enqueue": 20_000, "drain": 20_000, "latency": 500, "retry": 2_000}

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parents[1]


def module_name(peer: str) -> str:
    if peer not in PEERS:
        raise KeyError(f"unknown peer {peer!r}; known: {', '.join(PEERS)}")
    return f"bench.peers.{peer}_peer"


def module_path(peer: str) -> Path:
    return PACKAGE_DIR / f"{module_name(peer).rsplit('.', 1)[1]}.py"
