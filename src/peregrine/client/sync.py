"""The synchronous client: ``Peregrine``. Calls are described in ``_core``; this only sends them."""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec

from peregrine.client._core import (
    PAGE_SIZE,
    Api,
    ArtifactsArg,
    Call,
    Deadline,
    FileSink,
    LimitsArg,
    SSEDecoder,
    StreamUnusable,
    Watch,
    check_event_stream,
    connection,
    dataframe,
    decode,
    env_settings,
    export_format,
    flow_watch,
    hunt_watch,
    next_offset,
    pandas_module,
    raise_for,
    row_view,
    transport_error,
)
from peregrine.client.alerts import Alerts, Rules
from peregrine.client.analysis import Analysis
from peregrine.client.errors import ServerError, TransportError, WaitTimeout
from peregrine.client.events import Events
from peregrine.client.files import Files
from peregrine.client.models import (
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
    Me,
    Problem,
    RowsPage,
    Status,
    Token,
    Upload,
    User,
)
from peregrine.client.notebooks import Notebooks
from peregrine.client.timelines import Timelines

T = TypeVar("T")


class Peregrine:
    """A connection to a Peregrine server's API.

    >>> with Peregrine("https://peregrine.example:8444", token, ca_cert="ca.pem") as p:
    ...     flow = p.collections.create("C.1a2b3c4d5e6f7a8b", ["Linux.Sys.Users"])
    ...     p.collections.wait(flow.flow_id, timeout=300)
    ...     rows = list(p.collections.iter_results(flow.flow_id, "Linux.Sys.Users"))

    ``ca_cert`` is the deployment's CA certificate (the server's certificate is verified
    against it); without it the system's trusted CAs are used. ``timeout`` bounds each request
    (waiting and streaming calls have their own).
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        ca_cert: str | os.PathLike[str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        conn = connection(url, token, ca_cert, timeout)
        self.url = conn.base_url
        self._timeout = conn.timeout
        self._http = httpx.Client(
            base_url=conn.base_url, headers=conn.headers, verify=conn.verify, timeout=conn.timeout
        )
        self.clients = Clients(self)
        self.collections = Collections(self)
        self.hunts = Hunts(self)
        self.artifacts = Artifacts(self)
        self.users = Users(self)
        self.tokens = Tokens(self)
        self.audit = Audit(self)
        self.analysis = Analysis(self)
        self.notebooks = Notebooks(self)
        self.timelines = Timelines(self)
        self.events = Events(self)
        self.files = Files(self)
        self.alerts = Alerts(self)
        self.rules = Rules(self)

    @classmethod
    def from_env(cls, **overrides: Any) -> Peregrine:
        """From ``PEREGRINE_URL``, ``PEREGRINE_TOKEN`` and ``PEREGRINE_CA_CERT``."""
        url, token, ca_cert = env_settings()
        options: dict[str, Any] = {"token": token, "ca_cert": ca_cert, **overrides}
        return cls(options.pop("url", url), **options)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Peregrine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def status(self) -> Status:
        return self._run(Api.status())

    def me(self) -> Me:
        return self._run(Api.me())

    # -- sending --------------------------------------------------------------------------------

    def _run(self, call: Call[T]) -> T:
        try:
            response = self._http.request(
                call.method, call.path, params=call.params or None, json=call.json
            )
        except httpx.TransportError as exc:
            raise transport_error(exc, self.url) from None
        return decode(
            call, response.status_code, response.content, response.reason_phrase, response.headers
        )

    @contextlib.contextmanager
    def _stream(
        self, call: Call[Any], timeout: httpx.Timeout | None = None
    ) -> Iterator[httpx.Response]:
        """A response whose body is still to be read (an error status has been raised)."""
        try:
            with self._http.stream(
                call.method,
                call.path,
                params=call.params or None,
                json=call.json,
                timeout=timeout or self._timeout,
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise_for(
                        response.status_code,
                        response.content,
                        response.reason_phrase,
                        response.headers,
                    )
                yield response
        except httpx.TransportError as exc:
            raise transport_error(exc, self.url) from None

    def _pages(self, make: Callable[[int, int], Call[RowsPage]], page_size: int) -> Iterator[Any]:
        offset: int | None = 0
        while offset is not None:
            page = self._run(make(offset, page_size))
            yield from page.rows
            offset = next_offset(page, offset, page_size)

    def _to_file(self, call: Call[Any], path: str | os.PathLike[str]) -> Path:
        with self._stream(call, httpx.Timeout(self._timeout.connect, read=None)) as response:
            sink = FileSink(path, response.headers)
            try:
                for chunk in response.iter_bytes(1 << 20):
                    sink.write(chunk)
            except BaseException:
                sink.abort()
                raise
        return sink.finish()

    def _events(self, spec: Watch[T], deadline: Deadline) -> Generator[T, None, None]:
        read = deadline.read_timeout()
        call: Call[None] = Call("GET", spec.events_path, None)
        timeout = httpx.Timeout(self._timeout.connect, read=read)
        with self._stream(call, timeout) as response:
            check_event_stream(response.headers.get("content-type", ""))
            decoder = SSEDecoder()
            for line in response.iter_lines():
                data = decoder.feed(line)
                if data is not None:
                    try:
                        yield spec.from_event(json.loads(data))
                    except (ValueError, msgspec.ValidationError) as exc:
                        raise StreamUnusable(str(exc)) from None
                if deadline.reconnect(read):
                    return
        raise StreamUnusable("the event stream ended")

    def _watch(self, spec: Watch[T], timeout: float | None) -> Generator[T, None, None]:
        """Each new state until a final one: from the event stream, or by polling when the
        stream cannot be used (a proxy that buffers, an older server)."""
        deadline = Deadline(timeout)
        last: T | None = None
        use_events = True
        attempt = 0
        while True:
            if use_events:
                try:
                    with contextlib.closing(self._events(spec, deadline)) as events:
                        for item in events:
                            if item != last:
                                last = item
                                yield item
                            if spec.final(item):
                                return
                            if deadline.expired:
                                break
                except (StreamUnusable, TransportError, ServerError):
                    use_events = deadline.expired  # a read time-out at the deadline
            else:
                item = spec.combine(*(self._run(c) for c in spec.polls))
                if item != last:
                    last = item
                    yield item
                if spec.final(item):
                    return
                if not deadline.expired:
                    time.sleep(deadline.pause(attempt))
                    attempt += 1
            if deadline.expired:
                raise WaitTimeout(f"{spec.what} still not done after {deadline.timeout:g} s")


class _Group:
    def __init__(self, client: Peregrine) -> None:
        self._c = client


class Clients(_Group):
    def search(self, q: str = "", limit: int = 100, offset: int = 0) -> ClientPage:
        """``host:web-* label:prod os:linux ip: client: recent:15m online:true`` and free text."""
        return self._c._run(Api.search_clients(q, limit, offset))

    def get(self, client_id: str) -> ClientDetail:
        return self._c._run(Api.get_client(client_id))

    def label(
        self, client_id: str, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> list[str]:
        """The client's labels afterwards."""
        return self._c._run(Api.label_client(client_id, add, remove))

    def delete(self, client_id: str, *, force: bool = False) -> DeletedClient:
        """Delete the client with its collections, files and hunt entries (administrators).
        A connected client raises Conflict unless ``force`` (it is then disconnected)."""
        return self._c._run(Api.delete_client(client_id, force))


