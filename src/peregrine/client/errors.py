"""Everything the client raises, one tree, each carrying the server's own explanation::

    PeregrineError                 any failure; .detail is the message to show a person
    ├── AuthenticationError        401: no token, a wrong, expired or revoked one
    ├── Forbidden                  403: authenticated, but lacking a permission
    ├── NotFound                   404: no such client, collection, hunt, artifact, user...
    ├── Conflict                   409: not in this state (starting a stopped hunt...)
    ├── BadRequest                 400 and 422: the request itself is wrong (bad artifact,
    │                              unknown parameter, invalid field); 422 details are joined
    ├── RateLimited                429: too many at once (failed logins, a busy password check,
    │                              a balancer's limit); try again after ``retry_after``
    ├── ServerError                5xx: the server failed; retrying later may help
    ├── TransportError             the server could not be reached or the connection broke
    │                              (DNS, refused, TLS verification, time-out)
    ├── IntegrityError             a download did not match the SHA-256 the server announced
    └── WaitTimeout                waiting for a collection or hunt outlasted its time-out
                                   (also a TimeoutError)

``status`` is the HTTP status (``None`` when there was no response) and ``body`` the decoded
JSON error body, for scripts that want more than ``detail``. ``retry_after`` is the seconds the
server asked to wait (its Retry-After header, on a 429 or a 503), or ``None``; ``detail`` then
ends with ``(retry in N s)``.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

__all__ = [
    "AuthenticationError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "IntegrityError",
    "NotFound",
    "PeregrineError",
    "RateLimited",
    "ServerError",
    "TransportError",
    "WaitTimeout",
    "error_for_status",
]


class PeregrineError(Exception):
    """A failed API call; ``str(error)`` is ``detail``."""

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.body = body
        self.retry_after = retry_after


class AuthenticationError(PeregrineError):
    """401."""


class Forbidden(PeregrineError):
    """403."""


class NotFound(PeregrineError):
    """404."""


class Conflict(PeregrineError):
    """409."""


class BadRequest(PeregrineError):
    """400 or 422."""


class RateLimited(PeregrineError):
    """429."""


class ServerError(PeregrineError):
    """5xx."""


class TransportError(PeregrineError):
    """No usable response."""


class IntegrityError(PeregrineError):
    """A downloaded file's SHA-256 differs from the server's."""


class WaitTimeout(PeregrineError, TimeoutError):
    """Still not done when the wait's time-out passed."""


_BY_STATUS: dict[int, type[PeregrineError]] = {
    400: BadRequest,
    401: AuthenticationError,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: BadRequest,
    429: RateLimited,
}


def _detail_text(detail: Any) -> str:
    """FastAPI's 422 detail is a list of {loc, msg}: make it one readable line."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                msg = str(item.get("msg", item))
                parts.append(f"{loc}: {msg}" if loc else msg)
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)


def retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """The seconds a Retry-After header asks for (a number, or an HTTP date), or None."""
    value = (headers or {}).get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when - (time.time() if now is None else now)
    return max(0.0, seconds) if seconds == seconds else None  # NaN: no advice


def error_for_status(
    status: int, body: Any, fallback: str, headers: Mapping[str, str] | None = None
) -> PeregrineError:
    """The exception for an error response whose decoded JSON body is ``body``."""
    detail = body.get("detail") if isinstance(body, dict) else None
    text = _detail_text(detail) if detail else fallback
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else PeregrineError)
    wait = retry_after(headers) if status in (429, 503) else None
    if wait is not None:
        text = f"{text} (retry in {wait:.0f} s)"
    return cls(text, status=status, body=body, retry_after=wait)
