"""The datastore: one object per database, with a small store per domain."""

from __future__ import annotations

from types import TracebackType

from . import migrate
from .alerts import AlertStore, RuleStore
from .audit import AuditStore
from .clients import ClientStore
from .collections import CollectionStore
from .counts import CountStore
from .database import Database
from .events import EventStore
from .group_commit import GroupCommitter
from .hunts import HuntStore
from .notebooks import NotebookStore
from .snapshots import SnapshotStore
from .tasks import TaskStore
from .timelines import TimelineStore
from .users import SessionStore, TokenStore, UserStore


class Datastore:
    """Clients, collections, tasks, hunts, users and the audit log in one database (SQLite or
    PostgreSQL).

    Thread-safe: the server calls it from worker threads.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self.url = db.url
        self.backend = db.backend
        self.clients = ClientStore(db)
        self.collections = CollectionStore(db)
        self.tasks = TaskStore(db)
        self.hunts = HuntStore(db)
        self.users = UserStore(db)
        self.tokens = TokenStore(db)
        self.sessions = SessionStore(db)
        self.audit = AuditStore(db)
        #: Event monitoring: assignments and how they run on each client.
        self.events = EventStore(db)
        #: Alert rules and the alerts they raise (``peregrine.alerts``).
        self.rules = RuleStore(db)
        self.alerts = AlertStore(db)
        self.notebooks = NotebookStore(db)
        self.timelines = TimelineStore(db)
        #: Whole tables page by page, for the analysis engine (``analysis/catalog.py``).
        self.snapshots = SnapshotStore(db)
        #: Clients, collections and hunts counted, for the metrics (``metrics/state.py``).
        self.counts = CountStore(db)
        #: Runs store calls from many callers in one transaction (see ``group_commit``).
        self.group = GroupCommitter(db)

    def revision(self) -> str | None:
        """The schema revision the database is at."""
        with self._db.read() as conn:
            return migrate.current_revision(conn)

    def close(self) -> None:
        """Commit grouped work still queued, close every connection; unusable afterwards."""
        self.group.close()
        self._db.close()

    def __enter__(self) -> Datastore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Datastore {self.url}>"


def open_datastore(url: str) -> Datastore:
    """Open the datastore at ``url`` and migrate its schema to the newest revision.

    ``sqlite:///absolute/path.db`` (the file and its folder are created, owner-only),
    ``sqlite://`` (in memory, for tests) or ``postgresql://user@host:port/database``.
    """
    db = Database(url)
    try:
        with db.write() as conn:
            migrate.upgrade(conn)
    except BaseException:
        db.close()
        raise
    return Datastore(db)
