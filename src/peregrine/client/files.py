"""``client.files``: the file browser — a client's directory listings and files as collected,
and asking the client again (``/clients/{id}/vfs``).

::

    flow = p.files.list_directory("C.0123456789abcdef", "/etc")    # a collection
    p.collections.wait(flow.flow_id)
    listing = p.files.listing("C.0123456789abcdef", "/etc")        # entries, listed, total
    flow = p.files.download_file("C.0123456789abcdef", "/etc/hosts")
    p.collections.wait(flow.flow_id)
    found = p.files.file("C.0123456789abcdef", "/etc/hosts")       # details (hashes), upload
    p.collections.download(flow.flow_id, found["upload"]["upload_id"], "hosts")

Stored listings and files are answers of the API as dicts; a launch is a :class:`Flow`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from peregrine.client._core import Call, segment
from peregrine.client.models import Flow

if TYPE_CHECKING:
    from peregrine.client.aio import AsyncPeregrine
    from peregrine.client.sync import Peregrine

Json = dict[str, Any]


class FileCalls:
    """Every file-browser request, described once (sent by the sync and async clients)."""

    @staticmethod
    def listing(client_id: str, path: str, offset: int, limit: int) -> Call[Json]:
        params = {"path": path, "offset": offset, "limit": limit}
        return Call("GET", f"/clients/{segment(client_id)}/vfs", Json, params)

    @staticmethod
    def file(client_id: str, path: str) -> Call[Json]:
        return Call("GET", f"/clients/{segment(client_id)}/vfs/file", Json, {"path": path})

    @staticmethod
    def launch(client_id: str, action: str, path: str) -> Call[Flow]:
        return Call("POST", f"/clients/{segment(client_id)}/vfs/{action}", Flow, {}, {"path": path})


class Files:
    """The file browser of a :class:`~peregrine.client.Peregrine`."""

    def __init__(self, client: Peregrine) -> None:
        self._c = client

    def listing(self, client_id: str, path: str, offset: int = 0, limit: int = 1000) -> Json:
        """The newest stored listing of directory ``path`` (``entries``, paged; ``finished``
        null when none was taken yet: :meth:`list_directory` asks the client)."""
        return self._c._run(FileCalls.listing(client_id, path, offset, limit))

    def file(self, client_id: str, path: str) -> Json:
        """The newest download of file ``path``: ``details`` (stat, hashes) and ``upload``."""
        return self._c._run(FileCalls.file(client_id, path))

    def list_directory(self, client_id: str, path: str) -> Flow:
        """Ask the client for a fresh listing (a collection: wait for it, then read it)."""
        return self._c._run(FileCalls.launch(client_id, "list", path))

    def download_file(self, client_id: str, path: str) -> Flow:
        """Collect the file into a collection's uploads, with its metadata and hashes."""
        return self._c._run(FileCalls.launch(client_id, "download", path))


class AsyncFiles:
    """The file browser of an :class:`~peregrine.client.AsyncPeregrine`."""

    def __init__(self, client: AsyncPeregrine) -> None:
        self._c = client

    async def listing(self, client_id: str, path: str, offset: int = 0, limit: int = 1000) -> Json:
        return await self._c._run(FileCalls.listing(client_id, path, offset, limit))

    async def file(self, client_id: str, path: str) -> Json:
        return await self._c._run(FileCalls.file(client_id, path))

    async def list_directory(self, client_id: str, path: str) -> Flow:
        return await self._c._run(FileCalls.launch(client_id, "list", path))

    async def download_file(self, client_id: str, path: str) -> Flow:
        return await self._c._run(FileCalls.launch(client_id, "download", path))
