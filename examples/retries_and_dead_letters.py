"""Retries with jittered exponential backoff, then the dead letters: inspect, retry, purge."""

from actorq import ActorSystem, Backoff, JobFailed, RestartPolicy

system = ActorSystem(workers=2, journal="memory")
healthy = {"upstream": False}


@system.task(
    "sync_account",
    policy=RestartPolicy(
        max_restarts=3,  # 4 attempts in all
        backoff=Backoff.exponential(0.01, factor=2.0, cap=0.1, jitter="full"),
        give_up_on=(PermissionError,),  # no point retrying these
    ),
)
def sync_account(account: str) -> str:
    if not healthy["upstream"]:
        raise ConnectionError(f"upstream down while syncing {account}")
    return f"{account} synced"


if __name__ == "__main__":
    with system:
        handle = sync_account.submit("acme")
        try:
            handle.result(timeout=5)
        except JobFailed as failure:
            print("gave up:", failure.error)
        for dead in system.dead_letters():
            print(f"dead letter {dead.id}: {dead.task}{dead.args} after {dead.attempts} attempts")
        healthy["upstream"] = True
        print(system.retry_dead(handle.id).result(timeout=5))
        print("dead letters left:", system.purge_dead())
