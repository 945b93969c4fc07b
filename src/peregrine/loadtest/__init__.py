"""A fleet simulator: many lightweight agents that speak the real protocol, for load and scale.

``Fleet`` runs them in one event loop (tests, benchmarks); ``run_loadtest`` spreads them over
processes and reports what they saw (``peregrine loadtest``).
"""

from peregrine.config.tls import shrink_tls_read_buffers
from peregrine.loadtest.canned import hostname_for, os_chooser, parse_os_mix
from peregrine.loadtest.fleet import Fleet
from peregrine.loadtest.keys import KeyStore, KeyStoreError
from peregrine.loadtest.stats import FleetStats, percentile

__all__ = [
    "Fleet",
    "FleetStats",
    "KeyStore",
    "KeyStoreError",
    "hostname_for",
    "os_chooser",
    "parse_os_mix",
    "percentile",
    "shrink_tls_read_buffers",
]
