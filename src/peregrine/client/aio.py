"""The asynchronous client: ``AsyncPeregrine``, the same API as ``Peregrine`` with ``await``.

Calls are described in ``_core``; this only sends them."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import os
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
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
from peregrine.client.alerts import AsyncAlerts, AsyncRules
from peregrine.client.analysis import AsyncAnalysis
from peregrine.client.errors import ServerError, TransportError, WaitTimeout
from peregrine.client.events import AsyncEvents
from peregrine.client.files import AsyncFiles
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
from peregrine.client.notebooks import AsyncNotebooks
from peregrine.client.timelines import AsyncTimelines

T = TypeVar("T")


class AsyncPeregrine:
    """A connection to a Peregrine server's API, for asyncio programs.

    >>> async with AsyncPeregrine("https://peregrine.example:8444", token, ca_cert="ca.pem") as p:
    ...     flow = await p.collections.create("C.1a2b3c4d5e6f7a8b", ["Linux.Sys.Users"])
    ...     await p.collections.wait(flow.flow_id, timeout=300)
    ...     rows = [r async for r in p.collections.iter_results(flow.flow_id, "Linux.Sys.Users")]
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
        self._http = httpx.AsyncClient(
            base_url=conn.base_url, headers=conn.headers, verify=conn.verify, timeout=conn.timeout
        )
        self.clients = AsyncClients(self)
        self.collections = AsyncCollections(self)
        self.hunts = AsyncHunts(self)
        self.artifacts = AsyncArtifacts(self)
        self.users = AsyncUsers(self)
        self.tokens = AsyncTokens(self)
        self.audit = AsyncAudit(self)
        self.analysis = AsyncAnalysis(self)
        self.notebooks = AsyncNotebooks(self)
        self.timelines = AsyncTimelines(self)
        self.events = AsyncEvents(self)
        self.files = AsyncFiles(self)
        self.alerts = AsyncAlerts(self)
        self.rules = AsyncRules(self)

    @classmethod
    def from_env(cls, **overrides: Any) -> AsyncPeregrine:
        """From ``PEREGRINE_URL``, ``PEREGRINE_TOKEN`` and ``PEREGRINE_CA_CERT``."""
        url, token, ca_cert = env_settings()
        options: dict[str, Any] = {"token": token, "ca_cert": ca_cert, **overrides}
        return cls(options.pop("url", url), **options)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncPeregrine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def status(self) -> Status:
        return await self._run(Api.status())

    async def me(self) -> Me:
        return await self._run(Api.me())

    # -- sending --------------------------------------------------------------------------------

    async def _run(self, call: Call[T]) -> T:
        try:
            response = await self._http.request(
                call.method, call.path, params=call.params or None, json=call.json
            )
        except httpx.TransportError as exc:
            raise transport_error(exc, self.url) from None
        return decode(
            call, response.status_code, response.content, response.reason_phrase, response.headers
        )

    @contextlib.asynccontextmanager
    async def _stream(
        self, call: Call[Any], timeout: httpx.Timeout | None = None
    ) -> AsyncIterator[httpx.Response]:
        try:
            async with self._http.stream(
                call.method,
                call.path,
                params=call.params or None,
                json=call.json,
                timeout=timeout or self._timeout,
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise_for(
                        response.status_code,
                        response.content,
                        response.reason_phrase,
                        response.headers,
                    )
                yield response
        except httpx.TransportError as exc:
            raise transport_error(exc, self.url) from None

    async def _pages(
        self, make: Callable[[int, int], Call[RowsPage]], page_size: int
    ) -> AsyncIterator[Any]:
        offset: int | None = 0
        while offset is not None:
            page = await self._run(make(offset, page_size))
            for row in page.rows:
                yield row
            offset = next_offset(page, offset, page_size)

    async def _to_file(self, call: Call[Any], path: str | os.PathLike[str]) -> Path:
        async with self._stream(call, httpx.Timeout(self._timeout.connect, read=None)) as response:
            sink = await asyncio.to_thread(FileSink, path, response.headers)
            try:
                async for chunk in response.aiter_bytes(1 << 20):
                    await asyncio.to_thread(sink.write, chunk)
            except BaseException:
                sink.abort()
                raise
        return await asyncio.to_thread(sink.finish)

    async def _events(self, spec: Watch[T], deadline: Deadline) -> AsyncGenerator[T, None]:
        read = deadline.read_timeout()
        call: Call[None] = Call("GET", spec.events_path, None)
        timeout = httpx.Timeout(self._timeout.connect, read=read)
        async with self._stream(call, timeout) as response:
            check_event_stream(response.headers.get("content-type", ""))
            decoder = SSEDecoder()
            async for line in response.aiter_lines():
                data = decoder.feed(line)
                if data is not None:
                    try:
                        yield spec.from_event(json.loads(data))
                    except (ValueError, msgspec.ValidationError) as exc:
                        raise StreamUnusable(str(exc)) from None
                if deadline.reconnect(read):
                    return
        raise StreamUnusable("the event stream ended")

    async def _watch(self, spec: Watch[T], timeout: float | None) -> AsyncGenerator[T, None]:
        """Like ``Peregrine._watch``: the event stream, else polling."""
        deadline = Deadline(timeout)
        last: T | None = None
        use_events = True
        attempt = 0
        while True:
            if use_events:
                try:
                    async with contextlib.aclosing(self._events(spec, deadline)) as events:
                        async for item in events:
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
                results = [await self._run(c) for c in spec.polls]
                item = spec.combine(*results)
                if item != last:
                    last = item
                    yield item
                if spec.final(item):
                    return
                if not deadline.expired:
                    await asyncio.sleep(deadline.pause(attempt))
                    attempt += 1
            if deadline.expired:
                raise WaitTimeout(f"{spec.what} still not done after {deadline.timeout:g} s")


class _Group:
    def __init__(self, client: AsyncPeregrine) -> None:
        self._c = client


class AsyncClients(_Group):
    async def search(self, q: str = "", limit: int = 100, offset: int = 0) -> ClientPage:
        return await self._c._run(Api.search_clients(q, limit, offset))

    async def get(self, client_id: str) -> ClientDetail:
        return await self._c._run(Api.get_client(client_id))

    async def label(
        self, client_id: str, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> list[str]:
        return await self._c._run(Api.label_client(client_id, add, remove))

    async def delete(self, client_id: str, *, force: bool = False) -> DeletedClient:
        """See ``Peregrine.clients.delete``."""
        return await self._c._run(Api.delete_client(client_id, force))


class AsyncCollections(_Group):
    async def create(
        self, client_id: str, artifacts: ArtifactsArg, *, limits: LimitsArg = None
    ) -> Flow:
        return await self._c._run(Api.create_collection(client_id, artifacts, limits))

    async def list(self, client_id: str, limit: int = 100, offset: int = 0) -> builtins.list[Flow]:
        return await self._c._run(Api.client_collections(client_id, limit, offset))

    async def get(self, flow_id: str) -> Flow:
        return await self._c._run(Api.get_collection(flow_id))

    async def cancel(self, flow_id: str) -> Flow:
        return await self._c._run(Api.cancel_collection(flow_id))

    async def logs(self, flow_id: str, offset: int = 0, limit: int = 100) -> RowsPage:
        return await self._c._run(Api.collection_logs(flow_id, offset, limit))

    async def results(
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
        return await self._c._run(
            Api.collection_results(flow_id, artifact, source, offset, limit, view)
        )

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
    ) -> AsyncIterator[dict[str, Any]]:
        view = row_view(sort, order, filters)
        return self._c._pages(
            lambda offset, limit: Api.collection_results(
                flow_id, artifact, source, offset, limit, view
            ),
            page_size,
        )

    async def uploads(self, flow_id: str) -> builtins.list[Upload]:
        return await self._c._run(Api.collection_uploads(flow_id))

    async def download(self, flow_id: str, upload_id: str, path: str | os.PathLike[str]) -> Path:
        return await self._c._to_file(Api.download_upload(flow_id, upload_id), path)

    async def export(
        self,
        flow_id: str,
        artifact: str,
        path: str | os.PathLike[str],
        *,
        source: str = "",
        format: str | None = None,
    ) -> Path:
        fmt = export_format(path, format)
        return await self._c._to_file(Api.collection_export(flow_id, artifact, source, fmt), path)

    def watch(self, flow_id: str, timeout: float | None = None) -> AsyncGenerator[Flow, None]:
        return self._c._watch(flow_watch(flow_id), timeout)

    async def wait(
        self,
        flow_id: str,
        timeout: float | None = None,
        on_update: Callable[[Flow], object] | None = None,
    ) -> Flow:
        last = None
        async with contextlib.aclosing(self.watch(flow_id, timeout)) as states:
            async for last in states:
                if on_update is not None:
                    result = on_update(last)
                    if isinstance(result, Awaitable):
                        await result
        assert last is not None
        return last

    async def dataframe(self, flow_id: str, artifact: str, source: str = "") -> Any:
        pandas_module()
        return dataframe([row async for row in self.iter_results(flow_id, artifact, source)])


class AsyncHunts(_Group):
    async def create(
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
        return await self._c._run(
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

    async def list(
        self, state: str | Iterable[str] | None = None, limit: int = 100, offset: int = 0
    ) -> builtins.list[Hunt]:
        return await self._c._run(Api.list_hunts(state, limit, offset))

    async def get(self, hunt_id: str) -> Hunt:
        return await self._c._run(Api.get_hunt(hunt_id))

    async def start(self, hunt_id: str) -> Hunt:
        return await self._c._run(Api.change_hunt(hunt_id, "start"))

    async def pause(self, hunt_id: str) -> Hunt:
        return await self._c._run(Api.change_hunt(hunt_id, "pause"))

    async def stop(self, hunt_id: str, cancel: bool = False) -> Hunt:
        return await self._c._run(Api.change_hunt(hunt_id, "stop", cancel=cancel))

    async def archive(self, hunt_id: str) -> Hunt:
        return await self._c._run(Api.change_hunt(hunt_id, "archive"))

    async def add_client(self, hunt_id: str, client_id: str) -> bool:
        return await self._c._run(Api.hunt_add(hunt_id, client_id))

    async def stats(self, hunt_id: str) -> HuntStats:
        return await self._c._run(Api.hunt_stats(hunt_id))

    async def clients(
        self, hunt_id: str, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> builtins.list[HuntClient]:
        return await self._c._run(Api.hunt_clients(hunt_id, state, limit, offset))

    async def results(
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
        """A page of rows: sorted by ``sort`` and kept by ``filters`` when given."""
        view = row_view(sort, order, filters)
        return await self._c._run(Api.hunt_results(hunt_id, artifact, source, offset, limit, view))

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
    ) -> AsyncIterator[dict[str, Any]]:
        view = row_view(sort, order, filters)
        return self._c._pages(
            lambda offset, limit: Api.hunt_results(hunt_id, artifact, source, offset, limit, view),
            page_size,
        )

    async def export(
        self,
        hunt_id: str,
        artifact: str,
        path: str | os.PathLike[str],
        *,
        source: str = "",
        format: str | None = None,
    ) -> Path:
        fmt = export_format(path, format)
        return await self._c._to_file(Api.hunt_export(hunt_id, artifact, source, fmt), path)

    def watch(
        self, hunt_id: str, timeout: float | None = None
    ) -> AsyncGenerator[HuntProgress, None]:
        return self._c._watch(hunt_watch(hunt_id), timeout)

    async def dataframe(self, hunt_id: str, artifact: str, source: str = "") -> Any:
        pandas_module()
        return dataframe([row async for row in self.iter_results(hunt_id, artifact, source)])


class AsyncArtifacts(_Group):
    async def list(self, search: str | None = None) -> builtins.list[ArtifactSummary]:
        return await self._c._run(Api.list_artifacts(search))

    async def show(self, name: str) -> dict[str, Any]:
        return await self._c._run(Api.show_artifact(name))

    async def check(self, yaml: str | os.PathLike[str]) -> builtins.list[Problem]:
        return await self._c._run(Api.check_artifacts(yaml))

    async def put(self, yaml: str | os.PathLike[str]) -> builtins.list[ArtifactSummary]:
        return await self._c._run(Api.put_artifacts(yaml))


class AsyncUsers(_Group):
    async def list(self) -> builtins.list[User]:
        return await self._c._run(Api.list_users())

    async def add(self, name: str, roles: Iterable[str] = (), password: str | None = None) -> User:
        return await self._c._run(Api.add_user(name, roles, password))

    async def grant(self, name: str, role_or_permission: str) -> User:
        return await self._c._run(Api.change_user(name, "grant", role_or_permission))

    async def revoke(self, name: str, role_or_permission: str) -> User:
        return await self._c._run(Api.change_user(name, "revoke", role_or_permission))

    async def disable(self, name: str) -> User:
        return await self._c._run(Api.change_user(name, "disable"))


class AsyncTokens(_Group):
    async def mine(self) -> list[Token]:
        return await self._c._run(Api.my_tokens())

    async def create(self, name: str = "api", expires_in: float = 90 * 86400) -> IssuedToken:
        return await self._c._run(Api.create_token(name, expires_in))

    async def revoke(self, token_id: str) -> None:
        await self._c._run(Api.revoke_token(token_id))


class AsyncAudit(_Group):
    async def query(
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
        return await self._c._run(
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
