"""``/metrics``: Prometheus' text format, for a token of the ``monitoring`` role.

Outside ``/api/v1`` (not part of the versioned API: metric names follow the code) and
authenticated like the API, on the same port: it needs ``READ_METRICS``, which the
``monitoring`` role holds alone, so the token in a Prometheus configuration reads counts and
latencies and nothing an endpoint sent. Under ``--workers N`` one scrape answers for all
workers (``metrics/exposition.py``).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request, Response

from peregrine.api.deps import require
from peregrine.auth.accounts import Principal
from peregrine.auth.roles import READ_METRICS
from peregrine.metrics.exposition import CONTENT_TYPE, MetricsPage

router = APIRouter(include_in_schema=False)


@router.get("/metrics")
async def metrics(
    request: Request, principal: Principal = Depends(require(READ_METRICS))
) -> Response:
    """Every metric of this frontend (all its worker processes) and the datastore's state."""
    page: MetricsPage = request.app.state.metrics
    body = await asyncio.to_thread(page.render)
    return Response(body, media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})
