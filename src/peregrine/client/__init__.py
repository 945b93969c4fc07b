"""``peregrine.client``: the typed Python client of Peregrine's REST API (``/api/v1``).

``Peregrine`` is synchronous, ``AsyncPeregrine`` the same with ``await``; both group the API
by resource: ``clients``, ``collections``, ``hunts``, ``files`` (the file browser),
``artifacts``, ``users``, ``tokens``, ``audit``, ``events``, ``alerts``..., plus ``status()``
and ``me()``. Answers are typed values (``peregrine.client.models``) and failures one
exception tree (``peregrine.client.errors``)::

    from peregrine.client import Peregrine

    with Peregrine.from_env() as p:   # PEREGRINE_URL, PEREGRINE_TOKEN, PEREGRINE_CA_CERT
        for client in p.clients.search("label:prod os:linux").items:
            print(client.client_id, client.hostname)
"""

from peregrine.client.aio import AsyncPeregrine
from peregrine.client.errors import (
    AuthenticationError,
    BadRequest,
    Conflict,
    Forbidden,
    IntegrityError,
    NotFound,
    PeregrineError,
    RateLimited,
    ServerError,
    TransportError,
    WaitTimeout,
)
from peregrine.client.models import (
    ArtifactSummary,
    AuditEntry,
    Client,
    ClientDetail,
    ClientPage,
    DeletedClient,
    Flow,
    Hunt,
    HuntClient,
    HuntProgress,
    HuntStats,
    IssuedToken,
    Limits,
    Me,
    Problem,
    RowsPage,
    Status,
    Token,
    Upload,
    User,
)
from peregrine.client.sync import Peregrine

__all__ = [
    "ArtifactSummary",
    "AsyncPeregrine",
    "AuditEntry",
    "AuthenticationError",
    "BadRequest",
    "Client",
    "ClientDetail",
    "ClientPage",
    "Conflict",
    "DeletedClient",
    "Flow",
    "Forbidden",
    "Hunt",
    "HuntClient",
    "HuntProgress",
    "HuntStats",
    "IntegrityError",
    "IssuedToken",
    "Limits",
    "Me",
    "NotFound",
    "Peregrine",
    "PeregrineError",
    "Problem",
    "RateLimited",
    "RowsPage",
    "ServerError",
    "Status",
    "Token",
    "TransportError",
    "Upload",
    "User",
    "WaitTimeout",
]
