"""``Services``: collections, hunts, the flow monitor, the client index, labels and
interrogation, composed once per process over one datastore and filestore.

The API and the frontend's sessions call these; the services reach agents only through the
``Fleet`` they are given (``services/fleet.py``), so they run behind any frontend. The process
that runs a frontend (``server/app.py``) composes them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from peregrine.alerts.service import Alerting
from peregrine.analysis import AnalysisEngine, AnalysisLimits
from peregrine.analysis.columnar import finished_result_sets
from peregrine.artifacts.repository import ArtifactRepository
from peregrine.config import ServerConfig
from peregrine.datastore import Datastore, FlowRecord, KeyMismatch
from peregrine.engine.context import ALL_PERMISSIONS
from peregrine.events.stream import EventStream
from peregrine.filestore import Filestore
from peregrine.logcontext import log_context
from peregrine.notebooks import NotebookService
from peregrine.services.client_admin import forget_locally
from peregrine.services.client_index import ClientIndex
from peregrine.services.collections import (
    CollectionService,
    Limits,
    Template,
    copy_for,
    template_of,
)
from peregrine.services.event_monitoring import EventMonitoring
from peregrine.services.events import ServerEvents
from peregrine.services.file_browser import FileBrowser
from peregrine.services.fleet import Fleet, Leadership
from peregrine.services.hunt_results import HuntResults
from peregrine.services.hunts import HuntManager
from peregrine.services.interrogation import INTERROGATION, INTERROGATOR, client_info
from peregrine.services.monitor import FlowMonitor
from peregrine.timelines import TimelineService

log = logging.getLogger(__name__)

#: Clients read into the index per datastore query when a process starts.
INDEX_PAGE = 5000
#: Seconds a new client's interrogation request is copied from one built copy.
INTERROGATION_TEMPLATE_SECONDS = 10.0


class Services:
    def __init__(
        self,
        config: ServerConfig,
        datastore: Datastore,
        filestore: Filestore,
        repository: ArtifactRepository,
        fleet: Fleet,
        leader: Leadership,
        stream: EventStream | None = None,
    ) -> None:
        self.config = config
        self.datastore = datastore
        self.filestore = filestore
        self.repository = repository
        self.fleet = fleet
        self.leader = leader
        self.events = ServerEvents()
        self.collections = CollectionService(
            datastore,
            repository,
            fleet.push,
            default_timeout=config.flows.timeout,
            default_progress_timeout=config.flows.progress_timeout,
            created=lambda flow: fleet.expect(flow.flow_id, flow.client_id),
            default_expiry=config.flows.scheduled_expiry,
        )
        self.client_index = ClientIndex()
        self.monitor = FlowMonitor(self)
        self.hunts = HuntManager(self)
        self.hunt_results = HuntResults(datastore, filestore)
        #: Event monitoring: assignments, stored events, the stream of events stored here.
        self.event_monitoring = EventMonitoring(
            config.events, datastore, filestore, repository, fleet, self.client_index,
            stream if stream is not None else EventStream(),
        )  # fmt: skip
        self.file_browser = FileBrowser(datastore, filestore)
        #: SQL over collected results (DuckDB is imported on the first query only).
        self.analysis = AnalysisEngine(
            datastore, filestore, AnalysisLimits.from_settings(config.analysis)
        )
        self.notebooks = NotebookService(datastore, filestore, self.analysis)
        self.timelines = TimelineService(datastore, self.analysis)
        #: Alert rules and what they raise; matching starts on the process's event stream.
        self.alerting = Alerting(config.alerts, datastore, repository, Path(config.data_dir))
        #: When the interrogation request was built, and it (see ``enroll``).
        self._interrogation: tuple[float, Template] | None = None
        #: The index holds every client enrolled when the process started (``unknown``).
        self._index_loaded = False

    async def load_client_index(self) -> None:
        """Read every enrolled client into the index (when the process starts)."""
        after: str | None = None
        while True:
            page = await asyncio.to_thread(self.datastore.clients.all_for_index, after, INDEX_PAGE)
            self.client_index.load(page)
            if len(page) < INDEX_PAGE:
                self._index_loaded = True
                return
            after = page[-1].client_id

    def unknown(self, client_id: str) -> bool:
        """Whether the client is, as far as this process knows, not enrolled: not in the
        index once it is loaded (clients enrolled elsewhere join it within a manager pass).
        Not proof: enrolling it finds one that is enrolled already."""
        return self._index_loaded and client_id not in self.client_index.clients

    # -- collections --------------------------------------------------------------------------

    async def collect(
        self,
        client_id: str,
        artifacts: Iterable[tuple[str, Mapping[str, Any]]],
        creator: str,
        permissions: frozenset[str] = ALL_PERMISSIONS,
        limits: Limits | None = None,
    ) -> FlowRecord:
        record = await self.collections.create(client_id, artifacts, creator, permissions, limits)
        self._scheduled(record)
        return record

    def _scheduled(self, record: FlowRecord) -> None:
        self.events.flow_changed(record.flow_id)
        with log_context(client_id=record.client_id, flow_id=record.flow_id):
            names = ", ".join(str(a.get("name")) for a in record.artifacts)
            log.info("collection %s scheduled by %s: %s", record.flow_id, record.creator, names)

    async def wait_for_flow(
        self, flow_id: str, states: Iterable[str], timeout: float = 60.0
    ) -> FlowRecord:
        wanted = set(states)

        async def check() -> FlowRecord | None:
            record = await asyncio.to_thread(self.datastore.collections.get, flow_id)
            return record if record is not None and record.state in wanted else None

        return await self.events.wait_for(check, timeout)

    # -- clients ------------------------------------------------------------------------------

    async def client_connected(
        self, client_id: str, seen_hunts: Iterable[str] = (), enrolled: bool = False
    ) -> None:
        """A client checked in: it gets every running hunt it matches and has not had.
        ``enrolled``: this connection enrolled it just now (``enroll``), so its record holds
        nothing yet (no read needed) and its interrogation is stored already."""
        now = time.time()
        if enrolled:
            self.client_index.update(client_id, labels=(), ip_addresses=(), last_seen=now)
        else:
            if client_id not in self.client_index.clients:
                await self.reindex(client_id)
            self.client_index.update(client_id, last_seen=now)
            await self._interrogate_if_never_done(client_id)
        await self.hunts.client_checked_in(client_id, seen_hunts)

    async def clients_appeared(self, clients: list[str]) -> None:
        """Clients seen on another frontend: one enrolled there is not in our index yet."""
        for client_id in clients:
            if client_id not in self.client_index.clients:
                await self.reindex(client_id)

    async def client_changed_elsewhere(self, client_id: str) -> None:
        """Another frontend changed the client (labels, interrogation, deletion)."""
        await self.reindex(client_id)
        if self.fleet.holds(client_id):
            await self.event_monitoring.push(client_id)
            await self.hunts.client_checked_in(client_id)

    async def reindex(self, client_id: str) -> None:
        """Read the client into the index again; one deleted leaves it (and this process)."""
        record = await asyncio.to_thread(self.datastore.clients.get, client_id)
        if record is None:  # deleted (services/client_admin.py)
            await forget_locally(self, client_id)
        else:
            self.client_index.update(
                client_id, record.labels, record.os, record.hostname, record.ip_addresses,
                record.last_seen,
            )  # fmt: skip

    async def label(
        self, client_id: str, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> list[str]:
        """Change a client's labels; a hunt that now matches it is scheduled on it."""
        labels: list[str] = []
        if add:
            labels = await asyncio.to_thread(
                self.datastore.clients.add_labels, client_id, list(add)
            )
        if remove:
            labels = await asyncio.to_thread(
                self.datastore.clients.remove_labels, client_id, list(remove)
            )
        await self.hunts.client_changed(client_id, labels=labels)
        await self.event_monitoring.push(client_id)  # its event artifacts may differ now
        await self.fleet.announce("client_changed", client_id=client_id)
        return labels

    # -- interrogation ------------------------------------------------------------------------

    async def enroll(
        self, client_id: str, public_key: bytes
    ) -> tuple[bool, list[tuple[str, bytes]]]:
        """Enroll a new client with its interrogation: the client, the flow and its task
        stored together, folded in the group commit with the other new clients of its batch.
        Returns whether it is new, and the tasks stored with it (flow id, request: what the
        check-in delivers, without reading them back). False, with nothing stored, if the
        client is already enrolled with this key; raises KeyMismatch for another key."""
        template = await self._interrogation_template()
        item = (client_id, public_key, time.time(), template)
        enrolled, stored = await self.datastore.group.run_together(self._enroll_many, item)
        if stored is None:
            return enrolled, []
        record, payload = stored
        if self.collections.created is not None:
            self.collections.created(record)
        self._scheduled(record)
        return enrolled, [(record.flow_id, payload)]

    def _enroll_many(
        self, items: list[tuple[str, bytes, float, Template | None]]
    ) -> list[tuple[bool, tuple[FlowRecord, bytes] | None] | KeyMismatch]:
        """The group commit's fold of ``enroll``: every new client of a batch and their
        interrogations in three statements."""
        outcomes = self.datastore.clients.enroll_many([item[:3] for item in items])
        results: list[tuple[bool, tuple[FlowRecord, bytes] | None] | KeyMismatch] = []
        interrogations: list[tuple[FlowRecord, bytes]] = []
        for (client_id, _, now, template), outcome in zip(items, outcomes, strict=True):
            if isinstance(outcome, KeyMismatch):
                results.append(outcome)
            elif outcome and template is not None:
                expires = now + self.collections.default_expiry
                interrogations.append(copy_for(template, client_id, now, expires))
                results.append((True, interrogations[-1]))
            else:
                results.append((outcome, None))
        if interrogations:
            self.datastore.collections.create_for_new_clients(interrogations)
        return results

    async def _interrogation_template(self) -> Template | None:
        """The interrogation request, validated once for a burst of new clients (built again
        after ``INTERROGATION_TEMPLATE_SECONDS``, so a changed definition applies)."""
        now = time.monotonic()
        if self._interrogation is not None and now - self._interrogation[0] < (
            INTERROGATION_TEMPLATE_SECONDS
        ):
            return self._interrogation[1]
        if self.repository.find(INTERROGATION) is None:
            log.warning("no %s artifact: clients are not interrogated", INTERROGATION)
            return None
        built = await asyncio.to_thread(
            self.collections.build, "", [(INTERROGATION, {})], INTERROGATOR
        )
        template = template_of(*built)
        self._interrogation = (now, template)
        return template

    async def interrogate(self, client_id: str) -> None:
        """Collect the client-info artifact; its result fills the client record."""
        if self.repository.find(INTERROGATION) is None:
            log.warning("no %s artifact: clients are not interrogated", INTERROGATION)
            return
        await self.collect(client_id, [(INTERROGATION, {})], creator=INTERROGATOR)

    async def flow_finished(self, client_id: str, record: FlowRecord) -> None:
        """A flow's last message is stored: its result sets get their Parquet copies (in the
        background), and an interrogation's facts go into the client."""
        # An interrogation's few rows are read by the server itself: a Parquet copy of them
        # (a DuckDB write and an fsync) cost more CPU than the rest of an enrollment. A query
        # that reads them still gets one made then.
        # A flow's rows, counted in its record, bound each of its result sets': one with
        # fewer in all has no set to copy, and its files need not be listed and read.
        copies = self.config.analysis.parquet_on_finish_rows
        if (
            self.config.analysis.parquet_on_finish
            and record.creator != INTERROGATOR
            and record.rows >= max(1, copies)
        ):
            flow_dir = self.filestore.flow_dir(client_id, record.flow_id)
            stems = await asyncio.to_thread(finished_result_sets, flow_dir, copies)
            self.analysis.copies.schedule(stems)
        if record.creator != INTERROGATOR or record.state != "Finished":
            return
        flow_id = record.flow_id
        info = await asyncio.to_thread(client_info, self.filestore, client_id, flow_id)
        if info is not None:
            # Folded: a burst of new clients' facts is one statement in one commit.
            set_info = self.datastore.clients.set_info_many
            await self.datastore.group.run_together(set_info, (client_id, info, time.time()))
        self.events.flow_changed(flow_id)
        if info is not None:
            # The OS is known now: hunts that target it may apply to this client.
            await self.hunts.client_changed(
                client_id,
                os=info["os"],
                hostname=info["hostname"],
                ip_addresses=info["ip_addresses"],
            )
            await self.fleet.announce("client_changed", client_id=client_id)

    async def _interrogate_if_never_done(self, client_id: str) -> None:
        """Interrogate a client that never was (it left between its enrollment and its
        Welcome): otherwise it would never match a hunt that targets an OS."""
        entry = self.client_index.clients.get(client_id)
        if entry is None or entry.os is not None:
            return  # deleted meanwhile, or interrogated: no query at most check-ins
        record = await asyncio.to_thread(self.datastore.clients.get, client_id)
        if record is None or record.interrogated is not None:
            return
        pending = self.datastore.collections.has_in_flight
        if not await asyncio.to_thread(pending, client_id, INTERROGATOR):
            log.info("interrogating %s: it has not been interrogated yet", client_id)
            await self.interrogate(client_id)
