"""Journal URLs: which backend a journal argument names, and how to show one safely.

A journal argument is checked before anything is opened, so that a typo
(``redis:/host``, ``bogus://x``) is refused with the accepted forms instead of
becoming a directory named after it. Every place that shows a URL, in a log
line, a repr or an error, goes through `redact`: a password in a Redis URL
must never reach a log collector.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

from actorq.errors import InvalidJournalURL

__all__ = ["ACCEPTED", "JournalURL", "parse_journal_url", "redact", "redact_text"]

ACCEPTED = (
    "'memory'; a directory path or file:///dir[?fsync=always|batch|never]; "
    "redis://[[user]:password@]host[:port][/db][?namespace=N&lease=S&claim_wait=S&retry_for=S]; "
    "rediss://... (TLS); unix:///path/to/redis.sock[?db=N&namespace=N]"
)

_REDIS_SCHEMES = ("redis", "rediss", "unix")
_KNOWN_SCHEMES = ("file", *_REDIS_SCHEMES)
_FSYNC = ("always", "batch", "never")
_TIMING = ("lease", "retry_for", "claim_wait")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
# The authority of any URL in free text; the userinfo's password is cut out of it.
# The userinfo runs to the last "@" so that a password with an unescaped "/" is
# masked whole, as redis-py reads it; fewer than two slashes after the scheme
# still count, so that a mistyped URL is masked in the error refusing it.
_AUTHORITY = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*:/{0,2})(?P<authority>(?:[^\s@'\"]*@)?[^/?#\s@'\"]*)"
)
_SECRET_QUERY = re.compile(
    r"(?i)(?P<key>[?&](?:password|passwd|pass|token|access_token|api_key)=)[^&#\s'\"]*"
)
MASK = "***"


@dataclass(frozen=True, slots=True)
class JournalURL:
    """A checked journal argument. `str()` and `repr()` never show a password."""

    kind: Literal["memory", "file", "redis"]
    spec: str = field(repr=False)
    path: str = ""
    fsync: Literal["always", "batch", "never"] = "always"

    def __str__(self) -> str:
        return redact(self.spec)

    def __repr__(self) -> str:
        return f"JournalURL({self.kind}, {redact(self.spec)!r})"


def parse_journal_url(spec: str) -> JournalURL:
    """Check a journal argument and say which backend it names.

    Raises `InvalidJournalURL` for an empty argument, an unknown scheme, or a
    known scheme in a form its backend cannot read; the message shows the
    argument redacted and lists the accepted forms.
    """
    if spec == "memory":
        return JournalURL("memory", spec)
    if not spec.strip():
        raise _invalid(spec, "it is empty")
    scheme_match = _SCHEME.match(spec)
    if scheme_match is None or len(scheme_match.group(1)) == 1:  # a path (or a drive letter)
        return _file(spec, spec)
    scheme = scheme_match.group(1).lower()
    rest = spec[scheme_match.end() :]
    if scheme not in _KNOWN_SCHEMES:
        if rest.startswith("//"):
            raise _invalid(spec, f"unknown scheme {scheme!r}")
        return _file(spec, spec)  # "notes:2024" is a legal relative directory name
    if not rest.startswith("//"):
        raise _invalid(spec, f"{scheme}: needs '//' after the scheme")
    if scheme == "file":
        return _file(spec, rest[2:])
    return _redis(spec, scheme)


def _file(spec: str, location: str) -> JournalURL:
    path, _, query = location.partition("?")
    if not path:
        raise _invalid(spec, "no directory is named")
    options = dict(parse_qsl(query, keep_blank_values=True))
    if unknown := set(options) - {"fsync"}:
        raise _invalid(spec, f"unknown file journal options: {', '.join(sorted(unknown))}")
    fsync = options.get("fsync", "always")
    if fsync not in _FSYNC:
        raise _invalid(spec, f"fsync must be one of {', '.join(_FSYNC)}, not {fsync!r}")
    return JournalURL("file", spec, path=path, fsync=fsync)  # type: ignore[arg-type]


def _redis(spec: str, scheme: str) -> JournalURL:
    parts = urlsplit(spec)
    try:
        parts.port  # noqa: B018  (reading it validates it)
    except ValueError:
        raise _invalid(spec, "the port is not a number from 0 to 65535") from None
    if scheme == "unix":
        if not parts.path:
            raise _invalid(spec, "unix:// needs the socket's path")
    else:
        if not parts.hostname:
            raise _invalid(spec, f"{scheme}:// needs a host")
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise _invalid(spec, f"the database must be a number, not {db!r}")
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "namespace" and not value:
            raise _invalid(spec, "namespace must not be empty")
        if key in _TIMING:
            try:
                seconds = float(value)
            except ValueError:
                raise _invalid(spec, f"{key} is not a number of seconds: {value!r}") from None
            if not seconds >= 0:
                raise _invalid(spec, f"{key} must be 0 or more seconds, not {value!r}")
    return JournalURL("redis", spec)


def _invalid(spec: str, reason: str) -> InvalidJournalURL:
    return InvalidJournalURL(redact(spec), reason, ACCEPTED)


def redact(url: str) -> str:
    """`url` with the password of its userinfo and any secret query value replaced by ***."""
    return redact_text(url)


def redact_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` with every URL's password, secret query values and each of `secrets` masked."""
    text = _AUTHORITY.sub(_mask_authority, text)
    text = _SECRET_QUERY.sub(lambda m: m.group("key") + MASK, text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


def _mask_authority(match: re.Match[str]) -> str:
    authority = match.group("authority")
    userinfo, at, host = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return match.group(0)
    user = userinfo.partition(":")[0]
    return f"{match.group('scheme')}{user}:{MASK}@{host}"
