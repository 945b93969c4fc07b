"""Password guessing through the API: failed logins are limited per source address and per
user name (429 with Retry-After, audited), checked from real loopback source addresses."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from peregrine.config.model import LoginSettings
from tests.api.conftest import API, PASSWORD, Live, live_deployment

WINDOW = 4.0
LIMITS = LoginSettings(failures_per_address=5, failures_per_user=3, window=WINDOW)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_deployment(tmp_path_factory.mktemp("login-limits"), login=LIMITS) as deployment:
        for name in ("alice", "bob", "carol"):
            deployment.make_user(name, ["reader"], password=PASSWORD)
        yield deployment


def login(live: Live, source: str, name: str, password: str = PASSWORD) -> httpx.Response:
    """A login sent from ``source`` (a loopback address: 127.0.0.0/8 all reach the server)."""
    transport = httpx.HTTPTransport(verify=live.tls, local_address=source)
    with httpx.Client(base_url=live.base + API, transport=transport, timeout=60) as http:
        return http.post("/auth/login", json={"username": name, "password": password})


def wrong(live: Live, source: str, name: str) -> httpx.Response:
    return login(live, source, name, "not the password at all")


def test_a_user_name_is_limited_across_addresses(live: Live) -> None:
    started = time.time()
    for i in range(3):
        assert wrong(live, f"127.0.1.{i + 1}", "alice").status_code == 401
    refused = login(live, "127.0.1.9", "alice")  # even the right password waits now
    assert refused.status_code == 429, refused.text
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= WINDOW
    assert "failed logins for alice" in refused.json()["detail"]
    assert "set-cookie" not in refused.headers
    # Audited, with why.
    entries = live.server.audit.query(actor="alice", action="auth.login", since=started - 1)
    assert [e.result for e in entries] == ["refused"] * 4
    assert "failed logins for alice" in (entries[0].reason or "")
    assert entries[0].address == "127.0.1.9"
    # Someone else, from the same address, is not affected.
    assert login(live, "127.0.1.9", "bob").status_code == 200
    time.sleep(retry_after)
    assert login(live, "127.0.1.9", "alice").status_code == 200


def test_an_address_is_limited_whatever_names_it_tries(live: Live) -> None:
    for i in range(5):
        assert wrong(live, "127.0.2.1", f"guess{i}").status_code == 401
    refused = login(live, "127.0.2.1", "carol")
    assert refused.status_code == 429
    assert "from 127.0.2.1" in refused.json()["detail"]
    assert int(refused.headers["retry-after"]) >= 1
    assert login(live, "127.0.2.2", "carol").status_code == 200


def test_a_success_clears_the_user_names_failures(live: Live) -> None:
    for _ in range(2):
        assert wrong(live, "127.0.3.1", "bob").status_code == 401
    assert login(live, "127.0.3.2", "bob").status_code == 200
    # Two more failures would have blocked bob without the success in between.
    for _ in range(2):
        assert wrong(live, "127.0.3.3", "bob").status_code == 401
    assert login(live, "127.0.3.4", "bob").status_code == 200
