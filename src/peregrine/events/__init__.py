"""Event monitoring on the server: what agents' never-ending CLIENT_EVENT queries send.

Rows arrive in batches from the agents, are stored per client, artifact and day, and are
published on an in-process :class:`~peregrine.events.stream.EventStream` that the alert rules
(``peregrine.alerts``) and live followers subscribe to.
"""
