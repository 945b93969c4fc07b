"""Clients: enrollment (one public key per client id), last contact, interrogation results."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import Row, bindparam, delete, func, literal, select, tuple_, update

from .database import Database
from .errors import KeyMismatch, NotFound
from .records import CLIENT_INFO_LISTS, CLIENT_INFO_TEXT, ClientRecord, ClientSummary
from .schema import clients, flows, hunt_clients, tasks

#: Client ids asked for in one ``IN (...)``.
_CHUNK = 500


class ClientStore:
    """Every enrolled client, keyed by client id."""

    def __init__(self, db: Database) -> None:
        self._db = db
        #: ``set_info_many``'s UPDATE statements, by the columns they set.
        self._info_statements: dict[tuple[str, ...], Any] = {}
        # Built once (per backend): a burst of new agents enrolls thousands a second.
        new_client: dict[str, Any] = {
            "client_id": bindparam("b_client"),
            "public_key": bindparam("b_key"),
            "first_seen": bindparam("b_now"),
            "last_seen": bindparam("b_now"),
            "ip_addresses": [],
            "mac_addresses": [],
            "users": [],
            "labels": [],
        }
        self._enroll = db.insert_ignore(clients).returning(clients.c.client_id).values(new_client)
        self._enroll_new = clients.insert().values(new_client)

    def enroll(self, client_id: str, public_key: bytes, now: float) -> bool:
        """Record a new client; True if it is new, False if it is already enrolled with this key.

        Raises KeyMismatch when the id is enrolled with another key: the caller must refuse the
        connection, since ids derive from keys and only a forger presents a second one.
        """
        parameters = {"b_client": client_id, "b_key": public_key, "b_now": now}
        with self._db.write() as conn:
            # RETURNING, not rowcount: drivers differ in what rowcount says for a skipped row.
            if conn.execute(self._enroll, parameters).first() is not None:
                return True
            stored = conn.execute(
                select(clients.c.public_key).where(clients.c.client_id == client_id)
            ).scalar_one()
        if bytes(stored) != public_key:
            raise KeyMismatch(f"client {client_id} is enrolled with a different public key")
        return False

    def enroll_many(
        self, entries: builtins.list[tuple[str, bytes, float]]
    ) -> builtins.list[bool | KeyMismatch]:
        """``enroll`` for many clients (client_id, public_key, now): one read of which are
        enrolled already, one INSERT for the new ones (a burst of new agents: one group-commit
        fold). Per entry, what ``enroll`` returns or the KeyMismatch it raises. A client that
        another frontend enrolls between the two makes the INSERT fail: the group commit then
        enrolls each alone (with ``enroll``)."""
        if len(entries) == 1:
            client_id, public_key, now = entries[0]
            try:
                return [self.enroll(client_id, public_key, now)]
            except KeyMismatch as exc:
                return [exc]
        ids = list({client_id for client_id, _, _ in entries})
        outcomes: builtins.list[bool | KeyMismatch] = []
        with self._db.write() as conn:
            keys: dict[str, bytes] = {}
            for start in range(0, len(ids), _CHUNK):
                query = select(clients.c.client_id, clients.c.public_key).where(
                    clients.c.client_id.in_(ids[start : start + _CHUNK])
                )
                keys.update((client_id, bytes(key)) for client_id, key in conn.execute(query))
            rows = []
            for client_id, public_key, now in entries:
                stored = keys.get(client_id)
                if stored is None:
                    keys[client_id] = public_key
                    rows.append({"b_client": client_id, "b_key": public_key, "b_now": now})
                    outcomes.append(True)
                elif stored == public_key:
                    outcomes.append(False)
                else:
                    outcomes.append(
                        KeyMismatch(f"client {client_id} is enrolled with a different public key")
                    )
            if rows:
                conn.execute(self._enroll_new, rows)
        return outcomes

    def get(self, client_id: str) -> ClientRecord | None:
        """The client's record, or None if it never enrolled."""
        with self._db.read() as conn:
            row = conn.execute(select(clients).where(clients.c.client_id == client_id)).first()
        return None if row is None else _record(row)

    def seen(self, client_id: str, now: float, address: str | None) -> None:
        """Note a contact from the client (a connection or a message) and where it came from."""
        self._update(client_id, last_seen=now, last_address=address)

    def seen_many(self, contacts: Iterable[tuple[str, float, str | None]]) -> None:
        """``seen`` for many clients in one transaction: (client_id, now, address) each.

        Frontends batch contacts this way (one commit per batch, not per connection: at
        thousands of connections a second a commit each is what limits them); a client that
        was forgotten meanwhile is skipped."""
        values = [{"b_id": c, "b_seen": t, "b_address": a} for c, t, a in contacts]
        if not values:
            return
        statement = (
            update(clients)
            .where(clients.c.client_id == bindparam("b_id"))
            .values(last_seen=bindparam("b_seen"), last_address=bindparam("b_address"))
        )
        with self._db.write() as conn:
            conn.execute(statement, values)

    def set_info(self, client_id: str, info: Mapping[str, Any], now: float) -> None:
        """Store an interrogation result; keys this store does not know are ignored."""
        (failed,) = self.set_info_many([(client_id, info, now)])
        if failed is not None:
            raise failed

    def set_info_many(
        self, results: builtins.list[tuple[str, Mapping[str, Any], float]]
    ) -> builtins.list[NotFound | None]:
        """``set_info`` for many clients (client_id, info, now) in one statement per set of
        keys given (a burst of new clients' interrogations: one group-commit fold). Returns
        per result None, or NotFound for a client that is not enrolled (nothing stored)."""
        ids = list({client_id for client_id, _, _ in results})
        with self._db.write() as conn:
            known: set[str] = set()
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                query = select(clients.c.client_id).where(clients.c.client_id.in_(chunk))
                known.update(conn.execute(query).scalars())
            groups: dict[tuple[str, ...], builtins.list[dict[str, Any]]] = {}
            for client_id, info, now in results:
                if client_id in known:
                    values = _info_values(info, now)
                    parameters = {f"b_{key}": value for key, value in values.items()}
                    groups.setdefault(tuple(values), []).append({"b_id": client_id, **parameters})
            for keys, rows in groups.items():
                conn.execute(self._info_statement(keys), rows)
        return [
            None if client_id in known else NotFound(f"no client {client_id}")
            for client_id, _, _ in results
        ]

    def _info_statement(self, keys: tuple[str, ...]) -> Any:
        """The UPDATE of these columns, built once per set of keys."""
        statement = self._info_statements.get(keys)
        if statement is None:
            statement = self._info_statements[keys] = (
                update(clients)
                .where(clients.c.client_id == bindparam("b_id"))
                .values({key: bindparam(f"b_{key}") for key in keys})
            )
        return statement

    def set_labels(self, client_id: str, labels: builtins.list[str]) -> None:
        """Replace the client's labels (kept sorted and unique)."""
        self._update(client_id, labels=sorted(set(labels)))

    def add_labels(self, client_id: str, labels: Iterable[str]) -> builtins.list[str]:
        """Add labels to the client's (atomically, however many callers race); the new labels."""
        wanted = _label_set(labels)
        return self._change_labels(client_id, lambda have: have | wanted)

    def remove_labels(self, client_id: str, labels: Iterable[str]) -> builtins.list[str]:
        """Remove labels from the client's (atomically); the labels it has left."""
        unwanted = _label_set(labels)
        return self._change_labels(client_id, lambda have: have - unwanted)

    def _change_labels(
        self, client_id: str, change: Callable[[set[str]], set[str]]
    ) -> builtins.list[str]:
        with self._db.write() as conn:
            # FOR UPDATE holds the row on PostgreSQL until commit (SQLite: the write lock), so
            # this read-modify-write cannot lose a concurrent caller's labels.
            current = conn.execute(
                select(clients.c.labels).where(clients.c.client_id == client_id).with_for_update()
            ).first()
            if current is None:
                raise NotFound(f"no client {client_id}")
            labels = sorted(change(set(current.labels)))
            if labels != current.labels:
                conn.execute(
                    update(clients).where(clients.c.client_id == client_id).values(labels=labels)
                )
        return labels

    def all_for_index(
        self, after: str | None = None, limit: int = 5000
    ) -> builtins.list[ClientSummary]:
        """A page of what hunt matching needs of every client, by client id after ``after``.

        Keyset paging (pass the last client id of one page to get the next) stays fast however
        many clients there are, and a client enrolling meanwhile never shifts a page.
        """
        query = select(
            clients.c.client_id,
            clients.c.hostname,
            clients.c.os,
            clients.c.labels,
            clients.c.last_seen,
            clients.c.ip_addresses,
        ).order_by(clients.c.client_id)
        if after is not None:
            query = query.where(clients.c.client_id > after)
        with self._db.read() as conn:
            return [ClientSummary(*row) for row in conn.execute(query.limit(limit))]

    def enrolled_since(
        self, since: float, after: str = "", limit: int = 5000
    ) -> builtins.list[ClientSummary]:
        """What the index needs of clients enrolled at or after ``since``, in enrollment order
        (``first_seen``, then client id), with ``first_seen`` filled in.

        Frontends poll this to index every client enrolled anywhere, whatever became of its
        connection. Pass the last page's final ``first_seen`` and client id (``after``) to get
        the next page; ``ix_clients_first_seen`` keeps each poll a short range scan."""
        after_key = tuple_(clients.c.first_seen, clients.c.client_id) > tuple_(
            literal(since), literal(after)
        )
        query = (
            select(
                clients.c.client_id,
                clients.c.hostname,
                clients.c.os,
                clients.c.labels,
                clients.c.last_seen,
                clients.c.ip_addresses,
                clients.c.first_seen,
            )
            .where(clients.c.first_seen >= since, after_key)
            .order_by(clients.c.first_seen, clients.c.client_id)
            .limit(limit)
        )
        with self._db.read() as conn:
            return [ClientSummary(*row) for row in conn.execute(query)]

    def list(self, limit: int = 100, offset: int = 0) -> builtins.list[ClientRecord]:
        """A page of clients in enrollment order, so new clients never shift earlier pages."""
        query = (
            select(clients)
            .order_by(clients.c.first_seen, clients.c.client_id)
            .limit(limit)
            .offset(offset)
        )
        with self._db.read() as conn:
            return [_record(row) for row in conn.execute(query)]

    def count(self) -> int:
        """How many clients are enrolled."""
        with self._db.read() as conn:
            return int(conn.execute(select(func.count()).select_from(clients)).scalar_one())

    def forget(self, client_id: str) -> builtins.list[str]:
        """Remove a client with everything stored of it, in one transaction: its collections,
        their tasks, its rows in hunts (hunt statistics are derived from these, so they stay
        exact) and its labels. Returns the ids of the collections removed (their files are
        the filestore's to delete). Raises NotFound for an unknown client. An agent with the
        same key must enroll again to come back, as a new client."""
        with self._db.write() as conn:
            flow_ids = [
                str(flow_id)
                for flow_id in conn.execute(
                    select(flows.c.flow_id).where(flows.c.client_id == client_id)
                ).scalars()
            ]
            # Explicit, children first: not left to ON DELETE CASCADE, which SQLite applies
            # only on connections that enabled foreign keys.
            for table in (hunt_clients, tasks, flows):
                conn.execute(delete(table).where(table.c.client_id == client_id))
            if conn.execute(delete(clients).where(clients.c.client_id == client_id)).rowcount != 1:
                raise NotFound(f"no client {client_id}")
        return flow_ids

    def _update(self, client_id: str, **values: Any) -> None:
        with self._db.write() as conn:
            result = conn.execute(
                update(clients).where(clients.c.client_id == client_id).values(**values)
            )
        if result.rowcount != 1:
            raise NotFound(f"no client {client_id}")


def _info_values(info: Mapping[str, Any], now: float) -> dict[str, Any]:
    """The client columns an interrogation result sets; keys not known are ignored."""
    values: dict[str, Any] = {"interrogated": now}
    for key in CLIENT_INFO_TEXT:
        if key in info:
            values[key] = None if info[key] is None else str(info[key])
    for key in CLIENT_INFO_LISTS:
        if key in info:
            values[key] = [str(item) for item in info[key] or ()]
    if "boot_time" in info:
        values["boot_time"] = None if info["boot_time"] is None else float(info["boot_time"])
    return values


def _label_set(labels: Iterable[str]) -> set[str]:
    if isinstance(labels, str):
        raise TypeError("labels must be a list of labels, not one string")
    return {str(label) for label in labels}


def _record(row: Row[Any]) -> ClientRecord:
    data = row._asdict()
    data["public_key"] = bytes(data["public_key"])
    return ClientRecord(**data)
