"""Every client's searchable facts in memory: hunt matching and the client search.

Loaded from the datastore at start and kept current by the events that change it (enrollment,
interrogation, labels, check-ins, deletion), so matching a hunt or answering a search is a scan
of a dict — milliseconds at 100,000 clients — and never a database query. New clients are
also followed in the datastore itself (``EnrollmentFollower``): a client enrolled by any
frontend is found within seconds even if its connection ended before it checked in, or a bus
notice was lost.

Search syntax (terms are ANDed; ``*`` is a wildcard; case-insensitive)::

    host:web-*   label:prod   os:linux   ip:10.1.*   client:C.12ab*
    recent:15m (seen in the last 15 minutes; s, m, h, d)   online:true   free text
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import time
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from peregrine.datastore import ClientSummary, HuntRecord

SEARCH_KEYS = ("host", "label", "os", "ip", "client", "recent", "online")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 60.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class SearchError(ValueError):
    """A search that does not parse; the message says how to write it."""


@dataclass
class IndexedClient:
    client_id: str
    labels: frozenset[str] = frozenset()
    os: str | None = None
    hostname: str | None = None
    ip_addresses: tuple[str, ...] = ()
    last_seen: float = 0.0
    #: Lower-cased text that free-text terms match against.
    text: str = field(default="", repr=False)

    def refresh_text(self) -> None:
        self.text = " ".join(
            [self.client_id, self.hostname or "", self.os or "", *self.labels, *self.ip_addresses]
        ).lower()


Predicate = Callable[[IndexedClient], bool]


class ClientIndex:
    def __init__(self) -> None:
        self.clients: dict[str, IndexedClient] = {}

    def __len__(self) -> int:
        return len(self.clients)

    def load(self, summaries: Iterable[ClientSummary]) -> None:
        for s in summaries:
            self.update(
                s.client_id,
                labels=s.labels,
                os=s.os,
                hostname=s.hostname,
                ip_addresses=s.ip_addresses,
                last_seen=s.last_seen,
            )

    def update(
        self,
        client_id: str,
        labels: Iterable[str] | None = None,
        os: str | None = None,
        hostname: str | None = None,
        ip_addresses: Iterable[str] | None = None,
        last_seen: float | None = None,
    ) -> IndexedClient:
        entry = self.clients.get(client_id) or IndexedClient(client_id)
        if labels is not None:
            entry.labels = frozenset(labels)
        if os is not None:
            entry.os = os
        if hostname is not None:
            entry.hostname = hostname
        if ip_addresses is not None:
            entry.ip_addresses = tuple(ip_addresses)
        if last_seen is not None:
            entry.last_seen = max(entry.last_seen, last_seen)
        entry.refresh_text()
        self.clients[client_id] = entry
        return entry

    def remove(self, client_id: str) -> None:
        """Forget a deleted client."""
        self.clients.pop(client_id, None)

    # -- hunts --------------------------------------------------------------------------------

    def matches(self, hunt: HuntRecord, client_id: str) -> bool:
        entry = self.clients.get(client_id)
        if entry is None:
            return False
        if hunt.include_labels and not entry.labels.intersection(hunt.include_labels):
            return False
        if entry.labels.intersection(hunt.exclude_labels):
            return False
        return not hunt.os or (entry.os or "").lower() in {o.lower() for o in hunt.os}

    def matching(self, hunt: HuntRecord) -> list[str]:
        return [cid for cid in self.clients if self.matches(hunt, cid)]

    # -- search -------------------------------------------------------------------------------

    def search(
        self,
        query: str,
        online: Container[str] = (),
        limit: int = 100,
        offset: int = 0,
        now: float | None = None,
    ) -> tuple[int, list[IndexedClient]]:
        """(total matches, one page of them sorted by hostname then id)."""
        predicates = parse_query(query, online, now or time.time())
        found = [c for c in self.clients.values() if all(p(c) for p in predicates)]
        found.sort(key=lambda c: ((c.hostname or "~").lower(), c.client_id))
        return len(found), found[offset : offset + limit]


class EnrolledClients(Protocol):
    def enrolled_since(
        self, since: float, after: str = "", limit: int = 5000
    ) -> list[ClientSummary]: ...


class EnrollmentFollower:
    """Adds to the index every client the datastore says enrolled since the last look.

    Enrollment is stamped before its commit, and other hosts' clocks differ a little, so each
    look goes back ``margin`` seconds before the previous one began; clients already in the
    index are left as they are (the index may know more of them than their new row)."""

    PAGE = 5000

    def __init__(self, index: ClientIndex, store: EnrolledClients, margin: float = 15.0) -> None:
        self.index = index
        self.store = store
        self.margin = margin
        self._last_look = time.time()

    async def catch_up(self) -> int:
        """One look; returns how many clients it added."""
        import asyncio

        began = time.time()
        since, after, added = self._last_look - self.margin, "", 0
        while True:
            page = await asyncio.to_thread(self.store.enrolled_since, since, after, self.PAGE)
            for summary in page:
                if summary.client_id not in self.index.clients:
                    self.index.load([summary])
                    added += 1
            if len(page) < self.PAGE:
                break
            since, after = page[-1].first_seen, page[-1].client_id
        self._last_look = began
        return added


def _wildcard(pattern: str) -> Callable[[str], bool]:
    pattern = pattern.lower()
    if "*" not in pattern and "?" not in pattern:
        return lambda value: value.lower() == pattern
    regex = re.compile(fnmatch.translate(pattern))
    return lambda value: regex.match(value.lower()) is not None


def _duration(text: str) -> float:
    match = _DURATION.match(text.lower())
    if not match:
        raise SearchError(f"recent:{text} — give a duration like 30m, 2h or 1d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_query(query: str, online: Container[str], now: float) -> list[Predicate]:
    try:
        terms = shlex.split(query)
    except ValueError as exc:
        raise SearchError(f"unbalanced quotes in the search: {exc}") from None
    predicates: list[Predicate] = []
    for term in terms:
        key, colon, value = term.partition(":")
        key = key.lower()
        if not colon or key not in SEARCH_KEYS:
            if term == "*":
                continue
            predicates.append(_free_text(term))
            continue
        if not value:
            raise SearchError(f"{key}: needs a value, e.g. {key}:{_EXAMPLES[key]}")
        predicates.append(_predicate(key, value, online, now))
    return predicates


_EXAMPLES = {
    "host": "web-*",
    "label": "prod",
    "os": "linux",
    "ip": "10.0.*",
    "client": "C.1234*",
    "recent": "15m",
    "online": "true",
}


def _free_text(term: str) -> Predicate:
    match = _wildcard(f"*{term}*" if "*" not in term else term)
    return lambda c: match(c.text)


def _predicate(key: str, value: str, online: Container[str], now: float) -> Predicate:
    match = _wildcard(value)
    if key == "host":
        return lambda c: match(c.hostname or "")
    if key == "label":
        return lambda c: any(match(label) for label in c.labels)
    if key == "os":
        return lambda c: match(c.os or "")
    if key == "ip":
        return lambda c: any(match(ip.split("%")[0]) for ip in c.ip_addresses)
    if key == "client":
        return lambda c: match(c.client_id)
    if key == "recent":
        since = now - _duration(value)
        return lambda c: c.last_seen >= since
    wanted = value.lower() in ("true", "yes", "1")
    if value.lower() not in ("true", "yes", "1", "false", "no", "0"):
        raise SearchError(f"online:{value} — use online:true or online:false")
    return lambda c: (c.client_id in online) == wanted


def describe(entry: IndexedClient, online: Container[str]) -> dict[str, Any]:
    return {
        "client_id": entry.client_id,
        "hostname": entry.hostname,
        "os": entry.os,
        "labels": sorted(entry.labels),
        "ip_addresses": list(entry.ip_addresses),
        "last_seen": entry.last_seen,
        "online": entry.client_id in online,
    }
