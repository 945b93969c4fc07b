"""``client.events``: event monitoring — which event artifacts run where, how they run, and
the events they sent (``/events``).

::

    p.events.assign("Linux.Events.ProcessExecution", labels=["web"])
    p.events.assignments()                      # {"version": 7, "assignments": [...]}
    p.events.status(client_id="C.0123456789abcdef")
    p.events.rows("C.0123456789abcdef", "Linux.Events.ProcessExecution", start=t0, end=t1)
    p.events.export("C.0123456789abcdef", "Linux.Events.ProcessExecution", "events.csv")
    for batch in p.events.follow(artifact="Linux.Events.ProcessExecution"):
        ...                                     # each stored batch, live
    p.events.unassign("Linux.Events.ProcessExecution")

Answers are the API's JSON objects (dicts).
"""

from __future__ import annotations

import builtins
import json
import os
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from peregrine.client._core import Call, SSEDecoder, export_format, segment

if TYPE_CHECKING:
    from peregrine.client.aio import AsyncPeregrine
    from peregrine.client.sync import Peregrine

Json = dict[str, Any]


class EventCalls:
    """Every event-monitoring request, described once (sent by the sync and async clients)."""

    @staticmethod
    def assignments() -> Call[Json]:
        return Call("GET", "/events/assignments", Json)

    @staticmethod
    def assign(
        artifact: str, parameters: Mapping[str, Any] | None, labels: Iterable[str]
    ) -> Call[Json]:
        body = {"artifact": artifact, "parameters": dict(parameters or {}), "labels": list(labels)}
        return Call("POST", "/events/assignments", Json, {}, body)

    @staticmethod
    def unassign(artifact: str) -> Call[Json]:
        return Call("DELETE", f"/events/assignments/{segment(artifact)}", Json)

    @staticmethod
    def status(client_id: str | None, artifact: str | None) -> Call[list[Json]]:
        params = {"client_id": client_id, "artifact": artifact}
        return Call("GET", "/events/status", list[Json], _present(params))

    @staticmethod
    def rows(
        client_id: str,
        artifact: str,
        start: float | None,
        end: float | None,
        offset: int,
        limit: int,
    ) -> Call[Json]:
        params = {"start": start, "end": end, "offset": offset, "limit": limit}
        path = f"/events/clients/{segment(client_id)}/{segment(artifact)}"
        return Call("GET", path, Json, _present(params))

    @staticmethod
    def export(
        client_id: str, artifact: str, start: float | None, end: float | None, fmt: str
    ) -> Call[None]:
        params = {"start": start, "end": end, "format": fmt}
        path = f"/events/clients/{segment(client_id)}/{segment(artifact)}/export"
        return Call("GET", path, None, _present(params))

    @staticmethod
    def follow(client_id: str | None, artifact: str | None, seconds: float | None) -> Call[None]:
        params = {"client_id": client_id, "artifact": artifact, "seconds": seconds}
        return Call("GET", "/events/follow", None, _present(params))


def _present(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


class Events:
    """Event monitoring of a :class:`~peregrine.client.Peregrine`."""

    def __init__(self, client: Peregrine) -> None:
        self._c = client

    def assignments(self) -> Json:
        """The assignment set: its version and each assignment."""
        return self._c._run(EventCalls.assignments())

    def assign(
        self,
        artifact: str,
        parameters: Mapping[str, Any] | None = None,
        labels: Iterable[str] = (),
    ) -> Json:
        """Run an event artifact on every client (no labels) or on clients with any of
        ``labels``; replaces its earlier assignment. The new set."""
        return self._c._run(EventCalls.assign(artifact, parameters, labels))

    def unassign(self, artifact: str) -> Json:
        return self._c._run(EventCalls.unassign(artifact))

    def status(
        self, client_id: str | None = None, artifact: str | None = None
    ) -> builtins.list[Json]:
        """How each event artifact runs on each client (running, restarting, failed...)."""
        return self._c._run(EventCalls.status(client_id, artifact))

    def rows(
        self,
        client_id: str,
        artifact: str,
        start: float | None = None,
        end: float | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> builtins.list[Json]:
        """A page of the client's events of ``artifact`` in ``[start, end)`` (epoch seconds)."""
        page = self._c._run(EventCalls.rows(client_id, artifact, start, end, offset, limit))
        rows: builtins.list[Json] = page["rows"]
        return rows

    def export(
        self,
        client_id: str,
        artifact: str,
        path: str | os.PathLike[str],
        *,
        start: float | None = None,
        end: float | None = None,
        format: str | None = None,
    ) -> Path:
        """Stream the events of ``[start, end)`` to ``path`` (csv, jsonl or parquet)."""
        fmt = export_format(path, format)
        return self._c._to_file(EventCalls.export(client_id, artifact, start, end, fmt), path)

    def follow(
        self,
        client_id: str | None = None,
        artifact: str | None = None,
        seconds: float | None = None,
    ) -> Iterator[Json]:
        """Each batch of events as the server stores it (client_id, hostname, artifact,
        source, first_seq, rows), until ``seconds`` have passed, or for good."""
        call = EventCalls.follow(client_id, artifact, seconds)
        timeout = httpx.Timeout(self._c._timeout.connect, read=None)
        with self._c._stream(call, timeout) as response:
            decoder = SSEDecoder()
            for line in response.iter_lines():
                data = decoder.feed(line)
                if data is not None:
                    yield json.loads(data)


class AsyncEvents:
    """Event monitoring of an :class:`~peregrine.client.AsyncPeregrine`."""

    def __init__(self, client: AsyncPeregrine) -> None:
        self._c = client

    async def assignments(self) -> Json:
        return await self._c._run(EventCalls.assignments())

    async def assign(
        self,
        artifact: str,
        parameters: Mapping[str, Any] | None = None,
        labels: Iterable[str] = (),
    ) -> Json:
        return await self._c._run(EventCalls.assign(artifact, parameters, labels))

    async def unassign(self, artifact: str) -> Json:
        return await self._c._run(EventCalls.unassign(artifact))

    async def status(
        self, client_id: str | None = None, artifact: str | None = None
    ) -> builtins.list[Json]:
        return await self._c._run(EventCalls.status(client_id, artifact))

    async def rows(
        self,
        client_id: str,
        artifact: str,
        start: float | None = None,
        end: float | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> builtins.list[Json]:
        page = await self._c._run(EventCalls.rows(client_id, artifact, start, end, offset, limit))
        rows: builtins.list[Json] = page["rows"]
        return rows

    async def export(
        self,
        client_id: str,
        artifact: str,
        path: str | os.PathLike[str],
        *,
        start: float | None = None,
        end: float | None = None,
        format: str | None = None,
    ) -> Path:
        """Stream the events of ``[start, end)`` to ``path`` (csv, jsonl or parquet)."""
        fmt = export_format(path, format)
        call = EventCalls.export(client_id, artifact, start, end, fmt)
        return await self._c._to_file(call, path)

    async def follow(
        self,
        client_id: str | None = None,
        artifact: str | None = None,
        seconds: float | None = None,
    ) -> AsyncIterator[Json]:
        """Each batch of events as the server stores it, until ``seconds`` have passed, or
        for good (see :meth:`Events.follow`)."""
        call = EventCalls.follow(client_id, artifact, seconds)
        timeout = httpx.Timeout(self._c._timeout.connect, read=None)
        async with self._c._stream(call, timeout) as response:
            decoder = SSEDecoder()
            async for line in response.aiter_lines():
                data = decoder.feed(line)
                if data is not None:
                    yield json.loads(data)
