"""Alerts to a webhook: an HTTP POST of the alert as JSON, with retries, time-outs and an
optional HMAC-SHA256 signature.

The signature header is ``X-Peregrine-Signature: sha256=<hex>`` over ``<timestamp>.<body>``,
with the timestamp in ``X-Peregrine-Timestamp``, so a receiver can check both who sent it and
that it is not an old message replayed. The target comes only from the server configuration
(an administrator's file), never from the API: nobody can point the server at an internal
address through it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from .forward import Sink

SIGNATURE_HEADER = "X-Peregrine-Signature"
TIMESTAMP_HEADER = "X-Peregrine-Timestamp"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The value of the signature header for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookSink(Sink):
    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        secret: str = "",
        timeout: float = 5.0,
        retries: int = 5,
        backoff: float = 0.5,
        queue_size: int = 1000,
        verify: str | bool = True,
    ) -> None:
        super().__init__(queue_size)
        self.url = url
        self._secret = secret
        self._retries = retries
        self._backoff = backoff
        self._client = httpx.AsyncClient(timeout=timeout, verify=verify, follow_redirects=False)

    async def deliver(self, document: dict[str, Any]) -> None:
        body = json.dumps(document, separators=(",", ":")).encode()
        delay = self._backoff
        for attempt in range(self._retries + 1):
            timestamp = str(int(time.time()))
            headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp}
            if self._secret:
                headers[SIGNATURE_HEADER] = signature(self._secret, timestamp, body)
            try:
                response = await self._client.post(self.url, content=body, headers=headers)
                if response.status_code < 500 and response.status_code != 429:
                    response.raise_for_status()  # a 4xx other than 429 will not get better
                    return
                problem = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt == self._retries:
                raise ConnectionError(f"{self.url}: {problem} after {attempt + 1} attempts")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def shut(self) -> None:
        await self._client.aclose()
