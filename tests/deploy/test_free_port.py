"""The ports the dev cluster and the test servers start on (``processes.free_port``)."""

from __future__ import annotations

import socket
from pathlib import Path

from peregrine.cluster import processes


def test_a_port_is_never_given_twice_before_it_is_bound() -> None:
    # A cluster draws its ten ports before its programs bind them: drawn at random from the
    # 22,768 below the kernel's outgoing range, 2,000 draws would repeat one about 88 times.
    ports = [processes.free_port() for _ in range(2000)]
    assert len(set(ports)) == len(ports)


def test_a_port_is_below_the_kernels_range_for_outgoing_connections() -> None:
    first_outgoing = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(50):
        port = processes.free_port()
        assert processes.PORT_RANGE[0] <= port < first_outgoing
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # and free