class Collections(_Group):
    def create(self, client_id: str, artifacts: ArtifactsArg, *, limits: LimitsArg = None) -> Flow:
        """Start collecting ``artifacts`` (``"Name"``, ``[("Name", {params})]``, ...)."""
        return self._c._run(Api.create_collection(client_id, artifacts, limits))

    def list(self, client_id: str, limit: int = 100, offset: int = 0) -> builtins.list[Flow]:
        """A client's collections, newest first."""
        return self._c._run(Api.client_collections(client_id, limit, offset))

    def get(self, flow_id: str) -> Flow:
        return self._c._run(Api.get_collection(flow_id))

    def cancel(self, flow_id: str) -> Flow:
        return self._c._run(Api.cancel_collection(flow_id))

    def logs(self, flow_id: str, offset: int = 0, limit: int = 100) -> RowsPage:
        return self._c._run(Api.collection_logs(flow_id, offset, limit))

    def results(
        self,
        flow_id: str,
        artifact: str,
        source: str = "",
        offset: int = 0,
        limit: int = 100,
        *,
        sort: str | None = None,
        order: str = "asc",
        filters: Iterable[str] = (),
    ) -> RowsPage:
        """A page of rows: sorted by ``sort`` and kept by ``filters`` when given."""
        view = row_view(sort, order, filters)
        return self._c._run(Api.collection_results(flow_id, artifact, source, offset, limit, view))

    def iter_results(
        self,
        flow_id: str,
        artifact: str,
        source: str = "",
        page_size: int = PAGE_SIZE,
        *,
        sort: str | None = None,
        order: str = "asc",
        filters: Iterable[str] = (),
    ) -> Iterator[dict[str, Any]]:
        """Every row, fetched a page at a time."""
        view = row_view(sort, order, filters)
        return self._c._pages(
            lambda offset, limit: Api.collection_results(
                flow_id, artifact, source, offset, limit, view
            ),
            page_size,
        )

    def uploads(self, flow_id: str) -> builtins.list[Upload]:
        return self._c._run(Api.collection_uploads(flow_id))

    def download(self, flow_id: str, upload_id: str, path: str | os.PathLike[str]) -> Path:
        """Stream an uploaded file to ``path`` (a file, or a directory to put it in); kept only
        if its SHA-256 is the one the server announced (else IntegrityError)."""
        return self._c._to_file(Api.download_upload(flow_id, upload_id), path)

    def export(
        self,
        flow_id: str,
        artifact: str,
        path: str | os.PathLike[str],
        *,
        source: str = "",
        format: str | None = None,
    ) -> Path:
        """Stream one result set to ``path`` (csv, jsonl or parquet; by default from
        ``path``'s suffix), in its stored order; a cut transfer leaves no file."""
        fmt = export_format(path, format)
        return self._c._to_file(Api.collection_export(flow_id, artifact, source, fmt), path)

    def watch(self, flow_id: str, timeout: float | None = None) -> Generator[Flow, None, None]:
        """Each new state of the collection, the last one final (WaitTimeout after
        ``timeout`` seconds)."""
        return self._c._watch(flow_watch(flow_id), timeout)

    def wait(
        self,
        flow_id: str,
        timeout: float | None = None,
        on_update: Callable[[Flow], object] | None = None,
    ) -> Flow:
        """The collection once it is Finished, Error or Cancelled."""
        last = None
        with contextlib.closing(self.watch(flow_id, timeout)) as states:
            for last in states:
                if on_update is not None:
                    on_update(last)
        assert last is not None
        return last

    def dataframe(self, flow_id: str, artifact: str, source: str = "") -> Any:
        """All rows of one result set as a pandas DataFrame (needs pandas)."""
        pandas_module()
        return dataframe(self.iter_results(flow_id, artifact, source))


