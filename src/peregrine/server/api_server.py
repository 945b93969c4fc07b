"""Serve the REST API from the frontend's own event loop (uvicorn, HTTPS).

Part of the composition root: the only module of ``server/`` that imports the API, which it
gives the services, the accounts, the audit log and this process's readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

import uvicorn

if TYPE_CHECKING:
    from peregrine.api.deps import ApiContext
    from peregrine.server.app import Server

log = logging.getLogger(__name__)


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its signal handlers: the frontend process owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    def __init__(self, server: Server) -> None:
        from peregrine.api.app import create_app

        self.server = server
        config = server.config
        app = create_app(server.services, server.accounts, server.audit, server.readiness)
        self._ctx: ApiContext = app.state.ctx
        self._uvicorn = _EmbeddedUvicorn(
            uvicorn.Config(
                app,
                host=config.api_bind_address,
                port=config.api_port,
                ssl_certfile=config.server_cert_path,
                ssl_keyfile=config.server_key_path,
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=5,
            )
        )
        self._task: asyncio.Task[None] | None = None
        self.port: int | None = None

    async def start(self) -> None:
        sockets = None
        if self.server.workers > 1:
            # Several frontend processes share the API port, as they share the agent port.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.server.config.api_bind_address, self.server.config.api_port))
            sock.set_inheritable(True)
            sockets = [sock]
        self._task = asyncio.create_task(self._uvicorn.serve(sockets=sockets))
        while not self._uvicorn.started:
            if self._task.done():
                self._task.result()  # raises why it could not start (port in use...)
            await asyncio.sleep(0.02)
        sockets = [s for server in self._uvicorn.servers for s in server.sockets]
        self.port = sockets[0].getsockname()[1] if sockets else self.server.config.api_port
        log.info("API on https://%s:%s/api/v1", self.server.config.api_bind_address, self.port)

    async def stop(self) -> None:
        self._uvicorn.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._ctx.close()  # the password threads
