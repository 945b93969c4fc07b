"""The built-in query plugins, one module per area; each implements ``register_query_plugins``.

They register through the same hook a third-party package uses (``peregrine.hookspecs``).
"""

BUILTIN_MODULES = (
    "peregrine.plugins.host",
    "peregrine.plugins.processes",
    "peregrine.plugins.network",
    "peregrine.plugins.accounts",
    "peregrine.plugins.storage",
    "peregrine.plugins.system",
    "peregrine.plugins.userdata",
    "peregrine.plugins.files",
    "peregrine.plugins.text",
    "peregrine.plugins.hashing",
    "peregrine.plugins.yara_scan",
    "peregrine.plugins.sqlite_files",
    "peregrine.plugins.execve",
    "peregrine.plugins.helpers",
    "peregrine.plugins.upload",
    "peregrine.plugins.knowledgebase",
    "peregrine.plugins.events_clock",
    "peregrine.plugins.events_process",
    "peregrine.plugins.events_files",
    "peregrine.plugins.events_logs",
    "peregrine.plugins.events_network",
    "peregrine.plugins.events_logins",
)
