"""The part of the client that does no I/O, shared by the sync and the async client.

Every API call is described once here as a ``Call`` (method, path, query, body, and the type
its answer decodes to); the two clients only send it. Streams (server-sent events, downloads,
paging) are driven by small state machines here that both clients feed.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import re
import ssl
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from peregrine import __version__
from peregrine.client.errors import (
    IntegrityError,
    PeregrineError,
    TransportError,
    error_for_status,
)
from peregrine.client.models import (
    FINAL_FLOW_STATES,
    FINAL_HUNT_STATES,
    ArtifactSummary,
    AuditEntry,
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

T = TypeVar("T")
API_PREFIX = "/api/v1"
ENV_URL, ENV_TOKEN, ENV_CA_CERT = "PEREGRINE_URL", "PEREGRINE_TOKEN", "PEREGRINE_CA_CERT"
#: Longest silence allowed on an event stream; the server sends a keep-alive every 15 s.
SSE_READ_TIMEOUT = 20.0
PAGE_SIZE = 1000
CHUNK = 1 << 20

ArtifactsArg = (
    str
    | Mapping[str, Mapping[str, Any]]
    | Sequence[str | tuple[str, Mapping[str, Any]] | Mapping[str, Any]]
)
LimitsArg = Limits | Mapping[str, Any] | None


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and what its answer decodes to (``None``: no body expected)."""

    method: str
    path: str
    type: Any
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None


def _call(
    method: str, path: str, type_: type[T] | Any, json_body: Any = None, **params: Any
) -> Call[T]:
    return Call(
        method,
        path,
        type_,
        {k: v for k, v in params.items() if v is not None},
        json_body,
    )


#: A result page's ``(sort, order, filters)``; empty: the stored order, every row.
RowView = tuple[()] | tuple[str | None, str, Iterable[str]]


def row_view(sort: str | None, order: str, filters: Iterable[str]) -> RowView:
    """Rows in the stored order unless sorted or filtered (filters: ``column:text``,
    ``column:>10``, ``:<=``, ``:=``, ``:!=``); each page is then one query over all rows."""
    return (sort, order, tuple(filters))


def row_params(sort: str | None = None, order: str = "asc", filters: Iterable[str] = ()) -> Any:
    if order not in ("asc", "desc"):
        raise ValueError(f"order is asc or desc, not {order!r}")
    return {"sort": sort, "order": order if sort else None, "filter": list(filters) or None}


def _results_page(
    owner: str, artifact: str, source: str, offset: int, limit: int, view: RowView
) -> Call[RowsPage]:
    """A page of a collection's or hunt's (``owner``'s path) result set."""
    params = {"artifact": artifact, "source": source, "offset": offset, "limit": limit}
    return _call("GET", f"{owner}/results", RowsPage, **params, **row_params(*view))


def _export(owner: str, artifact: str, source: str, fmt: str) -> Call[None]:
    return _call("GET", f"{owner}/export", None, artifact=artifact, source=source, format=fmt)


def segment(value: str) -> str:
    """One path segment, escaped (ids are checked by the server; names may hold anything)."""
    return quote(value, safe="")


# -- connection ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Connection:
    base_url: str
    headers: dict[str, str]
    verify: ssl.SSLContext | bool
    timeout: httpx.Timeout


