"""The two things supervision needs from pykka that its public API does not offer.

Everything else goes through pykka's public surface (`ActorRef.tell`,
`ActorRef.stop`, `ActorRegistry`, `ThreadingFuture`, the hooks). These two
are kept here, alone, so that a pykka release that changes them breaks one
module, and `tests/test_pykka_contract.py` says so first:

- `start(actor)`: pykka starts an actor only through `Actor.start(*args)`,
  which builds the instance itself. A ChildSpec's factory builds the
  instance (so its arguments stay the caller's business), and the
  supervisor must install its hooks on that instance before its thread runs
  `on_start`; so the instance is started with `_start_actor_loop()`, which is
  what `Actor.start` does after building (pykka 4.x).
- `abandon(actor)`: a thread cannot be killed. To give up on an incarnation
  stuck in a handler, its `actor_stopped` event is set (as pykka does when a
  handler fails), so that its loop ends as soon as the handler returns
  instead of handling more messages, and code that polls `actor_stopped`
  (a worker between jobs) sees it was replaced; a no-op message (an
  `Envelope` of a `ProxyGetAttr`, put straight into its inbox) wakes one
  that is idle, so that its thread ends.
"""

from __future__ import annotations

import pykka
from pykka._envelope import Envelope
from pykka.messages import ProxyGetAttr


def start(actor: pykka.Actor) -> None:
    """Register and start an actor built by a factory, as `Actor.start` would."""
    pykka.ActorRegistry.register(actor.actor_ref)
    actor._start_actor_loop()


def abandon(actor: pykka.Actor) -> None:
    """Let a hung actor's loop end when its handler returns; its on_stop will not run."""
    pykka.ActorRegistry.unregister(actor.actor_ref)
    actor.actor_stopped.set()
    # An actor that is idle by now (its handler returned just before) waits in
    # its inbox, where nothing else will arrive: a harmless message wakes its
    # loop, which then sees it was stopped, so its thread ends.
    actor.actor_inbox.put(Envelope(ProxyGetAttr(attr_path=("actor_urn",))))
