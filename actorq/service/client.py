"""The CLI's HTTP client: one place that turns responses into data or exit codes.

Why not the facade: the commands that inspect or feed a running system
(`submit`, `status`, `dlq`, `queues`) run in another process than the
system, so they go through its HTTP API. Every failure becomes a
`CommandFailed` carrying the exit code the CLI documents, so that scripts
can tell "the job failed" (1) from "you asked wrongly" (2) from "the server
is not there or not running" (3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actorq.persistence.url import redact_text

if TYPE_CHECKING:
    import httpx

EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 1, 2, 3


class CommandFailed(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Client:
    """A thin httpx client for the actorq HTTP API."""

    def __init__(self, url: str, token: str | None, timeout: float = 30.0) -> None:
        import httpx

        self.url = url.rstrip("/")  # shown only through redact_text: it may hold a password
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __repr__(self) -> str:
        return f"Client({redact_text(self.url)!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._http.close()

    def call(self, method: str, path: str, json: Any = None) -> Any:
        """Send one request; the decoded JSON body on success, else CommandFailed."""
        import httpx

        try:
            response = self._http.request(method, path, json=json)
        except httpx.TransportError as exc:
            message = redact_text(f"cannot reach {self.url}: {exc}")
            raise CommandFailed(EXIT_UNAVAILABLE, message) from exc
        if response.is_success:
            return response.json()
        raise CommandFailed(_exit_code(response.status_code), _describe(response))


def _exit_code(status: int) -> int:
    if status == 404:
        return EXIT_FAILED
    if status >= 500:
        return EXIT_UNAVAILABLE
    return EXIT_USAGE


def _describe(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "title" in body:
        detail = body.get("detail")
        text = f"{body['title']}: {detail}" if detail else str(body["title"])
        if response.status_code == 503 and "retry-after" in response.headers:
            text += f" (retry after {response.headers['retry-after']}s)"
        return f"{response.status_code} {text}"
    return f"{response.status_code} {response.reason_phrase}"
