"""A user's own pykka actor under supervision: it crashes, restarts, keeps its address."""

import pykka

from actorq import ActorSystem, Backoff, RestartPolicy


class Cache(pykka.ThreadingActor):
    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[str, str] = {}

    def on_receive(self, message: tuple[str, ...]) -> str | None:
        verb, *rest = message
        if verb == "put":
            self.entries[rest[0]] = rest[1]
        elif verb == "get":
            return self.entries.get(rest[0])
        elif verb == "corrupt":
            raise RuntimeError("cache corrupted")
        return None


if __name__ == "__main__":
    with ActorSystem(workers=1) as system:
        cache = system.spawn(
            Cache,
            name="cache",
            policy=RestartPolicy(max_restarts=3, backoff=Backoff.constant(0.05)),
        )
        cache.tell(("put", "k", "v"))
        print("before the crash:", cache.ask(("get", "k")))
        cache.tell(("corrupt",))  # crashes; the supervisor restarts it with fresh state
        print("after the restart:", cache.ask(("get", "k"), timeout=5))
        cache.tell(("put", "k", "v2"))
        print("same address, new incarnation:", cache.ask(("get", "k")))
