"""``Alerting``: the rules, the engine and the forwarding of one server process, made from the
``alerts:`` settings. The services compose it; the process starts it on its event stream."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from peregrine.artifacts.repository import ArtifactRepository
from peregrine.config.model import AlertSettings
from peregrine.datastore import Datastore
from peregrine.events.stream import EventStream
from peregrine.filestore.events import EventFiles

from .columns import cached, event_columns
from .engine import AlertEngine
from .forward import Forwarding, Sink
from .jsonl import JsonLinesSink
from .rulebook import RuleBook
from .rules import Rule
from .syslog import SyslogSink
from .trial import TrialResult, stored_clients, try_rule
from .webhook import WebhookSink

log = logging.getLogger(__name__)


def sinks_from(settings: AlertSettings, data_dir: Path) -> list[Sink]:
    """A sink for every destination the settings name."""
    sinks: list[Sink] = []
    hook = settings.webhook
    if hook.url:
        sinks.append(
            WebhookSink(
                hook.url,
                secret=hook.secret,
                timeout=hook.timeout,
                retries=hook.retries,
                queue_size=settings.queue,
                verify=hook.ca_cert_path or True,
            )
        )
    if settings.syslog.address:
        host, _, port = settings.syslog.address.rpartition(":")
        sinks.append(
            SyslogSink(
                host.strip("[]"),
                int(port),
                protocol=settings.syslog.protocol,
                app_name=settings.syslog.app_name,
                facility=settings.syslog.facility,
                queue_size=settings.queue,
            )
        )
    if settings.jsonl_path:
        sinks.append(JsonLinesSink(data_dir / settings.jsonl_path, queue_size=settings.queue))
    return sinks


class Alerting:
    """Rules as people manage them (``rules``) and, once started, the engine over a stream."""

    def __init__(
        self,
        settings: AlertSettings,
        datastore: Datastore,
        repository: ArtifactRepository,
        data_dir: Path,
    ) -> None:
        self.settings = settings
        self._datastore = datastore
        self._data_dir = data_dir
        self._columns = event_columns(repository)
        self.rules = RuleBook(datastore, self._columns)
        self.engine: AlertEngine | None = None

    async def start(self, stream: EventStream) -> None:
        """Install the built-in rules (once per datastore), then match every stored batch."""
        if self.settings.builtin_rules:
            added = await asyncio.to_thread(self.rules.install_builtin)
            if added:
                log.info("installed %d built-in alert rules", added)
        self.engine = AlertEngine(
            self._datastore,
            stream,
            Forwarding(sinks_from(self.settings, self._data_dir)),
            columns=cached(self._columns),
            refresh=self.settings.rules_refresh,
        )
        await self.engine.start()

    def trial(
        self,
        rule: Rule,
        files: EventFiles,
        since: float,
        until: float,
        client_id: str | None = None,
        limit: int = 100,
    ) -> TrialResult:
        """``rule`` (checked first) over stored events: what it would have raised."""
        self.rules.check(rule)
        clients = [client_id] if client_id else stored_clients(files)
        known = tuple(c for artifact in rule.artifacts for c in self._columns(artifact) or ())
        return try_rule(rule, files, since, until, clients, known=known, limit=limit)

    async def rules_changed(self) -> None:
        """A rule was saved here: use it now rather than at the next refresh."""
        if self.engine is not None:
            await self.engine.reload()

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.close()
            self.engine = None
        self.rules.close()
