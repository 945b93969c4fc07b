"""A 429 (or 503) with Retry-After becomes an error that says when to try again.

The server answers 429 to password logins past their limits; the Python client and the CLI
authenticate with tokens and never log in with a password, so a 429 reaches them only from
something in between (a balancer's limit) or a future endpoint: whatever sends it, both clients
turn its Retry-After into ``RateLimited.retry_after`` and an error that ends "(retry in N s)".
"""

from __future__ import annotations

import email.utils
from collections.abc import Iterator

import httpx
import pytest

from peregrine.client import PeregrineError, RateLimited, ServerError
from peregrine.client._core import raise_for
from peregrine.client.errors import retry_after
from peregrine.config.model import LoginSettings
from tests.api.conftest import API, PASSWORD, Live, live_deployment

LIMITS = LoginSettings(failures_per_address=100, failures_per_user=2, window=30.0)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_deployment(tmp_path_factory.mktemp("rate-limited"), login=LIMITS) as deployment:
        deployment.make_user("dora", ["reader"], password=PASSWORD)
        yield deployment


def test_a_servers_429_says_when_to_retry(live: Live) -> None:
    with httpx.Client(base_url=live.base + API, verify=live.tls, timeout=60) as http:
        for _ in range(2):
            wrong = {"username": "dora", "password": "not it"}
            assert http.post("/auth/login", json=wrong).status_code == 401
        response = http.post("/auth/login", json={"username": "dora", "password": PASSWORD})
    assert response.status_code == 429, response.text
    seconds = int(response.headers["retry-after"])
    # What both clients do with every response.
    with pytest.raises(RateLimited) as raised:
        raise_for(response.status_code, response.content, response.reason_phrase, response.headers)
    error = raised.value
    assert error.status == 429 and error.retry_after == seconds
    assert "failed logins for dora" in error.detail
    assert error.detail.endswith(f"(retry in {seconds} s)")
    assert isinstance(error, PeregrineError)  # scripts that catch everything still do


def test_a_503_says_when_to_retry_and_other_errors_do_not() -> None:
    body = b'{"detail": "the datastore does not answer (restarting?)"}'
    with pytest.raises(ServerError) as raised:
        raise_for(503, body, "Service Unavailable", {"retry-after": "5"})
    assert raised.value.retry_after == 5
    assert str(raised.value).endswith("(retry in 5 s)")
    with pytest.raises(ServerError) as raised:
        raise_for(500, b'{"detail": "boom"}', "", {"retry-after": "5"})
    assert raised.value.retry_after is None and str(raised.value) == "boom"


def test_retry_after_as_seconds_or_a_date() -> None:
    assert retry_after({"retry-after": "12"}) == 12
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert retry_after({"retry-after": date}, now=1_000_000) == 30
    assert retry_after({"retry-after": date}, now=2_000_000) == 0  # already past
    for unusable in ("soon", "", "nan"):
        assert retry_after({"retry-after": unusable}) is None
    assert retry_after(None) is None
