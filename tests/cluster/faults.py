"""What the fault tests share: a simulated fleet through the balancer, a hunt over it, and the
check that every client's results arrived exactly once (read from the cluster's own
PostgreSQL and filestore, not from what the frontends say)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

from peregrine.cluster.devcluster import DevCluster
from peregrine.config import load_client_config, load_server_config
from peregrine.datastore import Datastore, open_datastore
from peregrine.filestore import Filestore
from peregrine.loadtest import Fleet
from tests.cluster.conftest import api, holders
from tests.server.harness import wait_until

#: One source; the simulator answers it with canned rows numbered 0..rows-1.
ARTIFACT = "Linux.Sys.Groups"


def fleet(
    cluster: DevCluster,
    count: int,
    key_dir: Path,
    *,
    rows: int = 3,
    answer_delay: float | Callable[[int], float] = 0.0,
) -> Fleet:
    """Simulated agents of the cluster, connecting through HAProxy (they reconnect within a
    second or two, jittered, as real agents with a short ``poll_max`` would)."""
    client = load_client_config(Path(cluster.state.client_config))
    config = msgspec.structs.replace(client, poll_min=0.2, poll_max=1.0)
    return Fleet(
        config, count, key_dir=key_dir, ramp_per_second=100, rows=rows, row_bytes=16,
        answer_delay=answer_delay,
    )  # fmt: skip


async def all_held(
    cluster: DevCluster, clients: list[str], timeout: float = 60, avoid: str = ""
) -> dict[str, str]:
    """Wait until every client is connected to a frontend other than ``avoid`` (as the
    frontends told Redis): client -> frontend."""

    def check() -> dict[str, str] | None:
        held = holders(cluster, avoid)
        return held if set(clients) <= set(held) else None

    found: dict[str, str] = await wait_until(check, timeout, 0.2)
    return {c: found[c] for c in clients}


async def start_hunt(cluster: DevCluster, **options: object) -> str:
    """A hunt of ``ARTIFACT`` on every client, created and started through the balancer."""
    client = api(cluster)
    try:
        hunt = await client.hunts.create(ARTIFACT, description="fault test", **options)  # type: ignore[arg-type]
        await client.hunts.start(hunt.hunt_id)
    finally:
        await client.close()
    return hunt.hunt_id


@contextmanager
def stores(cluster: DevCluster) -> Iterator[tuple[Datastore, Filestore]]:
    """The cluster's datastore and filestore, opened by the test itself."""
    config = load_server_config(Path(cluster.state.frontends[0].config))
    datastore = open_datastore(cluster.state.postgres_url)
    try:
        yield datastore, Filestore(Path(config.filestore_dir), 0)
    finally:
        datastore.close()


async def wait_hunt_done(cluster: DevCluster, hunt_id: str, clients: int, timeout: float) -> None:
    """Until every one of ``clients`` has a final collection of the hunt."""
    with stores(cluster) as (datastore, _):

        def done() -> bool:
            stats = datastore.hunts.stats(hunt_id)
            final = stats.finished + stats.errors + stats.cancelled + stats.unresponsive
            return bool(stats.scheduled >= clients and final >= clients)

        await wait_until(lambda: asyncio.to_thread(done), timeout, 0.5)


def assert_exactly_once(cluster: DevCluster, hunt_id: str, clients: list[str], rows: int) -> None:
    """Every client has one collection of the hunt, Finished, holding rows 0..rows-1 once
    each in the filestore and counted once in the datastore; the hunt's statistics agree."""
    with stores(cluster) as (datastore, filestore):
        scheduled = datastore.hunts.clients(hunt_id, limit=len(clients) + 100)
        per_client = Counter(c.client_id for c in scheduled)
        assert set(per_client) == set(clients), set(clients) ^ set(per_client)
        assert set(per_client.values()) == {1}, per_client.most_common(3)
        for entry in scheduled:
            assert entry.state == "Finished", entry
            assert entry.rows == rows, entry
            stored = filestore.read_rows(entry.client_id, entry.flow_id, ARTIFACT, "", 0, rows + 10)
            numbers = [row["row"] for row in stored]
            assert numbers == list(range(rows)), (entry, Counter(numbers).most_common(3))
        stats = datastore.hunts.stats(hunt_id)
        assert (stats.scheduled, stats.finished, stats.errors, stats.rows) == (
            len(clients), len(clients), 0, len(clients) * rows,
        ), stats  # fmt: skip


class Stopwatch:
    """Seconds since it was made."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.started
