"""Everything the client raises, one tree, each carrying the server's own explanation::

    PeregrineError                 any failure; .detail is the message to show a person
    ├── AuthenticationError        401: no token, a wrong, expired or revoked one
    ├── Forbidden                  403: authenticated, but lacking a permission
    ├── NotFound                   404: no such client, collection, hunt, artifact, user...
    ├── Conflict                   409: not in this state (starting a stopped hunt...)
    ├── BadRequest                 400 and 422: the request itself is wrong (bad artifact,
    │                              unknown parameter, invalid field); 422 details are joined
    ├── ServerError                5xx: the server failed; retrying later may help
    ├── TransportError             the server could not be reached or the connection broke
    │                              (DNS, refused, TLS verification, time-out)
    ├── IntegrityError             a download did not match the SHA-256 the server announced
    └── WaitTimeout                waiting for a collection or hunt outlasted its time-out
                                   (also a TimeoutError)

``status`` is the HTTP status (``None`` when there was no response) and ``body`` the decoded
JSON error body, for scripts that want more than ``detail``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "IntegrityError",
    "NotFound",
    "PeregrineError",
    "ServerError",
    "TransportError",
    "WaitTimeout",
    "error_for_status",
]


class PeregrineError(Exception):
    """A failed API call; ``str(error)`` is ``detail``."""

    def __init__(self, detail: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.body = body


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


def error_for_status(status: int, body: Any, fallback: str) -> PeregrineError:
    """The exception for an error response whose decoded JSON body is ``body``."""
    detail = body.get("detail") if isinstance(body, dict) else None
    text = _detail_text(detail) if detail else fallback
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else PeregrineError)
    return cls(text, status=status, body=body)
