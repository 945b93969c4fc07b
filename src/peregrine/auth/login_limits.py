"""Failed logins counted per source address and per user name; past a limit, logins wait.

Checked before the password is, so a blocked attempt costs no argon2 at all. A source address
(for IPv6, its /64: one host usually owns the whole prefix) may fail ``per_address`` times and a
user name ``per_user`` times within ``window`` seconds; then password logins from that address,
or for that name, are refused until the oldest of those failures is older than the window. The
per-name limit holds against guessing from many addresses; its price is that anyone can make a
named user's password logins wait out the window (their tokens and open sessions still work).

A success clears its user name's failures, never its address's: an attacker with one account
of their own must not reset the count of their guesses at others. Counts live in this process
(each ``--workers`` process counts on its own) and for at most ``max_keys`` names and addresses,
the least recently failing forgotten first, so a spray of names cannot exhaust memory.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

#: Names and addresses remembered at most (each costs under a kilobyte). A blocked address
#: adds no names, so filling this takes many addresses.
MAX_KEYS = 20_000


@dataclass(frozen=True, slots=True)
class Throttled:
    """Why a login is refused without checking the password, and for how long."""

    reason: str
    retry_after: int


def address_key(address: str | None) -> str:
    """What failures from ``address`` count against: the address, or an IPv6 address's /64."""
    if not address:
        return "address:unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"address:{address[:64]}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"address:{ip.ipv4_mapped}"
        return f"address:{ipaddress.ip_network(f'{ip}/64', strict=False)}"
    return f"address:{ip}"


def user_key(username: str) -> str:
    """What failures for ``username`` count against (names are case-insensitive)."""
    return f"user:{username.strip().lower()[:128]}"


class FailedLogins:
    """Thread-safe counts of recent failures, by address and by user name."""

    def __init__(
        self,
        per_address: int,
        per_user: int,
        window: float,
        *,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_address < 1 or per_user < 1 or window <= 0:
            raise ValueError("login limits must be positive")
        self.per_address = per_address
        self.per_user = per_user
        self.window = window
        self._max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        #: key -> the times of its latest failures (at most its limit of them), oldest first.
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def check(self, address: str | None, username: str) -> Throttled | None:
        """None if a password login may be tried now, else why not and for how long."""
        now = self._clock()
        checks = (
            (address_key(address), self.per_address, f"from {address}"),
            (user_key(username), self.per_user, f"for {username.strip().lower()[:128]}"),
        )
        with self._lock:
            for key, limit, who in checks:
                times = self._failures.get(key)
                if times is not None and len(times) >= limit:
                    wait = times[0] + self.window - now
                    if wait > 0:
                        return Throttled(
                            f"{limit} failed logins {who} within {self.window:g} s: "
                            f"try again in {math.ceil(wait)} s",
                            math.ceil(wait),
                        )
        return None

    def failed(self, address: str | None, username: str) -> None:
        """Count one failed login."""
        now = self._clock()
        with self._lock:
            self._note(address_key(address), self.per_address, now)
            self._note(user_key(username), self.per_user, now)

    def succeeded(self, username: str) -> None:
        """Forget the user name's failures (the password was right)."""
        with self._lock:
            self._failures.pop(user_key(username), None)

    def _note(self, key: str, limit: int, now: float) -> None:
        times = self._failures.get(key)
        if times is None:
            times = self._failures[key] = deque(maxlen=limit)
        times.append(now)
        self._failures.move_to_end(key)
        # Ordered by latest failure: forget those whose failures all left the window, and the
        # least recent beyond the cap.
        while self._failures:
            oldest = next(iter(self._failures.values()))
            if len(self._failures) <= self._max_keys and oldest[-1] > now - self.window:
                break
            self._failures.popitem(last=False)
