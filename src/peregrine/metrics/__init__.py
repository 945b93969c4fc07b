"""Prometheus metrics: what a frontend counts (``instruments``), how a scrape is answered
(``exposition``), the datastore's state as gauges (``state``), the event-loop lag sampler
(``loop_lag``) and the agent's own textfile (``agent``)."""