class Hunts(_Group):
    def create(
        self,
        artifacts: ArtifactsArg,
        *,
        description: str = "",
        tags: Iterable[str] = (),
        include_labels: Iterable[str] = (),
        exclude_labels: Iterable[str] = (),
        os: Iterable[str] = (),
        client_limit: int | None = None,
        expires_in: float = 7 * 86400,
        notifications_per_second: float | None = None,
        limits: LimitsArg = None,
        every_seconds: float | None = None,
        cron: str | None = None,
        start: bool = False,
    ) -> Hunt:
        """A new hunt, Paused: ``start`` it (or pass ``start=True``: Running at once)."""
        return self._c._run(
            Api.create_hunt(
                artifacts,
                limits,
                start=start or None,  # not sent by default: older servers refuse it
                description=description,
                tags=list(tags),
                include_labels=list(include_labels),
                exclude_labels=list(exclude_labels),
                os=list(os),
                client_limit=client_limit,
                expires_in=expires_in,
                notifications_per_second=notifications_per_second,
                every_seconds=every_seconds,
                cron=cron,
            )
        )

    def list(
        self, state: str | Iterable[str] | None = None, limit: int = 100, offset: int = 0
    ) -> builtins.list[Hunt]:
        return self._c._run(Api.list_hunts(state, limit, offset))

    def get(self, hunt_id: str) -> Hunt:
        return self._c._run(Api.get_hunt(hunt_id))

    def start(self, hunt_id: str) -> Hunt:
        return self._c._run(Api.change_hunt(hunt_id, "start"))

    def pause(self, hunt_id: str) -> Hunt:
        return self._c._run(Api.change_hunt(hunt_id, "pause"))

    def stop(self, hunt_id: str, cancel: bool = False) -> Hunt:
        """``cancel``: also cancel the hunt's collections still running."""
        return self._c._run(Api.change_hunt(hunt_id, "stop", cancel=cancel))

    def archive(self, hunt_id: str) -> Hunt:
        return self._c._run(Api.change_hunt(hunt_id, "archive"))

    def add_client(self, hunt_id: str, client_id: str) -> bool:
        """Schedule the hunt on this client now; False if it already has it."""
        return self._c._run(Api.hunt_add(hunt_id, client_id))

    def stats(self, hunt_id: str) -> HuntStats:
        return self._c._run(Api.hunt_stats(hunt_id))

    def clients(
        self, hunt_id: str, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> builtins.list[HuntClient]:
        return self._c._run(Api.hunt_clients(hunt_id, state, limit, offset))

    def results(
        self,
        hunt_id: str,
        artifact: str,
        source: str = "",
        offset: int = 0,
        limit: int = 100,
        *,
        sort: str | None = None,
        order: str = "asc",
        filters: Iterable[str] = (),
    ) -> RowsPage:
        """A page of the combined results; each row has ``client_id`` and ``hostname``."""
        view = row_view(sort, order, filters)
        return self._c._run(Api.hunt_results(hunt_id, artifact, source, offset, limit, view))

    def iter_results(
        self,
        hunt_id: str,
        artifact: str,
        source: str = "",
        page_size: int = PAGE_SIZE,
        *,
        sort: str | None = None,
        order: str = "asc",
        filters: Iterable[str] = (),
    ) -> Iterator[dict[str, Any]]:
        view = row_view(sort, order, filters)
        return self._c._pages(
            lambda offset, limit: Api.hunt_results(hunt_id, artifact, source, offset, limit, view),
            page_size,
        )

    def export(
        self,
        hunt_id: str,
        artifact: str,
        path: str | os.PathLike[str],
        *,
        source: str = "",
        format: str | None = None,
    ) -> Path:
        """Stream an export (csv, jsonl or parquet; by default from ``path``'s suffix)."""
        fmt = export_format(path, format)
        return self._c._to_file(Api.hunt_export(hunt_id, artifact, source, fmt), path)

    def watch(
        self, hunt_id: str, timeout: float | None = None
    ) -> Generator[HuntProgress, None, None]:
        """Each new state and statistics of the hunt, until it is stopped or archived."""
        return self._c._watch(hunt_watch(hunt_id), timeout)

    def dataframe(self, hunt_id: str, artifact: str, source: str = "") -> Any:
        pandas_module()
        return dataframe(self.iter_results(hunt_id, artifact, source))


class Artifacts(_Group):
    def list(self, search: str | None = None) -> builtins.list[ArtifactSummary]:
        return self._c._run(Api.list_artifacts(search))

    def show(self, name: str) -> dict[str, Any]:
        """The artifact's full definition."""
        return self._c._run(Api.show_artifact(name))

    def check(self, yaml: str | os.PathLike[str]) -> builtins.list[Problem]:
        """Problems of artifact YAML (text, or a path); nothing is stored."""
        return self._c._run(Api.check_artifacts(yaml))

    def put(self, yaml: str | os.PathLike[str]) -> builtins.list[ArtifactSummary]:
        """Add or update custom artifacts (refused with BadRequest if any has an error)."""
        return self._c._run(Api.put_artifacts(yaml))


class Users(_Group):
    def list(self) -> builtins.list[User]:
        return self._c._run(Api.list_users())

    def add(self, name: str, roles: Iterable[str] = (), password: str | None = None) -> User:
        return self._c._run(Api.add_user(name, roles, password))

    def grant(self, name: str, role_or_permission: str) -> User:
        return self._c._run(Api.change_user(name, "grant", role_or_permission))

    def revoke(self, name: str, role_or_permission: str) -> User:
        return self._c._run(Api.change_user(name, "revoke", role_or_permission))

    def disable(self, name: str) -> User:
        return self._c._run(Api.change_user(name, "disable"))


class Tokens(_Group):
    def mine(self) -> list[Token]:
        return self._c._run(Api.my_tokens())

    def create(self, name: str = "api", expires_in: float = 90 * 86400) -> IssuedToken:
        """A new token for the caller; its text (``.token``) is shown only now."""
        return self._c._run(Api.create_token(name, expires_in))

    def revoke(self, token_id: str) -> None:
        self._c._run(Api.revoke_token(token_id))


class Audit(_Group):
    def query(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditEntry]:
        return self._c._run(
            Api.audit(
                since=since,
                until=until,
                actor=actor,
                action=action,
                target=target,
                limit=limit,
                offset=offset,
            )
        )
