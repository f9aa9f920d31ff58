"""A JSON log formatter for log shippers: one JSON object per line.

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.getLogger("actorq").addHandler(handler)

Each line holds `time` (ISO 8601, UTC), `level`, `logger` and `message`,
every attribute a record was given through ``extra=`` (the job outcome
lines of `LoggingMiddleware` carry `job_id`, `task`, `attempt`, `duration`,
`outcome`), and `exception` when the record has one. Values JSON cannot
encode are written as their `repr`.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

# The attributes every LogRecord has: anything else came through `extra=`.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """Format each record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=repr, ensure_ascii=False)
