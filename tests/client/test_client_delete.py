"""Deleting a client through the Python client (sync and async), as an administrator would."""

from __future__ import annotations

import asyncio
import time

import pytest

from peregrine.client import Conflict, DeletedClient, Forbidden, NotFound
from tests.client.conftest import Live


def _offline_client(live: Live, client_id: str) -> str:
    live.server.datastore.clients.enroll(client_id, client_id.encode(), time.time())
    return client_id


def test_delete_a_client(live: Live) -> None:
    retired = _offline_client(live, "C.00000000c11e0001")
    with live.client(live.reader_token) as reader, pytest.raises(Forbidden):
        reader.clients.delete(retired)
    with live.client() as admin:
        assert admin.clients.delete(retired) == DeletedClient(client_id=retired)
        with pytest.raises(NotFound):
            admin.clients.get(retired)
        with pytest.raises(NotFound):
            admin.clients.delete(retired)
        with pytest.raises(Conflict, match="force"):
            admin.clients.delete(live.client_id)  # connected
        assert admin.clients.get(live.client_id).online


def test_delete_a_client_async(live: Live) -> None:
    retired = _offline_client(live, "C.00000000c11e0002")

    async def go() -> DeletedClient:
        async with live.async_client() as admin:
            return await admin.clients.delete(retired)

    deleted = asyncio.run(go())
    assert deleted.client_id == retired and not deleted.was_connected
    assert live.server.datastore.clients.get(retired) is None
