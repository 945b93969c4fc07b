"""Interrogation: what a client is (host name, OS, addresses, users), from the client-info
artifact collected when it enrolls, written into its client record."""

from __future__ import annotations

import json
from typing import Any

from peregrine.filestore import Filestore

INTERROGATION = "Generic.Client.Info"
#: The creator of interrogation flows: how a finished flow is known to be one.
INTERROGATOR = "server:interrogation"


def client_info(filestore: Filestore, client_id: str, flow_id: str) -> dict[str, Any] | None:
    """The client record's facts from a finished interrogation flow, or None without a host
    row."""
    host = filestore.read_rows(client_id, flow_id, INTERROGATION, "host", 0, 1)
    users = filestore.read_rows(client_id, flow_id, INTERROGATION, "users", 0, 10_000)
    if not host:
        return None
    facts = dict(host[0])
    return {
        "hostname": facts.get("hostname"),
        "fqdn": facts.get("fqdn"),
        "os": facts.get("os"),
        "release": facts.get("platform_version") or facts.get("platform_name"),
        "kernel": facts.get("kernel_release"),
        "arch": facts.get("arch"),
        "ip_addresses": _json_list(facts.get("ip_addresses")),
        "mac_addresses": _json_list(facts.get("mac_addresses")),
        "users": [u["username"] for u in users if u.get("username")],
        "agent_version": facts.get("agent_version"),
        "boot_time": facts.get("boot_time"),
    }


def _json_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return [value]
        return [str(v) for v in parsed] if isinstance(parsed, list) else [value]
    return []