def connection(
    url: str, token: str | None, ca_cert: str | os.PathLike[str] | None, timeout: float
) -> Connection:
    """httpx settings for ``url`` (``https://host:8444``, with or without ``/api/v1``)."""
    if not url:
        raise ValueError(f"no server URL: pass url='https://HOST:PORT' or set {ENV_URL}")
    base = url.rstrip("/")
    if not re.match(r"^https?://", base):
        base = f"https://{base}"
    if not base.endswith(API_PREFIX):
        base += API_PREFIX
    headers = {"User-Agent": f"peregrine-client/{__version__}", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    verify: ssl.SSLContext | bool = True
    if ca_cert:
        try:
            verify = ssl.create_default_context(cafile=os.fspath(ca_cert))
        except (OSError, ssl.SSLError) as exc:
            raise TransportError(f"cannot use the CA certificate {ca_cert}: {exc}") from None
    return Connection(base, headers, verify, httpx.Timeout(timeout, connect=min(timeout, 30.0)))


def env_settings() -> tuple[str, str | None, str | None]:
    return (
        os.environ.get(ENV_URL, ""),
        os.environ.get(ENV_TOKEN) or None,
        os.environ.get(ENV_CA_CERT) or None,
    )


def transport_error(exc: Exception, url: str) -> TransportError:
    reason = str(exc) or type(exc).__name__
    return TransportError(f"cannot talk to {url}: {reason}")


# -- responses ----------------------------------------------------------------------------------


def raise_for(
    status: int, content: bytes, reason: str, headers: Mapping[str, str] | None = None
) -> None:
    """Raise the PeregrineError of an error response (with the Retry-After it carries);
    nothing for a success."""
    if status < 400:
        return
    try:
        body = json.loads(content) if content else None
    except ValueError:
        body = None
    text = content.decode("utf-8", "replace").strip()[:500]
    raise error_for_status(status, body, text or f"HTTP {status} {reason}".strip(), headers)


def decode(
    call: Call[T],
    status: int,
    content: bytes,
    reason: str = "",
    headers: Mapping[str, str] | None = None,
) -> T:
    raise_for(status, content, reason, headers)
    if call.type is None:
        return None  # type: ignore[return-value]
    try:
        value: T = msgspec.json.decode(content, type=call.type)
    except msgspec.DecodeError as exc:
        raise PeregrineError(
            f"unexpected answer to {call.method} {call.path}: {exc}", status=status
        ) from None
    return value


# -- request bodies -----------------------------------------------------------------------------


def artifact_calls(artifacts: ArtifactsArg) -> list[dict[str, Any]]:
    """Normalise the ways to name artifacts: ``"Name"``, ``["A", "B"]``, ``[("A", {params})]``,
    ``[{"name": "A", "parameters": {...}}]`` or ``{"A": {params}}``."""
    if isinstance(artifacts, str):
        return [{"name": artifacts, "parameters": {}}]
    if isinstance(artifacts, Mapping):
        return [{"name": n, "parameters": dict(p)} for n, p in artifacts.items()]
    out: list[dict[str, Any]] = []
    for item in artifacts:
        if isinstance(item, str):
            out.append({"name": item, "parameters": {}})
        elif isinstance(item, tuple):
            name, params = item
            out.append({"name": name, "parameters": dict(params)})
        elif isinstance(item, Mapping):
            out.append({"name": item["name"], "parameters": dict(item.get("parameters") or {})})
        else:
            raise TypeError(f"cannot name an artifact with {item!r}")
    return out


def limits_body(limits: LimitsArg) -> dict[str, Any]:
    if limits is None:
        return {}
    if isinstance(limits, Limits):
        return limits.to_dict()
    return {k: v for k, v in limits.items() if v is not None}


def yaml_text(yaml: str | os.PathLike[str]) -> str:
    """Artifact YAML given as text or as a file path."""
    if isinstance(yaml, str):
        return yaml
    return Path(yaml).read_text("utf-8")


# -- every endpoint -----------------------------------------------------------------------------


class Api:
    """The calls of ``/api/v1``, one function each."""

    # clients
    @staticmethod
    def search_clients(q: str, limit: int, offset: int) -> Call[ClientPage]:
        return _call("GET", "/clients", ClientPage, q=q, limit=limit, offset=offset)

    @staticmethod
    def get_client(client_id: str) -> Call[ClientDetail]:
        return _call("GET", f"/clients/{segment(client_id)}", ClientDetail)

    @staticmethod
    def label_client(client_id: str, add: Iterable[str], remove: Iterable[str]) -> Call[list[str]]:
        body = {"add": list(add), "remove": list(remove)}
        return _call("POST", f"/clients/{segment(client_id)}/labels", list[str], body)

    @staticmethod
    def delete_client(client_id: str, force: bool) -> Call[DeletedClient]:
        path = f"/clients/{segment(client_id)}"
        return _call("DELETE", path, DeletedClient, force=str(force).lower())

    @staticmethod
    def client_collections(client_id: str, limit: int, offset: int) -> Call[list[Flow]]:
        path = f"/clients/{segment(client_id)}/collections"
        return _call("GET", path, list[Flow], limit=limit, offset=offset)

    # collections
    @staticmethod
    def create_collection(client_id: str, artifacts: ArtifactsArg, limits: LimitsArg) -> Call[Flow]:
        body = {
            "client_id": client_id,
            "artifacts": artifact_calls(artifacts),
            "limits": limits_body(limits),
        }
        return _call("POST", "/collections", Flow, body)

    @staticmethod
    def get_collection(flow_id: str) -> Call[Flow]:
        return _call("GET", f"/collections/{segment(flow_id)}", Flow)

    @staticmethod
    def cancel_collection(flow_id: str) -> Call[Flow]:
        return _call("POST", f"/collections/{segment(flow_id)}/cancel", Flow)

    @staticmethod
    def collection_logs(flow_id: str, offset: int, limit: int) -> Call[RowsPage]:
        path = f"/collections/{segment(flow_id)}/logs"
        return _call("GET", path, RowsPage, offset=offset, limit=limit)

    @staticmethod
    def collection_results(
        flow_id: str, artifact: str, source: str, offset: int, limit: int, view: RowView = ()
    ) -> Call[RowsPage]:
        return _results_page(
            f"/collections/{segment(flow_id)}", artifact, source, offset, limit, view
        )

    @staticmethod
    def collection_export(flow_id: str, artifact: str, source: str, fmt: str) -> Call[None]:
        return _export(f"/collections/{segment(flow_id)}", artifact, source, fmt)

    @staticmethod
    def collection_uploads(flow_id: str) -> Call[list[Upload]]:
        return _call("GET", f"/collections/{segment(flow_id)}/uploads", list[Upload])

    @staticmethod
    def download_upload(flow_id: str, upload_id: str) -> Call[None]:
        path = f"/collections/{segment(flow_id)}/uploads/{segment(upload_id)}"
        return _call("GET", path, None)

    # hunts
    @staticmethod
    def create_hunt(artifacts: ArtifactsArg, limits: LimitsArg, **options: Any) -> Call[Hunt]:
        body = {
            "artifacts": artifact_calls(artifacts),
            "limits": limits_body(limits),
            **{k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
        }
        return _call("POST", "/hunts", Hunt, {k: v for k, v in body.items() if v is not None})

    @staticmethod
    def list_hunts(state: Iterable[str] | str | None, limit: int, offset: int) -> Call[list[Hunt]]:
        states = [state] if isinstance(state, str) else list(state) if state else None
        return _call("GET", "/hunts", list[Hunt], state=states, limit=limit, offset=offset)

    @staticmethod
    def get_hunt(hunt_id: str) -> Call[Hunt]:
        return _call("GET", f"/hunts/{segment(hunt_id)}", Hunt)

    @staticmethod
    def change_hunt(hunt_id: str, action: str, **params: Any) -> Call[Hunt]:
        query = {k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()}
        return _call("POST", f"/hunts/{segment(hunt_id)}/{action}", Hunt, **query)

    @staticmethod
    def hunt_add(hunt_id: str, client_id: str) -> Call[bool]:
        return _call("POST", f"/hunts/{segment(hunt_id)}/clients/{segment(client_id)}", bool)

    @staticmethod
    def hunt_stats(hunt_id: str) -> Call[HuntStats]:
        return _call("GET", f"/hunts/{segment(hunt_id)}/stats", HuntStats)

    @staticmethod
    def hunt_clients(
        hunt_id: str, state: str | None, limit: int, offset: int
    ) -> Call[list[HuntClient]]:
        path = f"/hunts/{segment(hunt_id)}/clients"
        return _call("GET", path, list[HuntClient], state=state, limit=limit, offset=offset)

    @staticmethod
    def hunt_results(
        hunt_id: str, artifact: str, source: str, offset: int, limit: int, view: RowView = ()
    ) -> Call[RowsPage]:
        return _results_page(f"/hunts/{segment(hunt_id)}", artifact, source, offset, limit, view)

    @staticmethod
    def hunt_export(hunt_id: str, artifact: str, source: str, fmt: str) -> Call[None]:
        return _export(f"/hunts/{segment(hunt_id)}", artifact, source, fmt)

    # artifacts
    @staticmethod
    def list_artifacts(search: str | None) -> Call[list[ArtifactSummary]]:
        return _call("GET", "/artifacts", list[ArtifactSummary], search=search or None)

    @staticmethod
    def show_artifact(name: str) -> Call[dict[str, Any]]:
        return _call("GET", f"/artifacts/{segment(name)}", dict[str, Any])

    @staticmethod
    def check_artifacts(yaml: str | os.PathLike[str]) -> Call[list[Problem]]:
        return _call("POST", "/artifacts/check", list[Problem], {"yaml": yaml_text(yaml)})

    @staticmethod
    def put_artifacts(yaml: str | os.PathLike[str]) -> Call[list[ArtifactSummary]]:
        return _call("PUT", "/artifacts", list[ArtifactSummary], {"yaml": yaml_text(yaml)})

    # users, tokens, audit, status
    @staticmethod
    def list_users() -> Call[list[User]]:
        return _call("GET", "/users", list[User])

    @staticmethod
    def add_user(name: str, roles: Iterable[str], password: str | None) -> Call[User]:
        body = {"name": name, "roles": list(roles), "password": password}
        return _call("POST", "/users", User, body)

    @staticmethod
    def change_user(name: str, action: str, item: str | None = None) -> Call[User]:
        body = {"grant": item} if item is not None else None
        return _call("POST", f"/users/{segment(name)}/{action}", User, body)

    @staticmethod
    def my_tokens() -> Call[list[Token]]:
        return _call("GET", "/me/tokens", list[Token])

    @staticmethod
    def create_token(name: str, expires_in: float) -> Call[IssuedToken]:
        return _call("POST", "/me/tokens", IssuedToken, {"name": name, "expires_in": expires_in})

    @staticmethod
    def revoke_token(token_id: str) -> Call[None]:
        return _call("DELETE", f"/tokens/{segment(token_id)}", None)

    @staticmethod
    def audit(**filters: Any) -> Call[list[AuditEntry]]:
        return _call("GET", "/audit", list[AuditEntry], **filters)

    @staticmethod
    def status() -> Call[Status]:
        return _call("GET", "/status", Status)

    @staticmethod
    def me() -> Call[Me]:
        return _call("GET", "/me", Me)


# -- paging -------------------------------------------------------------------------------------


def next_offset(page: RowsPage, offset: int, limit: int) -> int | None:
    """Where the next page starts, or None after the last (a short page ends it, so rows that
    arrive while paging through a running collection are still read)."""
    if len(page.rows) < limit or not page.rows:
        return None
    return offset + len(page.rows)


# -- live state: server-sent events with a polling fallback -------------------------------------


class SSEDecoder:
    """Lines of a ``text/event-stream`` in, the ``data`` of each complete event out."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        line = line.rstrip("\r\n")
        if not line:
            data, self._data = self._data, []
            return "\n".join(data) if data else None
        if line.startswith(":"):
            return None  # a keep-alive comment
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None


class Deadline:
    """A wait's time limit (None: none), and how long one event-stream read may block."""

    def __init__(self, timeout: float | None) -> None:
        self.end = None if timeout is None else time.monotonic() + timeout
        self.timeout = timeout

    def remaining(self) -> float | None:
        return None if self.end is None else self.end - time.monotonic()

    @property
    def expired(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0

    def read_timeout(self) -> float:
        left = self.remaining()
        return SSE_READ_TIMEOUT if left is None else max(0.05, min(SSE_READ_TIMEOUT, left))

    def reconnect(self, read_timeout: float) -> bool:
        """Whether a stream opened with ``read_timeout`` could now overshoot the deadline by
        waiting for the next keep-alive: then it is reopened with a shorter read time-out."""
        left = self.remaining()
        return left is not None and 0 < left < read_timeout / 2

    def pause(self, attempt: int) -> float:
        """Polling interval: 0.25 s growing to 2 s, never past the deadline."""
        step = min(2.0, 0.25 * (1.5**attempt))
        left = self.remaining()
        return step if left is None else max(0.0, min(step, left))


@dataclass(frozen=True)
class Watch(Generic[T]):
    """How to follow one object live: its event stream, how to poll it, and when it is final."""

    events_path: str
    polls: tuple[Call[Any], ...]
    combine: Callable[..., T]
    from_event: Callable[[Any], T]
    final: Callable[[T], bool]
    what: str


def flow_watch(flow_id: str) -> Watch[Flow]:
    return Watch(
        events_path=f"/collections/{segment(flow_id)}/events",
        polls=(Api.get_collection(flow_id),),
        combine=lambda flow: flow,
        from_event=lambda data: msgspec.convert(data, Flow),
        final=lambda flow: flow.state in FINAL_FLOW_STATES,
        what=f"collection {flow_id}",
    )


def _progress(hunt: Hunt, stats: HuntStats) -> HuntProgress:
    return msgspec.convert({"state": hunt.state, **stats.to_dict()}, HuntProgress)


def hunt_watch(hunt_id: str) -> Watch[HuntProgress]:
    return Watch(
        events_path=f"/hunts/{segment(hunt_id)}/events",
        polls=(Api.get_hunt(hunt_id), Api.hunt_stats(hunt_id)),
        combine=_progress,
        from_event=lambda data: msgspec.convert(data, HuntProgress),
        final=lambda progress: progress.state in FINAL_HUNT_STATES,
        what=f"hunt {hunt_id}",
    )


class StreamUnusable(Exception):
    """The event stream cannot be used (not an event stream, dropped): poll instead."""


def check_event_stream(content_type: str) -> None:
    if not content_type.startswith("text/event-stream"):
        raise StreamUnusable(content_type)


# -- files --------------------------------------------------------------------------------------


_FILENAME = re.compile(r'filename="?([^";]+)"?')


class FileSink:
    """Writes a streamed body to ``path`` via a temporary file, renamed only when complete
    (and, given ``sha256``, only when the content has that hash)."""

    def __init__(self, path: str | os.PathLike[str], headers: httpx.Headers) -> None:
        target = Path(path)
        if target.is_dir():
            match = _FILENAME.search(headers.get("content-disposition", ""))
            name = Path(match.group(1)).name if match else "download"
            target = target / name
        self.path = target
        self.expected = headers.get("x-content-sha256")
        self.digest = hashlib.sha256()
        self.size = 0
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        self._temp = Path(temp)
        self._file: IO[bytes] = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self.digest.update(chunk)
        self.size += len(chunk)

    def finish(self) -> Path:
        self._file.close()
        actual = self.digest.hexdigest()
        if self.expected and actual != self.expected.lower():
            self._temp.unlink(missing_ok=True)
            raise IntegrityError(
                f"{self.path.name}: SHA-256 {actual} differs from the server's {self.expected}; "
                "the download was discarded"
            )
        self._temp.replace(self.path)
        return self.path

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        self._temp.unlink(missing_ok=True)


def export_format(path: str | os.PathLike[str], fmt: str | None) -> str:
    if fmt:
        return fmt
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in ("csv", "jsonl", "parquet"):
        return suffix
    if suffix in ("ndjson", "json"):
        return "jsonl"
    raise ValueError(f"cannot tell the export format from {path}: name it .csv, .jsonl or .parquet")


# -- pandas -------------------------------------------------------------------------------------


def pandas_module() -> Any:
    """pandas, which is optional: say how to get it when it is missing."""
    try:
        return importlib.import_module("pandas")
    except ImportError:
        raise ImportError(
            "results as a DataFrame need pandas, which Peregrine does not install: "
            "pip install pandas"
        ) from None


def dataframe(rows: Iterable[Mapping[str, Any]]) -> Any:
    """A pandas DataFrame of ``rows``, columns in the order the rows give them."""
    return pandas_module().DataFrame.from_records(list(rows))
