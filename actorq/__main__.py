"""`python -m actorq`: the `actorq` command line, where no script is on PATH."""

from actorq.service.cli import main

if __name__ == "__main__":
    main(prog_name="actorq")
