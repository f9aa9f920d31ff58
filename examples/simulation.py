"""Fault-injection simulation on a virtual clock: an hour of backoff in milliseconds."""

import random

from actorq import ActorSystem, Backoff, JobStatus, RestartPolicy, VirtualClock

clock = VirtualClock()
system = ActorSystem(workers=4, journal="memory", clock=clock)
rng = random.Random(42)


@system.task(
    "call_partner",
    policy=RestartPolicy(max_restarts=5, backoff=Backoff.exponential(60, cap=900, jitter="equal")),
)
def call_partner(order: int) -> str:
    if rng.random() < 0.5:  # the injected fault: the partner fails half the time
        raise TimeoutError(f"partner timed out on order {order}")
    return f"order {order} confirmed"


if __name__ == "__main__":
    with system:
        handles = call_partner.map([(i,) for i in range(200)])
        simulated = 0
        while not system.join(timeout=0.05):
            clock.advance(30)  # half a minute of simulated time per step
            simulated += 30
        statuses = [h.status() for h in handles]
        print(f"simulated {simulated / 3600:.1f} hours of retries")
        print(
            "succeeded:",
            statuses.count(JobStatus.SUCCEEDED),
            "dead:",
            statuses.count(JobStatus.DEAD),
        )
