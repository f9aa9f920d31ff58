"""Submit jobs to an embedded actor system and read their results."""

from actorq import ActorSystem

system = ActorSystem(workers=4, journal="memory")


@system.task("add")
def add(a: int, b: int) -> int:
    return a + b


if __name__ == "__main__":
    with system:
        handle = add.submit(1, 2)
        print("1 + 2 =", handle.result(timeout=5))
        handles = add.map([(i, i) for i in range(100)])
        print("sum of doubles:", sum(h.result(timeout=5) for h in handles))
        print(system.stats()["statuses"])
