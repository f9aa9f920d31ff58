"""Supervision trees for pykka actors, usable without the job system."""

from actorq.supervision.address import Address, Undeliverable
from actorq.supervision.backoff import Backoff
from actorq.supervision.policy import RestartPolicy
from actorq.supervision.supervisor import (
    ChildHung,
    ChildSpec,
    RestartChild,
    StartChild,
    Supervisor,
    SupervisorObserver,
    WhichChildren,
)

__all__ = [
    "Address",
    "Backoff",
    "ChildHung",
    "ChildSpec",
    "RestartChild",
    "RestartPolicy",
    "StartChild",
    "Supervisor",
    "SupervisorObserver",
    "Undeliverable",
    "WhichChildren",
]
