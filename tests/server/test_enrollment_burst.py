"""Many new agents at once: grouped enrollments keep every check, and each client is enrolled
and interrogated exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import msgspec
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from peregrine.agent.identity import Identity
from peregrine.config import client_ssl_context
from peregrine.config.generate import GeneratedConfig
from peregrine.protocol.messages import (
    Challenge,
    CollectionRequest,
    Hello,
    Rejected,
    Welcome,
    decode_from_server,
    encode,
)
from peregrine.services.interrogation import INTERROGATOR
from tests.server.harness import make_deployment, running_server_with, wait_until

GOOD = 40
#: How long an agent waits for its interrogation request (a loaded CI box is slow), then how
#: long it keeps reading after the last one it got (a second copy would come meanwhile).
FIRST_REQUEST_SECONDS = 30.0
QUIET_SECONDS = 1.5


async def _enroll(
    deployment: GeneratedConfig, identity: Identity, secret: str, forge: bool = False
) -> tuple[object, list[str]]:
    """Log in as ``identity``; the server's answer (or its close) and the flow ids of every
    collection request received until the server is quiet after the first."""
    client = deployment.client
    async with connect(client.server_urls[0], ssl=client_ssl_context(client)) as ws:
        challenge = decode_from_server(await ws.recv())
        assert isinstance(challenge, Challenge)
        signed = (b"not the nonce" if forge else challenge.nonce) + identity.client_id.encode()
        hello = Hello(
            client_id=identity.client_id,
            public_key=identity.public_key_bytes,
            signature=identity.sign(signed),
            agent_version="burst",
            enrollment_secret=secret,
        )
        await ws.send(encode(hello))
        try:
            answer: object = decode_from_server(await ws.recv())
        except ConnectionClosed as closed:
            return closed, []
        requests: list[str] = []
        wait = FIRST_REQUEST_SECONDS
        while isinstance(answer, Welcome):
            try:
                async with asyncio.timeout(wait):
                    message = decode_from_server(await ws.recv())
            except (TimeoutError, ConnectionClosed):
                break
            if isinstance(message, CollectionRequest):
                requests.append(message.flow_id)
                wait = QUIET_SECONDS
        return answer, requests


def test_a_burst_of_new_clients_is_enrolled_and_interrogated_once_each(tmp_path: Path) -> None:
    """40 new agents log in at once, among 5 with a wrong secret and 5 with a forged
    signature: the 40 are enrolled, each has one interrogation flow and gets its request
    once (the check-in used to send the just-pushed request again); the 10 are refused and
    not enrolled."""
    deployment = make_deployment(tmp_path / "deploy")
    secret = deployment.client.enrollment_secret
    good = [Identity.generate() for _ in range(GOOD)]
    wrong_secret = [Identity.generate() for _ in range(5)]
    forged = [Identity.generate() for _ in range(5)]

    async def scenario() -> None:
        async with running_server_with(deployment.server) as server:
            results = await asyncio.gather(
                *(_enroll(deployment, i, secret) for i in good),
                *(_enroll(deployment, i, "not the secret") for i in wrong_secret),
                *(_enroll(deployment, i, secret, forge=True) for i in forged),
            )
            answers = [answer for answer, _ in results]
            assert all(isinstance(a, Welcome) and a.enrolled for a in answers[:GOOD]), answers
            for refused in answers[GOOD : GOOD + 5]:
                assert isinstance(refused, Rejected)
                assert "secret is wrong" in refused.reason
            for closed in answers[GOOD + 5 :]:
                assert isinstance(closed, ConnectionClosed)
                assert closed.rcvd is not None and "signature is invalid" in closed.rcvd.reason

            store = server.datastore
            for identity in wrong_secret + forged:
                assert store.clients.get(identity.client_id) is None
            for identity, (_, requests) in zip(good, results[:GOOD], strict=True):
                flows = store.collections.list_for_client(identity.client_id)
                assert [f.creator for f in flows] == [INTERROGATOR]
                assert requests == [flows[0].flow_id], "the interrogation request came twice"
            enrolled = await asyncio.to_thread(store.clients.list)
            assert Counter(c.client_id for c in enrolled) == Counter(i.client_id for i in good)

    asyncio.run(scenario())


def test_the_enrollment_rate_limit_holds_for_a_burst(tmp_path: Path) -> None:
    """A burst allowance of 10 and a slow refill: of 30 new agents at once, 10 are enrolled
    and 20 refused with a time to retry, whatever order their logins are grouped in."""
    deployment = make_deployment(tmp_path / "deploy")
    limits = msgspec.structs.replace(
        deployment.server.limits, enrollments_per_second=0.01, enrollment_burst=10
    )
    config = msgspec.structs.replace(deployment.server, limits=limits)
    secret = deployment.client.enrollment_secret
    identities = [Identity.generate() for _ in range(30)]

    async def scenario() -> None:
        async with running_server_with(config) as server:
            results = await asyncio.gather(*(_enroll(deployment, i, secret) for i in identities))
            kinds = Counter(type(answer).__name__ for answer, _ in results)
            assert kinds == {"Welcome": 10, "Rejected": 20}, kinds
            for answer, _ in results:
                if isinstance(answer, Rejected):
                    assert "too many new clients" in answer.reason
                    assert answer.retry_after is not None and answer.retry_after > 0
            enrolled = await wait_until(
                lambda: len(server.datastore.clients.list()) == 10 or None, timeout=10
            )
            assert enrolled

    asyncio.run(scenario())
