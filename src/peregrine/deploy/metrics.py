"""What a frontend's own ``/metrics`` says went wrong, for judging a batch in its soak.

``peregrine_errors_total`` counts errors by kind; those of the frontend itself count here
(group commits that failed, the datastore unavailable, agents' protocol errors, a full
filestore), not ``source`` (an artifact source that failed on an endpoint: the endpoint's
business, not the new version's).
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx

from peregrine.deploy.model import Instance

#: Kinds of ``peregrine_errors_total`` that are not the frontend's fault.
NOT_THE_FRONTENDS = frozenset({"source"})


def frontend_errors(instance: Instance, ca_cert: Path, token: str) -> int | None:
    """The instance's own errors so far, or None when its ``/metrics`` cannot be read (an
    older version without it, a token without ``READ_METRICS``, no answer)."""
    from prometheus_client.parser import text_string_to_metric_families

    tls = ssl.create_default_context(cafile=str(ca_cert))
    try:
        answer = httpx.get(
            f"{instance.api_url}/metrics", verify=tls, timeout=5,
            headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip
    except httpx.HTTPError:
        return None
    if answer.status_code != 200:
        return None
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(answer.text)
            if family.name == "peregrine_errors"
            for sample in family.samples
            if sample.name == "peregrine_errors_total"
            and sample.labels.get("kind") not in NOT_THE_FRONTENDS
        )
    )
