"""Which bus, presence and leader a frontend uses, from its configuration (one place).

=====================  ============  =================  ==================
mode                   bus           presence           leader
=====================  ============  =================  ==================
one process            ``LocalBus``  ``BusPresence``    ``AlwaysLeader``
``--workers N``        ``UnixBus``   ``BusPresence``    ``LeaderLock``
``bus_url: redis://``  ``RedisBus``  ``RedisPresence``  ``AdvisoryLeader``
=====================  ============  =================  ==================

A cluster is ``bus_url`` (Redis) + ``datastore_url`` (PostgreSQL, checked by the
configuration) + ``filestore_dir`` on a shared mount. The Redis modules are imported only
here and only for a cluster: the embedded mode never loads the Redis client.
"""

from __future__ import annotations

import hashlib
import logging
import socket
from pathlib import Path

from peregrine.config import ServerConfig
from peregrine.server.bus import Bus, LocalBus, UnixBus
from peregrine.server.leader import AdvisoryLeader, AlwaysLeader, Leader, LeaderLock
from peregrine.server.presence import BusPresence, Presence

log = logging.getLogger(__name__)


def is_cluster(config: ServerConfig) -> bool:
    return bool(config.bus_url)


def frontend_name(config: ServerConfig) -> str:
    """This frontend's name in the cluster: configured, or host name and agent port."""
    return config.frontend_name or f"{socket.gethostname()}:{config.port}"


def namespace(config: ServerConfig) -> str:
    """Where a deployment's keys and channels live in Redis: named after its CA certificate,
    which every frontend of the deployment shares and no other deployment has."""
    from peregrine.config.pki import load_certificate

    der = load_certificate(config.ca_cert_pem()).tbs_certificate_bytes
    return "peregrine:" + hashlib.sha256(der).hexdigest()[:16]


def make_bus(config: ServerConfig, workers: int) -> Bus:
    for warning in config.cluster_warnings():
        log.warning("%s", warning)
    if is_cluster(config):
        try:
            from peregrine.server.bus_redis import RedisBus
        except ImportError as exc:
            raise RuntimeError(
                f"bus_url needs the Redis client ({exc}); install it with "
                "pip install 'peregrine[cluster]'"
            ) from exc
        return RedisBus(config.bus_url, namespace(config), frontend_name(config), workers)
    if workers > 1:
        return UnixBus(Path(config.data_dir) / "bus", workers)
    return LocalBus()


def make_presence(config: ServerConfig, bus: Bus) -> Presence:
    if is_cluster(config):
        from peregrine.server.bus_redis import RedisBus
        from peregrine.server.presence_redis import RedisPresence

        assert isinstance(bus, RedisBus), "a cluster's presence lives in the bus's Redis"
        return RedisPresence(bus.redis, bus.namespace, bus.name)
    return BusPresence(bus)


def make_leader(config: ServerConfig, workers: int) -> Leader:
    if is_cluster(config):
        return AdvisoryLeader(config.datastore_url, frontend_name(config))
    if workers > 1:
        return LeaderLock(Path(config.data_dir) / "leader.lock")
    return AlwaysLeader()
